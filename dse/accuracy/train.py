"""Quantisation-aware and noise-aware training of a CiM model, with safe, resumable checkpoints.

The model is converted for the macro (the same layers the simulator uses), its activation clips are
calibrated, then it trains in ``train`` mode: fake-quantised weights and activations with
straight-through gradients, optionally PACT clips, ASiM's multiplicative output noise (``trim_noise``,
% of each output) and/or the macro's own ADC and noise model in the forward pass (``macro_noise``).
After every epoch the state is written atomically to ``<output>/last.pt`` (tensors and plain values
only, loaded with ``weights_only=True``); an interrupted run given the same output folder resumes from it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dse.accuracy.convert import DIGITAL_DEFAULT, convert
from dse.accuracy.datasets import load_split
from dse.accuracy.layers import cim_layers, set_generator, set_mode
from dse.accuracy.simulate import batches_of, calibrate, evaluate, sample_indices
from dse.atomic import write_atomic
from dse.errors import InputError
from dse.hardware import Accelerator, Macro

EpochReport = Callable[[int, int, float, float], None]
"""Called after each epoch with (epoch, epochs, mean training loss, test accuracy in inference mode)."""


@dataclass(frozen=True)
class TrainResult:
    """Where the trained model is and how it got there."""

    model: nn.Module
    checkpoint: Path | None
    history: tuple[dict, ...]

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]["test_accuracy"] if self.history else float("nan")


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, meta: dict) -> None:
    """Write the model (and optimiser) state atomically; only tensors and plain values go in."""
    buf = io.BytesIO()
    blob = {"state_dict": model.state_dict(), "meta": meta}
    if optimizer is not None:
        blob["optimizer"] = optimizer.state_dict()
    torch.save(blob, buf)
    write_atomic(path, buf.getvalue())


def _check_resume(checkpoint: Path, meta: Mapping, settings: Mapping) -> None:
    """Refuse to resume a checkpoint trained with other settings (more epochs are fine): the run would silently
    mix two trainings."""
    for name, value in settings.items():
        if name in meta and meta[name] != value:
            raise InputError(checkpoint, None, f"was trained with {name} = {meta[name]!r}, this run asks for {value!r}",
                             "resuming would mix the two; give another --output (or delete the checkpoint)")


def train(model: nn.Module | str | Path, hardware: Macro | Accelerator | str | Path, *, dataset: str = "digits",
          data_path: str | Path | None = None, epochs: int = 10, lr: float = 1e-3, batch_size: int = 64,
          seed: int = 0, trim_noise: float = 0.0, macro_noise: bool = False, pact: bool = False,
          per_channel: bool = False, overrides: Mapping[str, Mapping[str, object]] | None = None,
          digital: Sequence[str] = DIGITAL_DEFAULT, output: str | Path | None = None,
          calibration_samples: int = 512, device: str = "cpu", on_epoch: EpochReport | None = None,
          on_batch: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train the model for the macro; returns the model (in ``inference`` mode) and per-epoch history."""
    torch.manual_seed(seed)
    cim = convert(model, hardware, overrides, digital=digital, per_channel=per_channel, pact=pact).to(device)
    train_set = load_split(dataset, "train", data_path, seed=seed if dataset == "digits" else 0)
    test_set = load_split(dataset, "test", data_path, seed=seed if dataset == "digits" else 0)
    calibrate(cim, batches_of(train_set, 256, sample_indices(len(train_set), calibration_samples, seed)), device)
    for layer in cim_layers(cim):
        layer.trim_noise = trim_noise
        layer.macro_noise = macro_noise
    generator = torch.Generator(device=device).manual_seed(seed)
    set_generator(cim, generator)
    optimizer = torch.optim.Adam(cim.parameters(), lr=lr)

    checkpoint = Path(output) / "last.pt" if output is not None else None
    history: list[dict] = []
    start = 0
    settings = {"dataset": dataset, "seed": seed, "lr": lr, "trim_noise": trim_noise, "macro_noise": macro_noise,
                "pact": pact, "per_channel": per_channel, "digital": list(digital),
                "overrides": {k: dict(v) for k, v in (overrides or {}).items()}}
    if checkpoint is not None and checkpoint.is_file():
        blob = torch.load(checkpoint, map_location=device, weights_only=True)
        _check_resume(checkpoint, blob.get("meta", {}), settings)
        cim.load_state_dict(blob["state_dict"])
        if "optimizer" in blob:
            optimizer.load_state_dict(blob["optimizer"])
        history = list(blob.get("meta", {}).get("history", []))
        start = len(history)

    loader_gen = torch.Generator().manual_seed(seed)
    for epoch in range(start, epochs):
        loader_gen.manual_seed(seed * 1000 + epoch)  # the same shuffle whether resumed or not
        loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=loader_gen)
        set_mode(cim, "train")
        cim.train()
        total_loss, batches = 0.0, 0
        for i, (x, y) in enumerate(loader):
            optimizer.zero_grad()
            logits = cim(x.to(device))
            loss = F.cross_entropy(logits, y.to(device))
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            batches += 1
            if on_batch:
                on_batch(i + 1, len(loader))
        set_mode(cim, "inference")
        saved_trim = [layer.trim_noise for layer in cim_layers(cim)]
        for layer in cim_layers(cim):
            layer.trim_noise = 0.0
        acc = evaluate(cim, batches_of(test_set, 256), device)
        for layer, t in zip(cim_layers(cim), saved_trim, strict=True):
            layer.trim_noise = t
        history.append({"epoch": epoch + 1, "loss": total_loss / max(batches, 1), "test_accuracy": acc})
        if checkpoint is not None:
            meta = {"history": history, "epochs": epochs, **settings}
            save_checkpoint(checkpoint, cim, optimizer, meta)
        if on_epoch:
            on_epoch(epoch + 1, epochs, history[-1]["loss"], acc)
    set_mode(cim, "inference")
    for layer in cim_layers(cim):
        layer.trim_noise = 0.0
        layer.macro_noise = False
    return TrainResult(model=cim, checkpoint=checkpoint, history=tuple(history))
