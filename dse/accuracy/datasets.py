"""Data sets the accuracy simulator scores on, all local: nothing is downloaded at run time.

scikit-learn's 8x8 ``digits`` set ships inside the package, so accuracy numbers (float and
CiM-simulated) are reproducible offline; the split is fixed by a seed so every run and the
README quote the same test set. CIFAR-10/100 (the python-pickle layout, read by an unpickler that
rebuilds numpy arrays and nothing else) and ImageNet (class folders) load from a path the user gives.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from dse.errors import InputError, did_you_mean, display_path

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


# --------------------------------------------------------------------------- user-supplied data sets

DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "imagenet")
Split = Literal["train", "test"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")

_CIFAR_LAYOUT = {
    "cifar10": "a folder holding data_batch_1 .. data_batch_5 and test_batch (the 'python version', "
               "cifar-10-batches-py)",
    "cifar100": "a folder holding train and test (the 'python version', cifar-100-python)",
}
_IMAGENET_LAYOUT = "a folder with train/ and/or val/, each holding one sub-folder of images per class (n01440764/...)"


class _ArraysOnly(pickle.Unpickler):
    """Unpickler that rebuilds only numpy arrays and plain containers: a data file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are expected)")


def _read_cifar_file(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as fh:
            batch = _ArraysOnly(fh, encoding="latin1").load()
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, TypeError, EOFError) as err:
        raise InputError(display_path(path), None, f"not a CIFAR python batch ({type(err).__name__}: {err})",
                         "expected a pickled dict with 'data' (N x 3072 uint8) and "
                         f"'{label_key}'") from None
    if len(data) != len(labels):
        raise InputError(display_path(path), label_key, f"has {len(labels)} labels for {len(data)} images")
    return data, labels


def cifar_split(name: str, root: str | Path, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10/100 images (N, 3, 32, 32) float in [0, 1] and labels, from the python-pickle layout."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(display_path(root), None, "no such folder", f"expected {_CIFAR_LAYOUT[name]}")
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = "labels"
    else:
        files, label_key = [split], "fine_labels"
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise InputError(display_path(root), None, f"missing {', '.join(missing)}", f"expected {_CIFAR_LAYOUT[name]}")
    parts = [_read_cifar_file(root / f, label_key) for f in files]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(data).float().div_(255.0), torch.from_numpy(labels)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Per-channel (x - mean) / std, the input a model trained the usual way expects."""
    m = torch.tensor(mean, dtype=images.dtype).reshape(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).reshape(1, -1, 1, 1)
    return (images - m) / s


class ImageFolder(torch.utils.data.Dataset):
    """ImageNet-style class folders: resize the short side to 256, centre-crop 224, normalise."""

    def __init__(self, root: str | Path, *, resize: int = 256, crop: int = 224,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(display_path(self.root), None, "no such folder", f"expected {_IMAGENET_LAYOUT}")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.items = [(f, label) for label, c in enumerate(self.classes) for f in sorted((self.root / c).iterdir())
                      if f.suffix.lower() in IMAGE_SUFFIXES]
        if not self.items:
            raise InputError(display_path(self.root), None, "no class folders with images",
                             f"expected {_IMAGENET_LAYOUT}")
        self.resize, self.crop, self.mean, self.std = resize, crop, mean, std

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.items[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                w, h = img.size
                scale = self.resize / min(w, h)
                img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
                w, h = img.size
                left, top = (w - self.crop) // 2, (h - self.crop) // 2
                img = img.crop((left, top, left + self.crop, top + self.crop))
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as err:
            raise InputError(display_path(path), None, f"cannot read the image ({err})") from None
        x = torch.from_numpy(arr.transpose(2, 0, 1).copy())
        return normalize(x[None], self.mean, self.std)[0], label


def load_split(name: str, split: Split, data_path: str | Path | None = None, *, normalized: bool = True,
               seed: int = 0) -> torch.utils.data.Dataset:
    """One split of a data set as a torch Dataset of (image, label).

    ``digits`` is built in (the fixed, seeded split); ``cifar10``/``cifar100`` and ``imagenet`` load
    from ``data_path`` (CIFAR's python layout; ImageNet class folders under train/ and val/).
    """
    if name not in DATASETS:
        raise InputError(None, "dataset", f"= {name!r}: expected one of {', '.join(DATASETS)}",
                         did_you_mean(name, DATASETS))
    if split not in ("train", "test"):
        raise ValueError(f"split = {split!r}: expected 'train' or 'test'")
    if name == "digits":
        x_train, y_train, x_test, y_test = digits_split(seed)
        x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
        return torch.utils.data.TensorDataset(x, y)
    if data_path is None:
        layout = _IMAGENET_LAYOUT if name == "imagenet" else _CIFAR_LAYOUT[name]
        raise InputError(None, "data_path", f"the {name} data set needs a local path", f"give {layout}")
    if name == "imagenet":
        root = Path(data_path)
        sub = root / ("train" if split == "train" else "val")
        return ImageFolder(sub if sub.is_dir() else root)
    x, y = cifar_split(name, data_path, split)
    if normalized:
        x = normalize(x, CIFAR_MEAN, CIFAR_STD)
    return torch.utils.data.TensorDataset(x, y)
