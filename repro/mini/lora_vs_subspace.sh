#!/usr/bin/env bash
# Result 3 on mnist_mini: LoRA rank sweep on LeNet (configs/exp/mini/lora_lenet_mnist.yaml); the subspace side is
# result 1's mini/li_mnist/lenet.
. "$(dirname "$0")/../lib.sh"
sweep lora +exp=mini/lora_lenet_mnist "${EPOCHS_ARG[@]}"
finish
