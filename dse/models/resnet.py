"""ResNet-18 in plain torch: the CIFAR-10 variant (3x3 stem, no max-pool) and the ImageNet one.

Written from the paper's description (He et al., 2016) rather than imported from torchvision, so
the workloads can be exported without extra dependencies. The layer names (``conv1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ``fc``) match the usual convention, which the exported ONNX node names keep.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus the identity (or a 1x1 conv-BN projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18: a stem, four stages of two BasicBlocks (64/128/256/512 channels), avg-pool, fc.

    ``cifar=True`` gives the CIFAR stem (3x3 stride-1 conv, no max-pool) used for 32x32 inputs;
    ``cifar=False`` the ImageNet stem (7x7 stride-2 conv, 3x3 stride-2 max-pool) for 224x224.
    """

    def __init__(self, num_classes: int = 1000, cifar: bool = False):
        super().__init__()
        if cifar:
            self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(64, 64, stride=1)
        self.layer2 = self._stage(64, 128, stride=2)
        self.layer3 = self._stage(128, 256, stride=2)
        self.layer4 = self._stage(256, 512, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            BasicBlock(in_channels, out_channels, stride), BasicBlock(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18_cifar10() -> ResNet18:
    """CIFAR-10 ResNet-18 (input 1x3x32x32, 10 classes, 555.4 MMAC of Conv + Gemm).

    Often quoted as 0.56 G; 0.556 G is what one gets counting each BatchNorm output element as a MAC too.
    """
    return ResNet18(num_classes=10, cifar=True)


def resnet18_imagenet() -> ResNet18:
    """ImageNet ResNet-18 (input 1x3x224x224, 1000 classes, 1.814 GMAC)."""
    return ResNet18(num_classes=1000, cifar=False)
