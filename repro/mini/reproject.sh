#!/usr/bin/env bash
# Result 6 on mnist_mini: LeNet trained at d_A (projection seed 1000 + seed), exported as θ_A, then a d-sweep in a
# fresh subspace around θ_A (configs/exp/mini/reproject_lenet_mnist.yaml). From the init: mini/li_mnist/lenet.
. "$(dirname "$0")/../lib.sh"
for d_a in 100 300; do  # the six first-subspace runs side by side, then their exports
  for seed in $(seeds 0,1,2); do
    train_once "first_d$d_a/seed$seed" +exp=mini/li_mnist_lenet "adapt.d=$d_a" "seed=$seed" "adapt.seed=$((1000 + seed))" \
      "${EPOCHS_ARG[@]}" &
  done
done
wait_all
share 2
for d_a in 100 300; do
  for seed in $(seeds 0,1,2); do
    export_once "first_d$d_a/seed$seed" "first_d$d_a/theta_seed$seed.pt"
  done
  sweep "from_d$d_a" +exp=mini/reproject_lenet_mnist "theta_a=$HERE/first_d$d_a/theta_seed\${seed}.pt" "${EPOCHS_ARG[@]}" &
done
finish
