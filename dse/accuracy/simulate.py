"""Inference accuracy of a model on a macro: calibrate, simulate bit-wise, repeat over noise instances.

``simulate_accuracy(model, hardware, dataset=...)`` is what the exploration calls for every distinct
:func:`accuracy_key`; ``cim-dse simulate`` is the same from the command line. Activation scales
are calibrated on a fixed, seeded sample of the *training* split and then frozen, so the accuracy
does not depend on the test batch size. Each repeat draws a fresh chip instance of noise from a
generator seeded with ``seed + repeat``: the same command gives the same numbers.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from dse.accuracy.convert import DIGITAL_DEFAULT, config_from_macro, convert
from dse.accuracy.datasets import load_split
from dse.accuracy.layer_errors import layer_errors as summarise_errors
from dse.accuracy.layer_errors import tracking_errors
from dse.accuracy.layers import cim_layers, set_generator, set_mode
from dse.errors import InputError, display_path
from dse.hardware import Accelerator, Macro, macro_of

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AccuracyResult:
    """Top-1 accuracy of a model on a macro (mean and std over noise instances) and how it was measured."""

    accuracy: float
    accuracy_std: float
    float_accuracy: float
    samples: int
    repeats: int
    seed: int
    dataset: str
    per_repeat: tuple[float, ...] = ()
    settings: dict = field(default_factory=dict)
    layers: tuple[dict, ...] = ()  # per-layer error against the exact result (layer_errors=True), model order

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_repeat"] = list(self.per_repeat)
        if self.layers:
            d["layers"] = list(self.layers)
        else:
            d.pop("layers")
        return d


def accuracy_key(macro: Macro) -> dict:
    """The macro fields that can change accuracy, as a JSON-able dict (the exploration's cache key)."""
    config = config_from_macro(macro)
    key = config.to_dict()
    if config.lossless:  # exact arithmetic: how the rows are grouped and inputs sliced changes nothing
        key["rows"] = key["input_bits_per_cycle"] = None
    key["kind"] = macro.kind
    dv = macro.accuracy.device_variation
    key["pac_operand"] = macro.accuracy.pac_operand
    key["device_variation"] = None if dv is None else {
        "dev_var": dv.dev_var, "write_var": dv.write_var, "bits_per_device": dv.bits_per_device,
        "verify_fraction": dv.verify_fraction, "verify_method": dv.verify_method}
    return key


def batches_of(dataset: torch.utils.data.Dataset, batch_size: int,
             indices: Sequence[int] | None = None) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, list(indices))
    yield from torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False)


def sample_indices(n: int, samples: int | None, seed: int) -> list[int] | None:
    """A seeded choice of ``samples`` indices out of n (sorted), or None for all."""
    if samples is None or samples >= n:
        return None
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=g)[:samples].tolist())


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
              device: torch.device | str = "cpu") -> None:
    """Set every activation quantiser's clip from calibration batches, computing exactly (inference mode)."""
    layers = cim_layers(model)
    modes = [layer.mode for layer in layers]
    quantizers = [m for m in model.modules() if hasattr(m, "calibrating")]
    for q in quantizers:
        q.calibrating = True
        q.alpha.data.zero_()
        q.signed_flag.fill_(-1)
    set_mode(model, "inference")
    was_training = model.training
    model.eval()
    try:
        for x, _ in batches:
            model(x.to(device))
    finally:
        for q in quantizers:
            q.calibrating = False
        for layer, mode in zip(layers, modes, strict=True):
            layer.mode = mode
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device | str = "cpu", progress: Progress | None = None, total: int = 0) -> float:
    """Top-1 accuracy of the model over the batches."""
    model.eval()
    correct = seen = 0
    for x, y in batches:
        logits = model(x.to(device))
        if isinstance(logits, tuple):
            logits = logits[0]
        correct += int((logits.argmax(dim=-1).cpu() == y).sum())
        seen += len(y)
        if progress:
            progress(seen, total)
    if seen == 0:
        raise InputError(None, "samples", "= 0: nothing to evaluate")
    return correct / seen


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by ``cim-dse train``: tensors and plain values only (``weights_only=True``)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise InputError(display_path(path), None, f"cannot read the checkpoint ({err})") from None
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise InputError(display_path(path), None, "not a cim-dse checkpoint (no 'state_dict')")
    return blob


def load_checkpoint(model: nn.Module, path: str | Path) -> dict:
    """Load a checkpoint's weights and calibrated clips into a converted model; returns its metadata."""
    blob = read_checkpoint(path)
    missing, unexpected = model.load_state_dict(blob["state_dict"], strict=False)
    if missing or unexpected:
        raise InputError(display_path(path), "state_dict",
                         f"does not fit this model (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})",
                         "was it trained for the same workload?")
    return dict(blob.get("meta", {}))


