"""Architectures built from a DataSpec: FC, LeNet, CIFAR ResNets, a small transformer."""
from idlab.models.base import IncompatibleDataError, Net
from idlab.models.fc import FC
from idlab.models.lenet import LeNet
from idlab.models.resnet import ResNet
from idlab.models.transformer import Transformer

__all__ = ["FC", "IncompatibleDataError", "LeNet", "Net", "ResNet", "Transformer"]
