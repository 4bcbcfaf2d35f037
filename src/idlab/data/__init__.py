"""Datasets as LightningDataModules that describe themselves with a DataSpec."""
from idlab.data.modular import ModularArithmetic
from idlab.data.spec import DataSpec, DataUnavailableError
from idlab.data.vision import CIFAR, MNIST, MNISTMini

__all__ = ["CIFAR", "MNIST", "DataSpec", "DataUnavailableError", "MNISTMini", "ModularArithmetic"]
