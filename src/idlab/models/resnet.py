"""CIFAR ResNets: ResNet-18 (Brown et al., 11.2M) and ResNet-20 (He et al. option A, 0.27M; Li et al.'s CIFAR net)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from idlab.data.spec import DataSpec
from idlab.models.base import Net, positive

VARIANTS = {"resnet18": ((2, 2, 2, 2), 64, "conv"), "resnet20": ((3, 3, 3), 16, "pad")}


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual; `shortcut` is a 1×1 conv ("conv") or zero-padding ("pad")."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pad = c_out - c_in if shortcut == "pad" else 0
        self.stride = stride
        self.shortcut = nn.Identity()
        if shortcut == "conv" and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def skip(self, x: Tensor) -> Tensor:
        """The residual path."""
        if self.pad or (self.stride != 1 and isinstance(self.shortcut, nn.Identity)):
            x = x[:, :, :: self.stride, :: self.stride]
            return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return self.shortcut(x)

    def forward(self, x: Tensor) -> Tensor:
        """conv-bn-relu-conv-bn + skip, relu."""
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.skip(x))


class ResNet(Net):
    """`variant` resnet18 or resnet20; `width` scales the first stage's channels."""

    id_layers = ("layer*", "pool")
    llid_layer = "pool"
    lora_targets = ("*conv*", "*shortcut.0", "head")

    def __init__(self, spec: DataSpec, variant: str = "resnet18", width: int | None = None) -> None:
        super().__init__(spec)
        if variant not in VARIANTS:
            raise ValueError(f"model.variant={variant!r} is unknown; choose one of {sorted(VARIANTS)}")
        blocks, base, shortcut = VARIANTS[variant]
        width = base if width is None else width
        positive(width=width)
        self.stem = nn.Sequential(nn.Conv2d(spec.input_shape[0], width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            layer = [BasicBlock(c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1, shortcut)
                     for j in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            c_in = c_out
        self.stages = len(blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images."""
        x = self.stem(x)
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.head(self.pool(x))