def simulate_accuracy(model: nn.Module | str | Path, hardware: Macro | Accelerator | str | Path, *,
                      dataset: str = "digits", data_path: str | Path | None = None, samples: int | None = None,
                      repeats: int = 1, seed: int = 0, overrides: Mapping[str, Mapping[str, object]] | None = None,
                      checkpoint: str | Path | None = None, digital: Sequence[str] = DIGITAL_DEFAULT,
                      semantics: str = "default", per_channel: bool = False, batch_size: int = 256,
                      calibration_samples: int = 512, device: str = "cpu",
                      progress: Progress | None = None, layer_errors: bool = False) -> AccuracyResult:
    """Float and CiM-simulated top-1 accuracy of a model (ONNX path with weights, or torch) on a macro.

    ``samples`` limits the test set to a seeded subset; ``repeats`` simulates that many noise
    instances (only when the macro is noisy; a deterministic macro runs once). ``layer_errors`` also measures
    each CiM layer's output error against the exact integer result over all of them
    (:mod:`dse.accuracy.layer_errors`; it costs one exact matmul per layer and batch).
    """
    if repeats < 1:
        raise InputError(None, "repeats", f"= {repeats}: must be at least 1")
    macro = macro_of(hardware)
    if checkpoint is not None:  # train's choices travel with the weights
        meta = read_checkpoint(checkpoint).get("meta", {})
        per_channel = bool(meta.get("per_channel", per_channel))
        digital = tuple(meta.get("digital", digital))
    cim = convert(model, macro, overrides, digital=digital, semantics=semantics, per_channel=per_channel).to(device)
    test = load_split(dataset, "test", data_path, seed=seed if dataset == "digits" else 0)
    test_idx = sample_indices(len(test), samples, seed)
    n_test = len(test) if test_idx is None else len(test_idx)

    if checkpoint is not None:
        load_checkpoint(cim, checkpoint)
    set_mode(cim, "float")
    float_acc = evaluate(cim, batches_of(test, batch_size, test_idx), device)
    train = load_split(dataset, "train", data_path, seed=seed if dataset == "digits" else 0)
    calibration = list(batches_of(train, batch_size, sample_indices(len(train), calibration_samples, seed)))
    if checkpoint is None:
        calibrate(cim, calibration, device)
    set_mode(cim, "simulate")
    variation = macro.accuracy.device_variation
    from dse.accuracy.variation import sample_deltas, set_variation  # variation builds on this module

    masks = _verified_masks(cim, variation, calibration, seed, device) if variation is not None else None
    noisy = variation is not None or any(_noisy(layer.config) for layer in cim_layers(cim))
    runs = repeats if noisy else 1
    accs = []
    with tracking_errors(cim) if layer_errors else contextlib.nullcontext({}) as error_stats:
        for r in range(runs):
            generator = torch.Generator(device=device).manual_seed(seed + r)
            set_generator(cim, generator)
            if variation is not None:  # one NVM chip instance per repeat
                set_variation(cim, sample_deltas(cim, variation, masks, generator))
            done = r * n_test
            report = (lambda seen, _t, done=done: progress(done + seen, runs * n_test)) if progress else None
            try:
                accs.append(evaluate(cim, batches_of(test, batch_size, test_idx), device, report, runs * n_test))
            finally:
                set_variation(cim, None)
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
    settings = {"macro": config_from_macro(macro).to_dict(), "digital": list(digital), "semantics": semantics,
                "per_channel": per_channel, "calibration_samples": calibration_samples,
                "checkpoint": None if checkpoint is None else str(checkpoint)}
    return AccuracyResult(accuracy=mean, accuracy_std=std, float_accuracy=float_acc, samples=n_test, repeats=runs,
                          seed=seed, dataset=dataset, per_repeat=tuple(accs), settings=settings,
                          layers=tuple(e.to_dict() for e in summarise_errors(error_stats)))


def _verified_masks(model: nn.Module, variation, calibration: list, seed: int, device: str) -> dict:
    """Which NVM weights are write-verified: the macro's fraction, chosen by its method (SWIM)."""
    from dse.accuracy.variation import CURVATURE_METHODS, nvm_layers, select, sensitivity, uniform_masks

    if not nvm_layers(model):
        raise InputError(None, "macro.accuracy.device_variation",
                         "every CiM layer is digital, so no weight is in the NVM array", "set digital=() / --digital")
    fraction, method = variation.verify_fraction, variation.verify_method
    if fraction in (0.0, 1.0):  # none or all: nothing to rank
        return uniform_masks(model, fraction == 1.0)
    scores = sensitivity(model, calibration, seed=seed, device=device) if method in CURVATURE_METHODS else None
    return select(model, scores, fraction, method, seed=seed)


def _noisy(config) -> bool:
    return bool(config.noise_sigma_pct or config.noise_sigma_lsb or config.nonlinear_sigma_pct)
