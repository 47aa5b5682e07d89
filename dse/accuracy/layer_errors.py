"""Where the accuracy goes: each CiM layer's output error against the exact integer result, layer by layer.

While :func:`tracking_errors` is active, every CiM layer in ``simulate`` mode also computes the exact integer
result of the same input and weight codes (what a lossless macro returns) and accumulates the difference. The
error is thus the layer's own (ADC quantisation and clipping, noise, non-linearity, PAC, voting), measured on
the inputs the simulated network actually feeds it, so upstream errors are not counted twice. It is taken in
the integer domain (input codes times weight codes, before the quantisers' steps): per-channel weight scales
do not weight the channels. The reference uses the weights as stored, so NVM device variation is not part of
it; it is the macro's arithmetic error alone.

Per layer: the RMS of the exact output, the RMSE and mean error (bias) of the simulated one, the relative
RMSE (RMSE / RMS output) and the signal-to-quantisation-noise ratio, SQNR = 10 log10(sum ref^2 / sum err^2) dB,
the figure CiM papers compare ADC precisions and noise levels by (None where the layer is exact).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass
class ErrorStats:
    """Running sums of one layer's simulated-minus-exact outputs (float64)."""

    outputs: int = 0
    signal: float = 0.0  # sum of ref^2
    error: float = 0.0  # sum of (sim - ref)^2
    bias: float = 0.0  # sum of (sim - ref)
    max_abs: float = 0.0

    def add(self, simulated: Tensor, reference: Tensor) -> None:
        with torch.no_grad():
            ref = reference.detach().to(torch.float64)
            diff = simulated.detach().to(torch.float64) - ref
            self.outputs += diff.numel()
            self.signal += float((ref * ref).sum())
            self.error += float((diff * diff).sum())
            self.bias += float(diff.sum())
            if diff.numel():
                self.max_abs = max(self.max_abs, float(diff.abs().max()))


@dataclass(frozen=True)
class LayerError:
    """One layer's error summary (integer-domain units: input code x weight code)."""

    layer: str
    outputs: int
    rms_output: float
    rmse: float
    relative_rmse: float | None  # None: the exact output is all zeros
    sqnr_db: float | None  # None: no error at all (or no signal)
    mean_error: float
    max_abs_error: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(name: str, stats: ErrorStats) -> LayerError:
    n = max(stats.outputs, 1)
    rms, rmse = math.sqrt(stats.signal / n), math.sqrt(stats.error / n)
    sqnr = 10 * math.log10(stats.signal / stats.error) if stats.error > 0 and stats.signal > 0 else None
    return LayerError(layer=name, outputs=stats.outputs, rms_output=rms, rmse=rmse,
                      relative_rmse=rmse / rms if rms > 0 else None, sqnr_db=sqnr, mean_error=stats.bias / n,
                      max_abs_error=stats.max_abs)


@contextmanager
def tracking_errors(model: nn.Module) -> Iterator[dict[str, ErrorStats]]:
    """Attach fresh error sums to every CiM layer of ``model`` for the ``with`` block; yields them by layer name
    (filled as the model runs in ``simulate`` mode) and detaches them afterwards."""
    from dse.accuracy.layers import cim_layers

    layers = cim_layers(model)
    stats: dict[str, ErrorStats] = {}
    for i, layer in enumerate(layers):
        name = layer.name or f"layer{i}"
        layer.error_stats = stats.setdefault(name, ErrorStats())
    try:
        yield stats
    finally:
        for layer in layers:
            layer.error_stats = None


def layer_errors(stats: dict[str, ErrorStats]) -> list[LayerError]:
    """Summaries of the layers that ran, in model order."""
    return [summarise(name, s) for name, s in stats.items() if s.outputs]
