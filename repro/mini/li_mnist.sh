#!/usr/bin/env bash
# Result 1 on mnist_mini (4,000 training digits; offline, CPU-sized): FC vs LeNet, plain and with shuffled pixels.
# Recipes: configs/exp/mini/li_mnist_{fc,lenet,fc_shuffled_pixels,lenet_shuffled_pixels}.yaml.
. "$(dirname "$0")/../lib.sh"
share 4  # the four sweeps side by side
for net in fc lenet fc_shuffled_pixels lenet_shuffled_pixels; do
  sweep "$net" "+exp=mini/li_mnist_$net" "${EPOCHS_ARG[@]}" &
done
finish
