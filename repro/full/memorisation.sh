#!/usr/bin/env bash
# Result 2 at full scale (Li et al. 2018): d_int90 of training accuracy for memorising 10,000 randomly relabelled
# MNIST digits, and for learning the same 10,000 with their real labels (configs/exp/li_mnist_shuffled_labels.yaml).
# Adam 1e-2 on θ_d (the exp file's) collapses to chance at d >= 60,000; the _lr1e-3 sweeps repeat both on the same
# grid at Adam 1e-3 (Li et al. memorised at 1e-4), to tell a step-size collapse from a dimension the task needs.
. "$(dirname "$0")/../lib.sh"
share 2
sweep shuffled_labels_n10000 +exp=li_mnist_shuffled_labels "${MEM_EPOCHS_ARG[@]}" &
sweep real_labels_n10000 +exp=li_mnist_shuffled_labels data.shuffle_labels=0.0 "${MEM_EPOCHS_ARG[@]}" &
wait_all
sweep shuffled_labels_n10000_lr1e-3 +exp=li_mnist_shuffled_labels optim.optimizer.lr=0.001 "${MEM_EPOCHS_ARG[@]}" &
sweep real_labels_n10000_lr1e-3 +exp=li_mnist_shuffled_labels data.shuffle_labels=0.0 optim.optimizer.lr=0.001 \
  "${MEM_EPOCHS_ARG[@]}" &
finish
