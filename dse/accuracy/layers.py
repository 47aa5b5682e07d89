"""CiM layers: Conv2d, Linear and activation x activation MatMul that compute through the bit-wise core.

Each layer has one :class:`~dse.accuracy.core.CimConfig` (from the macro, with per-layer overrides)
and a mode:

- ``float``: the plain float layer (the reference accuracy);
- ``train``: fake-quantised weights and activations with straight-through gradients; optional
  ``trim_noise`` (ASiM's noise-aware training: every output element times 1 + N(0, (trim/100)^2))
  and optional ``macro_noise`` (the forward value comes from the macro's own ADC and noise model,
  the gradient from the exact integer result: training through the macro);
- ``inference``: the exact integer computation (what a lossless macro returns), plus ``trim_noise``
  if set, as a quick robustness probe;
- ``simulate``: the bit-wise macro arithmetic of :func:`~dse.accuracy.core.cim_matmul`.

A Conv2d or Linear layer may carry ``weight_delta`` (None by default): a perturbation of its stored
weights in code units, the same shape as ``weight``, set by :mod:`dse.accuracy.variation` (NVM device
variation). It is added to the integer weight codes in every mode but ``float``. In ``inference`` and
``train`` the perturbed codes stay real-valued (an analog device deviation); wherever the bit-wise core
runs (``simulate``, and ``train`` with ``macro_noise``) they are rounded (STE) and clamped to the code
range, since that core takes integer codes.

Convolutions are lowered to matmuls by unfolding. Rows are grouped by whole kernels when a kernel
fits in a conversion (floor(rows / k^2) input channels per group, as ASiM and a C x FY x FX row
unrolling do); each group is padded with zero rows to the nominal ``rows``, which changes no sum.
Grouped and depthwise convolutions run as one batched matmul over the groups. Codes of at most 8 bits
(symmetric weights, no PAC, kernels that fit a conversion) skip the fp32 unfold: the input is cast to bytes
channels-last and described in that layout as :class:`~dse.accuracy.conv_rows.ConvRows`, rows ordered (ky, kx,
channel) inside each group (the same sums, so the same results bit for bit); the bit-sliced kernel gathers the
rows from the padded image itself, the other paths copy them once, with a quarter of the fp32 unfold's bytes
(``benchmarks/sim_memory.py``).

Digital CiM and PAC (PACiM). ``macro_kind`` records the macro a layer was converted for ("digital": exact
adder trees, ``adc_bits`` None). With ``pac`` set (a :class:`~dse.accuracy.pac.PacConfig`, from the macro's
``accuracy.pac_operand`` or an override) ``simulate`` runs :func:`~dse.accuracy.pac.pac_matmul` over the
layer's receptive field N (C_in*k*k, or in_features) instead; ``pac_exact_cycles / pac_outputs`` is the
mean number of exact cycles per output pixel so far (dynamic mode). Layers marked ``digital`` (stem,
classifier) never use PAC. ``asymmetric`` layers (Conv2d, Linear) use UINT codes with zero points
(:mod:`dse.accuracy.quant`): the macro multiplies the UINT codes (plain binary planes, exact cycles only)
and the zero-point terms are added digitally; in ``train`` and ``inference`` the centred codes multiply.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dse.accuracy.conv_rows import ConvRows, Segment
from dse.accuracy.core import CimConfig, cim_matmul, code_ranges
from dse.accuracy.layer_errors import ErrorStats
from dse.accuracy.pac import PacConfig, pac_matmul
from dse.accuracy.quant import (
    ActivationQuantizer,
    asymmetric_weight_scale,
    quantize_weight,
    quantize_weight_asymmetric,
    round_ste,
    weight_levels,
)

Mode = Literal["float", "train", "inference", "simulate"]
MODES: tuple[str, ...] = ("float", "train", "inference", "simulate")
UNFOLD_BUDGET_BYTES = 512 * 2**20
"""Largest unfolded input a convolution builds at once; larger batches are cut into chunks."""


def _byte_codes_fit(x_codes: Tensor, config: CimConfig) -> bool:
    """Whether the activation codes are integers within the config's code range (then a cast to bytes is exact;
    otherwise the unfold path runs, and cim_matmul reports the bad codes)."""
    if x_codes.numel() == 0:
        return False
    lo, hi, _ = code_ranges(config)
    tmin, tmax = (float(v) for v in torch.aminmax(x_codes))
    return lo <= tmin and tmax <= hi and not (x_codes.is_floating_point() and bool((x_codes != x_codes.round()).any()))


class CimLayer(nn.Module):
    """What every CiM layer shares: config, mode, activation quantiser(s), noise options, generator."""

    def __init__(self, config: CimConfig, *, name: str = "", per_channel: bool = False,
                 calibration: str = "max", pact: bool = False, asymmetric: bool = False):
        super().__init__()
        self.config = config
        self.name = name
        self.per_channel = per_channel
        self.mode: Mode = "simulate"
        self.trim_noise = 0.0
        self.macro_noise = False
        self.digital = False  # computed exactly off the analog array (stem, classifier)
        self.generator: torch.Generator | None = None
        self.macro_kind: str | None = None  # "analog" or "digital": the macro the layer was converted for
        self.pac: PacConfig | None = None
        self.pac_exact_cycles, self.pac_outputs = 0.0, 0  # running totals of the simulated PAC outputs
        self.asymmetric = asymmetric
        self.act = ActivationQuantizer(config.input_bits, calibration=calibration, pact=pact, asymmetric=asymmetric)
        # device variation in code units (see the module docstring); not saved in the state dict
        self.register_buffer("weight_delta", None, persistent=False)
        self.error_stats: ErrorStats | None = None  # set by dse.accuracy.layer_errors.tracking_errors

    def _weight_codes(self) -> tuple[Tensor, Tensor]:
        """Weight codes and step, plus ``weight_delta`` when set (integer again where the bit-wise core runs)."""
        bits = self.config.weight_bits
        if self.asymmetric:
            codes, step, _ = quantize_weight_asymmetric(self.weight, bits, self.per_channel)
            lo, hi = 0, 2**bits - 1
        else:
            codes, step = quantize_weight(self.weight, bits, self.per_channel)
            lo, hi = -weight_levels(bits), weight_levels(bits)
        if self.weight_delta is not None:
            codes = codes + self.weight_delta
            if self.mode == "simulate" or (self.mode == "train" and self.macro_noise):
                codes = torch.clamp(round_ste(codes), lo, hi)
        return codes, step

    def _weight_zero(self) -> Tensor:
        """Weight zero points, one per output channel (per-channel) or one: 0 for symmetric codes."""
        if not self.asymmetric:
            return torch.zeros(1, device=self.weight.device)
        return asymmetric_weight_scale(self.weight, self.config.weight_bits, self.per_channel)[1].reshape(-1)

    def _macro_matmul(self, x: Tensor | ConvRows, w: Tensor, config: CimConfig, fan_in: int,
                      w_zero: Tensor | None = None) -> Tensor:
        """What the macro returns for codes ``x @ w``: cim_matmul, or PAC when set; UINT codes de-quantised.

        ``fan_in``: the receptive field N (rows of zero padding in x and w excluded); ``w_zero``: weight zero
        points broadcasting against the (..., M, N) output (asymmetric layers).
        """
        pac = None if self.digital else self.pac
        if pac is None and not self.asymmetric:
            return cim_matmul(x, w, config, generator=self.generator)
        if pac is not None:
            result = pac_matmul(x, w, pac, config, fan_in=fan_in, signed_weights=not self.asymmetric,
                                generator=self.generator)
            self.pac_exact_cycles += float(result.exact_cycles.sum())
            self.pac_outputs += result.exact_cycles.numel()
            y = result.out
        else:
            if not config.lossless:
                raise ValueError(f"{self.name or 'layer'}: asymmetric (UINT) weights need exact cycles (a digital "
                                 "macro): the analog core stores two's-complement weight planes")
            y = cim_matmul(x, w, replace(config, weight_bits=config.weight_bits + 1))  # UINT codes fit W+1 bits
        if not self.asymmetric:
            return y
        zx = self.act.zero_point().double()
        zw = (x.new_zeros(()) if w_zero is None else w_zero).to(torch.float64)
        terms = zw * x.sum(-1, keepdim=True, dtype=torch.float64) + zx * w.sum(-2, keepdim=True, dtype=torch.float64)
        return (y.double() - terms + fan_in * zx * zw).float()

    def extra_repr(self) -> str:
        c = self.config
        adc = "lossless" if c.adc_bits is None else f"adc={c.adc_bits}"
        extra = (f", pac={self.pac.operand}{' dynamic' if self.pac.dynamic else ''}" if self.pac else "") + (
            ", asymmetric" if self.asymmetric else "")
        return f"name={self.name!r}, mode={self.mode}, W{c.weight_bits}A{c.input_bits}, rows={c.rows}, {adc}{extra}"

    def _config(self) -> CimConfig:
        signed = self.act.signed
        return self.config if self.config.signed_inputs == signed else replace(self.config, signed_inputs=signed)

    def _integer(self, exact_fn: Callable[[], Tensor], simulate: Callable[[], Tensor]) -> Tensor:
        """The integer-domain output for the current mode, from two thunks: the exact result (in ``simulate``
        mode computed only while the layer's error is tracked, else it would be thrown away) and the macro
        simulation."""
        if self.mode == "simulate":
            sim = simulate()
            if self.error_stats is not None:  # dse.accuracy.layer_errors: the same codes, exactly
                with torch.no_grad():
                    self.error_stats.add(sim, exact_fn())
            return sim
        exact = exact_fn()
        if self.mode == "train" and self.macro_noise:
            with torch.no_grad():
                sim = simulate()
            exact = exact + (sim - exact).detach()
        if self.trim_noise > 0 and self.mode in ("train", "inference"):
            noise = torch.randn(exact.shape, generator=self.generator, device=exact.device, dtype=exact.dtype)
            exact = exact * (1 + noise * self.trim_noise / 100.0)
        return exact


class CimConv2d(CimLayer):
    """A Conv2d whose multiply-accumulates run on the CiM macro model."""

    def __init__(self, conv: nn.Conv2d, config: CimConfig, **kwargs):
        super().__init__(config, **kwargs)
        if conv.padding_mode != "zeros":
            raise ValueError(f"{kwargs.get('name', 'conv')}: padding_mode {conv.padding_mode!r} is not supported")
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        self.stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups
        self.padding = conv.padding
        self.kernel_size = conv.kernel_size

    def _padding(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Explicit zero padding (also for 'same'), so the unfold and the conv see the same input."""
        if isinstance(self.padding, str):
            if self.padding == "valid":
                return x, (0, 0)
            pads = []
            for k, d in zip(reversed(self.kernel_size), reversed(self.dilation), strict=True):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return F.pad(x, pads), (0, 0)
        return x, tuple(self.padding)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "float":
            x, pad = self._padding(x)
            return F.conv2d(x, self.weight, self.bias, self.stride, pad, self.dilation, self.groups)
        x_codes = self.act.codes(x)
        w_codes, w_step = self._weight_codes()
        x_codes, pad = self._padding(x_codes)
        if self.asymmetric:  # pad with the code of real zero; the exact result multiplies centred codes
            zx = self.act.zero_point()
            x_codes, pad = F.pad(x_codes, (pad[1], pad[1], pad[0], pad[0]), value=float(zx)), (0, 0)

            def exact() -> Tensor:
                return F.conv2d(x_codes - zx, w_codes - self._weight_zero().reshape(-1, 1, 1, 1), None, self.stride,
                                pad, self.dilation, self.groups)
        else:
            def exact() -> Tensor:
                return F.conv2d(x_codes, w_codes, None, self.stride, pad, self.dilation, self.groups)
        out_hw = [(x_codes.shape[2 + i] + 2 * pad[i] - self.dilation[i] * (self.kernel_size[i] - 1) - 1)
                  // self.stride[i] + 1 for i in range(2)]
        out_shape = (x_codes.shape[0], w_codes.shape[0], *out_hw)
        y = self._integer(exact, lambda: self._simulate(x_codes.detach(), w_codes.detach(), pad, out_shape))
        y = y * (self.act.step() * w_step.reshape(1, -1, 1, 1))
        return y if self.bias is None else y + self.bias.reshape(1, -1, 1, 1)

    def _simulate(self, x_codes: Tensor, w_codes: Tensor, pad: tuple[int, int], out_shape) -> Tensor:
        config = self._config()
        kk = self.kernel_size[0] * self.kernel_size[1]
        if (config.input_bits <= 8 and kk <= config.rows and not self.asymmetric
                and (self.digital or self.pac is None) and _byte_codes_fit(x_codes, config)):
            return self._simulate_bytes(x_codes, w_codes, pad, out_shape, config)
        return self._simulate_unfold(x_codes, w_codes, pad, out_shape)

    def _simulate_bytes(self, x_codes: Tensor, w_codes: Tensor, pad: tuple[int, int], out_shape,
                        config: CimConfig) -> Tensor:
        """The products of :meth:`_simulate_unfold` from byte codes: the channels-last padded input and the
        conversion layout as ConvRows, rows ordered (ky, kx, channel) inside each group of whole kernels (the order
        of the rows within a conversion changes no sum, so the results are the same bit for bit, noise
        included); one byte per code instead of the unfold's four, and no unfold at all on the bit-sliced kernel."""
        batch, channels, height, width_in = x_codes.shape
        _, out_ch, out_h, out_w = out_shape
        groups, cg = self.groups, w_codes.shape[1]
        (kh, kw), (sh, sw), (dh, dw), (ph, pw) = self.kernel_size, self.stride, self.dilation, pad
        kk, og, positions = kh * kw, out_ch // groups, out_h * out_w
        per_group = min(cg, config.rows // kk)  # whole kernels (input channels) per conversion group
        chunks = math.ceil(cg / per_group)
        padded = chunks > 1 and per_group * kk != config.rows  # each group zero-padded to the nominal rows
        step = config.rows if padded else per_group * kk  # where group j starts
        k_total = chunks * config.rows if padded else cg * kk
        spans = [(j * per_group, min(cg, (j + 1) * per_group)) for j in range(chunks)]
        wv = w_codes.reshape(groups, og, cg, kh, kw).permute(0, 3, 4, 2, 1)  # (G, kh, kw, Cg, Kg)
        w = w_codes.new_zeros(groups, k_total, og)
        for j, (c0, c1) in enumerate(spans):
            w[:, j * step : j * step + kk * (c1 - c0)] = wv[..., c0:c1, :].reshape(groups, -1, og)
        w_zero = self._grouped_weight_zero()
        dtype = torch.int8 if config.signed_inputs else torch.uint8
        segments = tuple(Segment(j * step + (ky * kw + kx) * (c1 - c0), ky, kx, c0, c1 - c0)
                         for j, (c0, c1) in enumerate(spans) for ky in range(kh) for kx in range(kw))
        chunk = max(1, min(batch, UNFOLD_BUDGET_BYTES // max(groups * positions * k_total, 1)))
        outs = []
        for start in range(0, batch, chunk):
            xb = x_codes[start : start + chunk]
            b = xb.shape[0]
            xp = xb.new_zeros((b, height + 2 * ph, width_in + 2 * pw, channels), dtype=dtype)
            xp[:, ph : ph + height, pw : pw + width_in] = xb.permute(0, 2, 3, 1)  # integers in range: exact
            rows = ConvRows(xp, (kh, kw), (sh, sw), (dh, dw), groups, segments, k_total)  # (G, b * positions, K)
            y = self._macro_matmul(rows, w, config, cg * kk, w_zero)
            outs.append(y.reshape(groups, b, positions, -1).permute(1, 0, 3, 2).reshape(b, out_ch, out_h, out_w))
        return torch.cat(outs)

    def _grouped_weight_zero(self) -> Tensor:
        """The weights' zero point shaped for the (G, K, Kg) weight matrices of a grouped product."""
        w_zero = self._weight_zero()
        return w_zero.reshape(self.groups, 1, -1) if w_zero.numel() > 1 else w_zero.reshape(())

    def _simulate_unfold(self, x_codes: Tensor, w_codes: Tensor, pad: tuple[int, int], out_shape) -> Tensor:
        """Unfold (fp32), arrange, :meth:`_macro_matmul`: any code width, PAC, asymmetric codes, kernels larger
        than a conversion."""
        batch, _, out_h, out_w = out_shape
        groups, out_ch = self.groups, w_codes.shape[0]
        kk = self.kernel_size[0] * self.kernel_size[1]
        cg = w_codes.shape[1]
        config = self._config()
        # rows layout: whole kernels per conversion group, each group zero-padded to the nominal rows
        per_group = max(config.rows // kk, 1) if kk <= config.rows else 0
        w = w_codes.reshape(groups, out_ch // groups, cg * kk).transpose(1, 2)  # (G, Cg*kk, Kg)
        w = self._arrange_rows(w, cg, kk, per_group, config.rows, dim=1)
        positions = out_h * out_w
        w_zero = self._grouped_weight_zero()
        row_bytes = cg * groups * kk * positions * 4
        chunk = max(1, min(batch, UNFOLD_BUDGET_BYTES // max(row_bytes, 1)))
        outs = []
        for start in range(0, batch, chunk):
            xb = x_codes[start:start + chunk]
            cols = F.unfold(xb, self.kernel_size, self.dilation, pad, self.stride)  # (b, C*kk, L)
            b = xb.shape[0]
            cols = cols.reshape(b, groups, cg * kk, positions).permute(1, 0, 3, 2).reshape(groups, b * positions, -1)
            cols = self._arrange_rows(cols, cg, kk, per_group, config.rows, dim=2)
            y = self._macro_matmul(cols, w, config, cg * kk, w_zero)  # (G, b*L, Kg)
            outs.append(y.reshape(groups, b, positions, -1).permute(1, 0, 3, 2).reshape(b, out_ch, out_h, out_w))
        return torch.cat(outs)

    @staticmethod
    def _arrange_rows(t: Tensor, cg: int, kk: int, per_group: int, rows: int, dim: int) -> Tensor:
        """Lay the C*k*k axis out as whole-kernel conversion groups of `rows` (zero-padded)."""
        if per_group == 0 or per_group * kk == rows or cg * kk <= rows:
            return t
        n = math.ceil(cg / per_group)
        t = t.movedim(dim, -1)
        lead = t.shape[:-1]
        t = F.pad(t, (0, (n * per_group - cg) * kk)).reshape(*lead, n, per_group * kk)
        t = F.pad(t, (0, rows - per_group * kk)).reshape(*lead, n * rows)
        return t.movedim(-1, dim)


class CimLinear(CimLayer):
    """A Linear layer on the CiM macro: inputs (..., in) times stored weights (in, out)."""

    def __init__(self, linear: nn.Linear, config: CimConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "float":
            return F.linear(x, self.weight, self.bias)
        x_codes = self.act.codes(x)
        w_codes, w_step = self._weight_codes()
        w_zero = self._weight_zero()
        lead = x_codes.shape[:-1]

        def exact() -> Tensor:
            if self.asymmetric:
                return F.linear(x_codes - self.act.zero_point(), w_codes - w_zero.reshape(-1, 1))
            return F.linear(x_codes, w_codes)

        def simulate() -> Tensor:
            flat = x_codes.detach().reshape(-1, x_codes.shape[-1])
            return self._macro_matmul(flat, w_codes.detach().t(), self._config(), flat.shape[-1],
                                      w_zero.reshape(1, -1)).reshape(*lead, -1)

        y = self._integer(exact, simulate) * (self.act.step() * w_step.reshape(-1))
        return y if self.bias is None else y + self.bias


class CimMatMul(CimLayer):
    """Activation x activation matmul (attention): ``a @ b`` with b held in the array (weight role).

    Both operands are activations, so both get calibrated quantisers: a with the macro's input bits,
    b signed with its weight bits (codes +-(2^(W-1)-1), like weights).
    """

    def __init__(self, config: CimConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.stored = ActivationQuantizer(config.weight_bits, signed=True,
                                          calibration=kwargs.get("calibration", "max"))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if self.mode == "float":
            return a @ b
        a_codes, b_codes = self.act.codes(a), self.stored.codes(b)

        def exact() -> Tensor:
            return a_codes @ b_codes

        def simulate() -> Tensor:
            return self._macro_matmul(a_codes.detach(), b_codes.detach(), self._config(), a_codes.shape[-1])

        return self._integer(exact, simulate) * (self.act.step() * self.stored.step())


def cim_layers(model: nn.Module) -> list[CimLayer]:
    """The CiM layers of a model, in module order."""
    return [m for m in model.modules() if isinstance(m, CimLayer)]


def pac_exact_cycles(model: nn.Module) -> dict[str, float]:
    """Mean exact cycles per output pixel of each PAC layer simulated so far (for the cost model's dynamic mode)."""
    return {layer.name: layer.pac_exact_cycles / layer.pac_outputs for layer in cim_layers(model) if layer.pac_outputs}


def set_mode(model: nn.Module, mode: Mode) -> nn.Module:
    """Put every CiM layer of the model into one mode."""
    if mode not in MODES:
        raise ValueError(f"mode = {mode!r}: expected one of {', '.join(MODES)}")
    for layer in cim_layers(model):
        layer.mode = mode
    return model


def set_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """One random generator for all the model's noise draws (seeded simulation)."""
    for layer in cim_layers(model):
        layer.generator = generator
