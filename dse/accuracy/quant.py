"""Quantisers for CiM layers: symmetric weights (per tensor or per channel), calibrated activations, STE, PACT.

What the macro computes is integers; these functions turn float tensors into the codes the bit-wise
core takes and back. Two faults of the anchor simulators are fixed here (reference cim-simulators.md
sections 1.1 and 8): activation scales are *calibrated once* on a calibration set and stored with the
model (a buffer, so they travel in the state dict), never recomputed from the batch under test, so
accuracy does not depend on the test batch size; and weights may be quantised per output channel.

Codes follow ASiM's symmetric scheme: W-bit weights use -(2^(W-1)-1)..2^(W-1)-1, unsigned X-bit
activations 0..2^X-1, signed ones -(2^(X-1)-1)..2^(X-1)-1. Rounding is half-to-even (torch.round).

Asymmetric option (PACiM's "fake UINT" framework, reference section 1.2): weights and activations become
unsigned codes ``q`` in 0..2^bits-1 with an integer zero point ``z``, ``value ~ (q - z) * step``, over the
range [min, max] stretched to include 0 (so real zero, and zero padding, is the exact code ``z``). A macro
then multiplies plain-binary UINT planes, and the dot product is de-quantised with the offset algebra

    sum (q_x - z_x)(q_w - z_w) = sum q_x q_w - z_w sum q_x - z_x sum q_w + N z_x z_w

(N = the receptive field): the macro computes the first term, the rest is digital. This is PACiM's
``s_x s_w sum(q_x q_w) + b_x sum(w_fq) + b_w sum(x_fq) - N b_x b_w`` with the offsets ``b = -z * step``
rounded to a code (PACiM keeps b = min unrounded and pads with the nearest code of zero instead). The
range is calibrated once like the symmetric clip (PACiM's is per batch).
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


def asymmetric_weight_scale(weight: Tensor, bits: int, per_channel: bool) -> tuple[Tensor, Tensor]:
    """Step and integer zero point of UINT weight codes over [min(W, 0), max(W, 0)], per channel or tensor.

    Both shaped to broadcast against ``weight``, detached.
    """
    w = weight.detach()
    if per_channel:
        flat = w.reshape(w.shape[0], -1)
        shape = (-1, *([1] * (w.dim() - 1)))
        lo, hi = flat.amin(dim=1).reshape(shape), flat.amax(dim=1).reshape(shape)
    else:
        lo, hi = w.amin().reshape([1] * w.dim()), w.amax().reshape([1] * w.dim())
    levels = 2**bits - 1
    step = (hi.clamp_min(0) - lo.clamp_max(0)).clamp_min(EPS) / levels
    return step, torch.clamp(torch.round(-lo.clamp_max(0) / step), 0, levels)


def quantize_weight_asymmetric(weight: Tensor, bits: int, per_channel: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """UINT weight codes 0..2^bits-1 (STE gradient), step and zero point: ``weight ~ (codes - zero) * step``."""
    step, zero = asymmetric_weight_scale(weight, bits, per_channel)
    return torch.clamp(round_ste(weight / step) + zero, 0, 2**bits - 1), step, zero


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

    ``asymmetric=True``: UINT codes over [lower, alpha] with an integer zero point (module docstring);
    calibration records the largest value and the smallest (buffer ``lower``, at most 0), codes are
    always unsigned.
    """

    def __init__(self, bits: int = 8, *, signed: bool | None = None, calibration: Calibration = "max",
                 percentile: float = 99.99, pact: bool = False, asymmetric: bool = False):
        super().__init__()
        self.asymmetric = asymmetric
        if asymmetric:
            signed = False
            self.register_buffer("lower", torch.tensor(0.0))
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
        low = self.lower.item() if self.asymmetric else 0.0
        return bool(self.alpha.detach().item() - low > 0)

    @property
    def levels(self) -> int:
        return activation_levels(self.bits, self.signed)

    def extra_repr(self) -> str:
        text = f"bits={self.bits}, signed={self.signed}, alpha={float(self.alpha.detach()):.4g}, pact={self.pact}"
        return text + (f", asymmetric, lower={float(self.lower):.4g}" if self.asymmetric else "")

    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        """Record one calibration batch: the clip becomes the largest max / percentile of |x| seen."""
        if self.asymmetric:
            self._observe_range(x)
            return
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

    def _observe_range(self, x: Tensor) -> None:
        """Asymmetric calibration: the largest value and the smallest (the range always holds 0)."""
        if self.signed_flag.item() == -1:  # a fresh calibration (calibrate() resets the flag)
            self.lower.zero_()
        self.signed_flag.fill_(0)
        v = x.detach().flatten().float()
        if v.numel() == 0:
            return
        if self.calibration == "max":
            hi, lo = v.max(), v.min()
        else:
            if v.numel() > 1 << 24:
                v = v[:: v.numel() // (1 << 24) + 1]
            hi, lo = torch.quantile(v, self.percentile / 100.0), torch.quantile(v, 1 - self.percentile / 100.0)
        self.alpha.data.copy_(torch.maximum(self.alpha.detach(), hi.clamp_min(0).to(self.alpha.device)))
        self.lower.copy_(torch.minimum(self.lower, lo.clamp_max(0).to(self.lower.device)))

    def zero_point(self) -> Tensor:
        """Integer code of real zero: 0 for symmetric codes, round(-lower / step) for asymmetric ones."""
        if not self.asymmetric:
            return torch.zeros((), device=self.alpha.device)
        return torch.clamp(torch.round(-self.lower / self.step()), 0, self.levels)

    def step(self) -> Tensor:
        """Size of one activation code (detached: alpha learns only from clipped elements, as PACT)."""
        if self.asymmetric:
            return (self.alpha.detach() - self.lower).clamp_min(EPS) / self.levels
        return self.alpha.detach().clamp_min(EPS) / self.levels

    def codes(self, x: Tensor) -> Tensor:
        """Integer codes of x (float tensor), gradient by STE and, with PACT, into alpha."""
        if self.calibrating:
            self.observe(x)
        if not self.calibrated:
            raise RuntimeError("activation quantiser used before calibration: run calibration batches first")
        if self.asymmetric:
            clipped = torch.maximum(torch.minimum(x, self.alpha), self.lower)
            return torch.clamp(round_ste(clipped / self.step()) + self.zero_point(), 0, self.levels)
        alpha = self.alpha.clamp_min(EPS)
        lower = -alpha if self.signed else torch.zeros_like(alpha)
        clipped = torch.maximum(torch.minimum(x, alpha), lower)
        return round_ste(clipped / alpha.detach() * self.levels)

    def forward(self, x: Tensor) -> Tensor:
        """Fake-quantised x: (codes - zero point) * step."""
        if self.asymmetric:
            return (self.codes(x) - self.zero_point()) * self.step()
        return self.codes(x) * self.step()
