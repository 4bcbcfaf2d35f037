#!/usr/bin/env bash
# Result 1 at full scale (Li et al. 2018): d_int90 of FC vs LeNet on the real MNIST, plain and with shuffled pixels.
# Recipes (grid, seeds, epochs, learning rates, baseline): configs/exp/li_mnist_{fc,lenet,fc_shuffled_pixels,
# lenet_shuffled_pixels}.yaml. repro/results.py reads d_int90 against both baselines off these sweeps: the directly
# trained network (the sweep's own baseline, Li's "individual") and Li's global 1.0.
. "$(dirname "$0")/../lib.sh"
share 4  # the four sweeps side by side
for net in fc lenet fc_shuffled_pixels lenet_shuffled_pixels; do
  sweep "$net" "+exp=li_mnist_$net" "${EPOCHS_ARG[@]}" &
done
finish
