"""Quantisers for CiM layers: symmetric weights (per tensor or per channel), calibrated activations, STE, PACT.

What the macro computes is integers; these functions turn float tensors into the codes the bit-wise
core takes and back. Two faults of the anchor simulators are fixed here (reference cim-simulators.md
sections 1.1 and 8): activation scales are *calibrated once* on a calibration set and stored with the
model (a buffer, so they travel in the state dict), never recomputed from the batch under test, so
accuracy does not depend on the test batch size; and weights may be quantised per output channel.

Codes follow ASiM's symmetric scheme: W-bit weights use -(2^(W-1)-1)..2^(W-1)-1, unsigned X-bit
activations 0..2^X-1, signed ones -(2^(X-1)-1)..2^(X-1)-1. Rounding is half-to-even (torch.round).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

Calibration = Literal["max", "percentile"]
EPS = 1e-8


class _RoundSTE(torch.autograd.Function):
    """round() whose gradient is the identity (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return grad


def round_ste(x: Tensor) -> Tensor:
    """Round to the nearest integer in the forward pass; pass the gradient straight through."""
    return _RoundSTE.apply(x)


def weight_levels(bits: int) -> int:
    """Largest weight code magnitude: 2^(bits-1) - 1 (the -2^(bits-1) code is never produced)."""
    return 2 ** (bits - 1) - 1


def activation_levels(bits: int, signed: bool) -> int:
    """Largest activation code magnitude: 2^bits - 1 unsigned, 2^(bits-1) - 1 signed."""
    return 2 ** (bits - 1) - 1 if signed else 2**bits - 1


def weight_scale(weight: Tensor, bits: int, per_channel: bool) -> Tensor:
    """Step of one weight code: max|W| / (2^(bits-1)-1), per output channel (dim 0) or for the tensor.

    Shaped to broadcast against ``weight``; detached (no gradient into the scale, as ASiM).
    """
    w = weight.detach().abs()
    if per_channel:
        peak = w.reshape(w.shape[0], -1).amax(dim=1).reshape(-1, *([1] * (w.dim() - 1)))
    else:
        peak = w.amax().reshape([1] * w.dim())
    return peak.clamp_min(EPS) / weight_levels(bits)


def quantize_weight(weight: Tensor, bits: int, per_channel: bool = False) -> tuple[Tensor, Tensor]:
    """Weight codes (float tensor of integers, STE gradient) and their step, ``weight ~ codes * step``."""
    step = weight_scale(weight, bits, per_channel)
    n = weight_levels(bits)
    return torch.clamp(round_ste(weight / step), -n, n), step


def fake_quantize_weight(weight: Tensor, bits: int, per_channel: bool = False) -> Tensor:
    """The weight as the macro stores it, in float: codes * step (trainable through the STE)."""
    codes, step = quantize_weight(weight, bits, per_channel)
    return codes * step


class ActivationQuantizer(nn.Module):
    """Static activation quantiser with a calibrated clipping value, optionally learnable (PACT).

    Use: ``calibrating = True``, run calibration batches (each records its max, or a high percentile,
    of |x|; the clip is the largest seen), then ``calibrating = False``. Whether the activations are
    signed is decided from the calibration data (any negative value -> signed) unless fixed. The
    clip ``alpha`` is a buffer, or a parameter when ``pact=True`` (PACT: the gradient reaches alpha
    only from clipped elements, as in the anchors).
    """

    def __init__(self, bits: int = 8, *, signed: bool | None = None, calibration: Calibration = "max",
                 percentile: float = 99.99, pact: bool = False):
        super().__init__()
        if calibration not in ("max", "percentile"):
            raise ValueError(f"calibration = {calibration!r}: expected 'max' or 'percentile'")
        self.bits = bits
        self.calibration = calibration
        self.percentile = percentile
        self.pact = pact
        self.calibrating = False
        alpha = torch.tensor(0.0)
        if pact:
            self.alpha = nn.Parameter(alpha)
        else:
            self.register_buffer("alpha", alpha)
        # -1 = not decided yet, 0 = unsigned, 1 = signed; a buffer so it travels in the checkpoint
        self.register_buffer("signed_flag", torch.tensor(-1 if signed is None else int(signed)))

    @property
    def signed(self) -> bool:
        return bool(self.signed_flag.item() == 1)

    @property
    def calibrated(self) -> bool:
        return bool(self.alpha.detach().item() > 0)

    @property
    def levels(self) -> int:
        return activation_levels(self.bits, self.signed)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, alpha={float(self.alpha.detach()):.4g}, pact={self.pact}"

    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        """Record one calibration batch: the clip becomes the largest max / percentile of |x| seen."""
        if self.signed_flag.item() == -1 or (self.signed_flag.item() == 0 and bool((x < 0).any())):
            self.signed_flag.fill_(int(bool((x < 0).any())))
        mag = x.detach().abs().flatten().float()
        if self.calibration == "max" or mag.numel() == 0:
            value = mag.max() if mag.numel() else torch.tensor(0.0)
        else:
            # torch.quantile is limited to 16M elements; a strided subsample keeps it exact enough
            if mag.numel() > 1 << 24:
                mag = mag[:: mag.numel() // (1 << 24) + 1]
            value = torch.quantile(mag, self.percentile / 100.0)
        self.alpha.data.copy_(torch.maximum(self.alpha.detach(), value.to(self.alpha.device)))

    def step(self) -> Tensor:
        """Size of one activation code (detached: alpha learns only from clipped elements, as PACT)."""
        return self.alpha.detach().clamp_min(EPS) / self.levels

    def codes(self, x: Tensor) -> Tensor:
        """Integer codes of x (float tensor), gradient by STE and, with PACT, into alpha."""
        if self.calibrating:
            self.observe(x)
        if not self.calibrated:
            raise RuntimeError("activation quantiser used before calibration: run calibration batches first")
        alpha = self.alpha.clamp_min(EPS)
        lower = -alpha if self.signed else torch.zeros_like(alpha)
        clipped = torch.maximum(torch.minimum(x, alpha), lower)
        return round_ste(clipped / alpha.detach() * self.levels)

    def forward(self, x: Tensor) -> Tensor:
        """Fake-quantised x: codes * step."""
        return self.codes(x) * self.step()
