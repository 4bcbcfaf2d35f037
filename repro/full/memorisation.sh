#!/usr/bin/env bash
# Result 2 at full scale (Li et al. 2018): d_int90 of training accuracy for memorising 10,000 randomly relabelled
# MNIST digits, and for learning the same 10,000 with their real labels (configs/exp/li_mnist_shuffled_labels.yaml).
. "$(dirname "$0")/../lib.sh"
share 2
sweep shuffled_labels_n10000 +exp=li_mnist_shuffled_labels "${MEM_EPOCHS_ARG[@]}" &
sweep real_labels_n10000 +exp=li_mnist_shuffled_labels data.shuffle_labels=0.0 "${MEM_EPOCHS_ARG[@]}" &
finish
