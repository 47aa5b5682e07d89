"""MobileNetV2 (Sandler et al., 2018) in plain torch, width multiplier 1.0, for 224x224 ImageNet inputs.

Depthwise 3x3 convs are ``nn.Conv2d`` with ``groups=channels``, which ONNX exports as a grouped ``Conv``:
the workload loader sees them as depthwise layers, the case that stresses a CIM macro's utilisation.
"""

from __future__ import annotations

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU6(nn.Sequential):
    """Conv + BatchNorm + ReLU6; BN folds into the conv when exported in eval mode."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, groups: int = 1
    ):
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, 1x1 linear projection; a residual add when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2: 3x3/2 stem (32 ch), 17 inverted residuals, 1x1 conv to 1280, avg-pool, classifier."""

    def __init__(self, num_classes: int = 1000, last_channels: int = 1280):
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU6(3, 32, kernel=3, stride=2)]
        in_channels = 32
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(in_channels, c, s if i == 0 else 1, t))
                in_channels = c
        layers.append(ConvBNReLU6(in_channels, last_channels, kernel=1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channels, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def mobilenetv2() -> MobileNetV2:
    """ImageNet MobileNetV2 1.0 (input 1x3x224x224, 1000 classes, 0.301 GMAC)."""
    return MobileNetV2()
