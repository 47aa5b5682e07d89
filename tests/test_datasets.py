"""Data sets: the built-in digits split, CIFAR's python layout (read safely) and ImageNet class folders."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from dse.accuracy.datasets import cifar_split, load_split
from dse.errors import InputError


def _cifar_batch(path, n: int, label_key: str = "labels", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    batch = {"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
             label_key: rng.integers(0, 10, size=n).tolist(), "batch_label": "synthetic"}
    with path.open("wb") as fh:
        pickle.dump(batch, fh)


def test_digits_train_and_test_splits_are_disjoint_and_fixed() -> None:
    train, test = load_split("digits", "train"), load_split("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    x, y = test[0]
    assert x.shape == (1, 8, 8) and 0 <= int(y) < 10
    assert torch.equal(load_split("digits", "test")[5][0], test[5][0])


def test_cifar10_python_layout_loads(tmp_path) -> None:
    for i in range(1, 6):
        _cifar_batch(tmp_path / f"data_batch_{i}", 4, seed=i)
    _cifar_batch(tmp_path / "test_batch", 3, seed=9)
    x, y = cifar_split("cifar10", tmp_path, "train")
    assert x.shape == (20, 3, 32, 32) and y.shape == (20,)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    test = load_split("cifar10", "test", tmp_path)
    assert len(test) == 3
    assert test[0][0].shape == (3, 32, 32)


def test_cifar100_uses_fine_labels(tmp_path) -> None:
    _cifar_batch(tmp_path / "train", 5, label_key="fine_labels")
    _cifar_batch(tmp_path / "test", 2, label_key="fine_labels")
    assert len(load_split("cifar100", "train", tmp_path)) == 5


def test_missing_cifar_files_say_what_layout_was_expected(tmp_path) -> None:
    _cifar_batch(tmp_path / "test_batch", 2)
    with pytest.raises(InputError, match=r"missing data_batch_1.*data_batch_1 \.\. data_batch_5 and test_batch"):
        load_split("cifar10", "train", tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        load_split("cifar10", "test", tmp_path / "nope")
    with pytest.raises(InputError, match="needs a local path"):
        load_split("cifar10", "test")


class Boom:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_file_that_would_run_code_is_refused(tmp_path) -> None:
    with (tmp_path / "test_batch").open("wb") as fh:
        pickle.dump({"data": Boom(), "labels": [1]}, fh)
    with pytest.raises(InputError, match=r"test_batch: not a CIFAR python batch \(UnpicklingError: refusing"):
        load_split("cifar10", "test", tmp_path)


def test_malformed_cifar_batch(tmp_path) -> None:
    with (tmp_path / "test_batch").open("wb") as fh:
        pickle.dump({"pixels": np.zeros((2, 3072), np.uint8)}, fh)
    with pytest.raises(InputError, match="expected a pickled dict with 'data'"):
        load_split("cifar10", "test", tmp_path)


def test_imagenet_class_folders(tmp_path) -> None:
    from PIL import Image

    for c, name in enumerate(("n001", "n002")):
        (tmp_path / "val" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((300, 260, 3), 40 * (c + i), np.uint8)).save(tmp_path / "val" / name / f"{i}.png")
    ds = load_split("imagenet", "test", tmp_path)
    assert len(ds) == 4
    x, label = ds[3]
    assert x.shape == (3, 224, 224) and label == 1


def test_imagenet_without_images(tmp_path) -> None:
    (tmp_path / "val" / "n001").mkdir(parents=True)
    with pytest.raises(InputError, match="no class folders with images"):
        load_split("imagenet", "test", tmp_path)


def test_unknown_dataset_name() -> None:
    with pytest.raises(InputError, match=r"dataset = 'cifar': expected one of .*did you mean 'cifar10'"):
        load_split("cifar", "test")
