#!/usr/bin/env bash
# Result 2 on mnist_mini: memorising 1,000 and 4,000 randomly relabelled digits vs learning them with their real
# labels (configs/exp/mini/li_mnist_shuffled_labels{,_n4000}.yaml).
. "$(dirname "$0")/../lib.sh"
share 4
for exp in li_mnist_shuffled_labels:n1000 li_mnist_shuffled_labels_n4000:n4000; do
  sweep "shuffled_labels_${exp#*:}" "+exp=mini/${exp%:*}" "${MEM_EPOCHS_ARG[@]}" &
  sweep "real_labels_${exp#*:}" "+exp=mini/${exp%:*}" data.shuffle_labels=0.0 "${MEM_EPOCHS_ARG[@]}" &
done
finish
