"""A small CNN for scikit-learn's 8x8 digits: the one model the tool can train and score on real data.

No BatchNorm, so the exported ONNX initializers are exactly the torch parameters (same names), and
the bit-wise accuracy simulation can load them back without undoing a Conv-BN fold.
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """conv 1->16, conv 16->32, 2x2 max-pool, conv 32->32 (all 3x3, pad 1, ReLU), flatten, fc 512->10."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.relu(self.conv3(x))
        return self.fc(torch.flatten(x, 1))


def digits_cnn() -> DigitsCNN:
    """The digits CNN (input 1x1x8x8, 10 classes, 0.457 MMAC)."""
    return DigitsCNN()
