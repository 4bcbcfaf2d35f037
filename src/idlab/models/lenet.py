"""LeNet-5 as in Li et al. (D = 44,426 on MNIST, 62,006 on CIFAR-10)."""
from __future__ import annotations

from torch import Tensor, nn

from idlab.data.spec import DataSpec
from idlab.models.base import Net, positive


class LeNet(Net):
    """conv(6,5×5)-pool-conv(16,5×5)-pool-fc120-fc84-head, ReLU activations."""

    id_layers = ("conv1", "conv2", "fc1", "fc2")
    llid_layer = "fc2"
    lora_targets = ("conv1.0", "conv2.0", "fc1.0", "fc2.0", "head")

    def __init__(self, spec: DataSpec, c1: int = 6, c2: int = 16, d1: int = 120, d2: int = 84) -> None:
        super().__init__(spec)
        positive(c1=c1, c2=c2, d1=d1, d2=d2)
        channels, h, w = spec.input_shape
        if min(h, w) < 16:
            raise ValueError(f"model=lenet needs images of at least 16×16 pixels, got {h}×{w}")
        self.conv1 = nn.Sequential(nn.Conv2d(channels, c1, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2))
        flat = c2 * self.feature_size(h) * self.feature_size(w)
        self.fc1 = nn.Sequential(nn.Linear(flat, d1), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(d1, d2), nn.ReLU())
        self.head = nn.Linear(d2, spec.num_classes)

    @staticmethod
    def feature_size(n: int) -> int:
        """Side length after conv5-pool2-conv5-pool2 (floor division at each pool, as MaxPool2d does)."""
        return ((n - 4) // 2 - 4) // 2

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images."""
        x = self.conv2(self.conv1(x)).flatten(1)
        return self.head(self.fc2(self.fc1(x)))
