"""Real data the tool can score models on without any download.

scikit-learn's 8x8 ``digits`` set ships inside the package, so accuracy numbers (float and
CIM-simulated) are reproducible offline; the split is fixed by a seed so every run and the
README quote the same test set.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DIGITS_TEST_FRACTION = 0.2
"""Share of the 1797 digits images held out for testing (stratified by class)."""


def digits_split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits set as ``(x_train, y_train, x_test, y_test)``: a seeded, stratified 80/20 split.

    Images are float32 tensors of shape (N, 1, 8, 8) with pixel values scaled from 0..16 to [0, 1];
    labels are int64 tensors of shape (N,). The same seed always gives the same split.
    """
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, random_state=seed, stratify=labels
    )
    return (
        torch.from_numpy(np.ascontiguousarray(x_train)),
        torch.from_numpy(y_train),
        torch.from_numpy(np.ascontiguousarray(x_test)),
        torch.from_numpy(y_test),
    )
