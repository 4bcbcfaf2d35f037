#!/usr/bin/env bash
# Result 1b on mnist_mini: the four corners of the FC width × depth grid (configs/exp/mini/li_mnist_fc_grid.yaml);
# the 200×2 point is mini/li_mnist/fc.
. "$(dirname "$0")/../lib.sh"
share 4
for net in "50 1" "400 1" "50 5" "400 5"; do
  set -- $net
  sweep "w$1_l$2" +exp=mini/li_mnist_fc_grid "model.width=$1" "model.depth=$2" "${EPOCHS_ARG[@]}" &
done
finish
