#!/usr/bin/env bash
# Result 3 at full scale (Hu et al. 2021): LoRA rank sweep on LeNet (configs/exp/lora_lenet_mnist.yaml) beside the
# random-subspace d-sweep of the same LeNet, which is result 1's full/li_mnist/lenet.
. "$(dirname "$0")/../lib.sh"
sweep lora +exp=lora_lenet_mnist "${EPOCHS_ARG[@]}"
finish
