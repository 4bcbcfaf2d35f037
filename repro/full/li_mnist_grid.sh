#!/usr/bin/env bash
# Result 1b at full scale (Li et al. 2018): d_int90 against D over the FC width × depth grid — its four corners
# (configs/exp/li_mnist_fc_grid.yaml); the 200×2 point is result 1's full/li_mnist/fc.
. "$(dirname "$0")/../lib.sh"
share 4
for net in "50 1" "400 1" "50 5" "400 5"; do
  set -- $net
  sweep "w$1_l$2" +exp=li_mnist_fc_grid "model.width=$1" "model.depth=$2" "${EPOCHS_ARG[@]}" &
done
finish
