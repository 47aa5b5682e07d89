"""Switching activity measured from data: weight bit sparsity, input toggle rate and input bit density per layer.

The macro model (:meth:`dse.cost.macro.MacroModel.cycle_energy_pJ`) scales the multiplier, ADC, bitline and
adder-tree energy by the input toggle rate and the density of 1 bits in the stored weights. The hardware YAML's
``activity`` gives defaults (0.5 / 0.5) and the mapping file per-layer overrides; :func:`measure_activity` gets
the figures of one network on one data set instead, with the quantisers of the accuracy simulator:

* **weight sparsity**: the fraction of 0 bits among the stored bits. A layer's weights are quantised as the
  simulator quantises them (:func:`dse.accuracy.quant.quantize_weight`: symmetric, ``W`` bits = the layer's
  precision, at most the macro's ``weight_bits``) and written, as the macro stores them, as ``weight_bits``
  two's-complement bit planes (a narrower code is sign-extended). A layer whose stored operand is an activation
  (attention's Q K^T and A V, ``weight_constant`` False) is measured on that operand as the simulator quantises it
  (signed, ``W`` bits), over every product the data set produces.
* **input toggle rate**: the fraction of input bits on a row's wire that change from one cycle to the next. An
  input code (after the layer's calibrated activation quantiser, ``I`` bits, at most the macro's ``input_bits``,
  zero-extended; signed codes sign-extended in two's complement) is applied as ``input_bits /
  input_bits_per_cycle`` slices of ``input_bits_per_cycle`` bits, least significant first (as the simulator
  applies them), then the next input vector follows on the same row. Every pair of consecutive slices on a row
  is compared, also across vector and image boundaries; the rate is the changed bits over the bits compared.
  The vectors stream in im2col order: a convolution's output pixels row by row (OX innermost, then OY), image
  after image, its rows being the unfolded ``C x FY x FX`` window (zero padding included, as the array sees
  it); a Gemm's or MatMul's rows are its input vectors in order. The mapper may choose another loop order; this
  one keeps neighbouring pixels adjacent, as a weight-stationary macro streams them with OX innermost.
* **input density**: the fraction of 1 bits among the applied input bits (what dynamic logic and bitline
  discharge scale with; reported, not yet used by the cost model).

Activations come from running the ONNX model in torch (:func:`dse.accuracy.onnx_torch.load_torch_model` via
:func:`dse.accuracy.convert.convert`) in exact-integer inference mode, after calibrating the activation clips on
the data set's training split exactly as :func:`dse.accuracy.simulate.simulate_accuracy` does; every CiM layer's
input is read by a forward hook. The bit counting is plain numpy on integer codes (:func:`input_bit_counts`,
:func:`weight_bit_counts`), so it can be tested on hand-made codes.

The cost side imports only :func:`combine` and the dataclasses; the accuracy package (and torch) load when
:func:`measure_activity` runs.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dse.errors import InputError, did_you_mean
from dse.mapping.spec import ActivityOverride
from dse.yamlio import validate

if TYPE_CHECKING:
    import onnx

    from dse.hardware import Accelerator, Macro
    from dse.workload import Workload

DEFAULT_SAMPLES = 256
"""Test images the network runs on by default (the digits test split has 360)."""
CHUNK_BITS = 1 << 25
"""Largest bit-plane array built at once while counting (a layer's inputs are counted in chunks)."""


@dataclass(frozen=True)
class BitCounts:
    """Raw counts behind the rates, so batches and chunks add up exactly."""

    toggles: int = 0  # input bits that changed between consecutive slices on a row
    compared: int = 0  # input bits compared (slice width x rows x consecutive slice pairs)
    ones: int = 0  # input bits that are 1
    bits: int = 0  # input bits applied
    vectors: int = 0  # input vectors streamed

    def __add__(self, other: BitCounts) -> BitCounts:
        return BitCounts(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))

    @property
    def toggle_rate(self) -> float:
        return self.toggles / self.compared if self.compared else 0.0

    @property
    def density(self) -> float:
        return self.ones / self.bits if self.bits else 0.0


@dataclass(frozen=True)
class LayerActivity:
    """One layer's measured switching activity (fractions in [0, 1]) and what it was measured on."""

    layer: str
    weight_sparsity: float  # 0 bits / stored bits (weight_bits two's-complement planes)
    input_toggle_rate: float  # changed bits / compared bits between consecutive input slices on a row
    input_density: float  # 1 bits / applied input bits
    weight_bits: int  # bits of the stored code (the planes counted are the macro's weight_bits)
    input_bits: int  # bits of the input code (the slices applied cover the macro's input_bits)
    vectors: int  # input vectors counted
    stored: Literal["weights", "activations"] = "weights"  # activations: attention's run-time stored operand

    def to_json(self) -> dict[str, Any]:
        """The row ``cim-dse activity --json`` prints."""
        return {"layer": self.layer, "weight_sparsity": self.weight_sparsity,
                "input_toggle_rate": self.input_toggle_rate, "input_density": self.input_density}


# -- bit counting on integer codes (pure) ----------------------------------------------------------------------
def bit_planes(codes: Any, bits: int) -> np.ndarray:
    """``(..., bits)`` uint8 planes of integer codes, least significant first; negative codes in two's complement
    (a code narrower than ``bits`` is sign-extended, an unsigned one zero-extended)."""
    c = np.asarray(codes, dtype=np.int64) & ((1 << bits) - 1)
    return ((c[..., None] >> np.arange(bits, dtype=np.int64)) & 1).astype(np.uint8)


def weight_bit_counts(codes: Any, stored_bits: int) -> tuple[int, int]:
    """(zero bits, bits) of integer weight codes stored as ``stored_bits`` two's-complement planes."""
    c = np.asarray(codes, dtype=np.int64).ravel()
    step = max(1, CHUNK_BITS // stored_bits)
    ones = sum(int(bit_planes(c[i:i + step], stored_bits).sum()) for i in range(0, c.size, step))
    total = c.size * stored_bits
    return total - ones, total


def input_bit_counts(codes: Any, bits: int, bits_per_cycle: int,
                     previous: np.ndarray | None = None) -> tuple[BitCounts, np.ndarray | None]:
    """Toggle and density counts of input vectors streamed over the rows, and the last slice applied.

    ``codes``: (vectors, rows) integer codes in stream order. Each code is applied as ``bits / bits_per_cycle``
    slices, least significant first; consecutive slices on a row are compared, across vectors too.
    ``previous``: the (bits_per_cycle, rows) slice applied just before (the last one of the previous call), so
    a stream cut into chunks counts the same as whole.
    """
    if bits % bits_per_cycle:
        raise ValueError(f"bits_per_cycle = {bits_per_cycle}: must divide bits = {bits}")
    c = np.asarray(codes, dtype=np.int64)
    if c.ndim != 2:
        raise ValueError(f"codes: expected (vectors, rows), got shape {c.shape}")
    m, rows = c.shape
    if m == 0 or rows == 0:
        return BitCounts(), previous
    slices = bits // bits_per_cycle
    planes = bit_planes(c, bits).transpose(0, 2, 1)  # (m, bits, rows), plane b = slice b // e, bit b % e
    stream = planes.reshape(m * slices, bits_per_cycle, rows)
    toggles = int(np.count_nonzero(stream[1:] != stream[:-1]))
    pairs = m * slices - 1
    if previous is not None:
        toggles += int(np.count_nonzero(stream[0] != previous))
        pairs += 1
    counts = BitCounts(toggles=toggles, compared=pairs * bits_per_cycle * rows, ones=int(planes.sum()),
                       bits=planes.size, vectors=m)
    return counts, stream[-1].copy()


def unfold(codes: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
           dilation: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """im2col of (batch, C, H, W) codes: (batch x OY x OX, C x FY x FX), output pixels row by row, image after
    image; rows channel-major as the simulator lays them out. Zero padding of ``padding`` (y, x) on both sides."""
    (fy, fx), (sy, sx), (dy, dx), (py, px) = kernel, stride, dilation, padding
    c = np.pad(np.asarray(codes), ((0, 0), (0, 0), (py, py), (px, px)))
    windows = np.lib.stride_tricks.sliding_window_view(c, ((fy - 1) * dy + 1, (fx - 1) * dx + 1), axis=(2, 3))
    windows = windows[:, :, ::sy, ::sx, ::dy, ::dx]  # (batch, C, OY, OX, FY, FX)
    b, ch, oy, ox = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(b * oy * ox, ch * fy * fx)


# -- combining with the mapping file's overrides ---------------------------------------------------------------
def combine(mapping: ActivityOverride | None, measured: ActivityOverride | LayerActivity | None
            ) -> ActivityOverride | None:
    """The activity a layer is priced at: each field from the mapping file when it sets it, else the measured
    (or given) value, else None (the macro's default)."""
    if measured is None:
        return mapping

    def pick(name: str) -> float | None:
        value = getattr(mapping, name, None) if mapping is not None else None
        return value if value is not None else getattr(measured, name, None)

    return ActivityOverride(input_toggle_rate=pick("input_toggle_rate"), weight_sparsity=pick("weight_sparsity"))


def activity_overrides(given: Mapping[str, Any], workload: Workload, source: str = "activity"
                       ) -> dict[str, ActivityOverride]:
    """Per-layer activity given as ``{layer: LayerActivity | ActivityOverride | {field: value}}`` -> overrides,
    refusing unknown layer names and bad values with an :class:`InputError`."""
    names = [layer.name for layer in workload.layers]
    out = {}
    for name, value in given.items():
        if name not in names:
            raise InputError(source, f"[{name}]", f"no compute layer of this name in "
                             f"{workload.source or workload.name}", did_you_mean(name, names))
        if isinstance(value, ActivityOverride):
            out[name] = value
            continue
        if isinstance(value, LayerActivity):
            value = {"input_toggle_rate": value.input_toggle_rate, "weight_sparsity": value.weight_sparsity}
        if isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k != "input_density"}  # measured rows carry it; not priced
        out[name] = validate(ActivityOverride, value, source, prefix=f"[{name}]")
    return out


# -- measuring on a data set -------------------------------------------------------------------------------------
class _LayerProbe:
    """Accumulates one CiM layer's input counts batch after batch (and, for attention, its stored operand's)."""

    def __init__(self, layer, macro: Macro):
        self.layer, self.macro = layer, macro
        self.counts = BitCounts()
        self.previous: np.ndarray | None = None
        self.stored_zeros = self.stored_bits = 0

    def __call__(self, module, args, output) -> None:
        import torch

        with torch.no_grad():
            x = args[0]
            codes = module.act.codes(x)
            self._count_inputs(self._vectors(module, codes))
            if len(args) > 1 and hasattr(module, "stored"):  # attention: b is written into the array
                zeros, total = weight_bit_counts(module.stored.codes(args[1]).to(torch.int64).cpu().numpy(),
                                                 self.macro.weight_bits)
                self.stored_zeros += zeros
                self.stored_bits += total

    @staticmethod
    def _vectors(module, codes) -> np.ndarray:
        """The (vectors, rows) codes the array's rows receive, in stream order (module docstring)."""
        import torch

        if hasattr(module, "kernel_size"):  # convolution: the unfolded window per output pixel
            padded, pad = module._padding(codes)
            return unfold(padded.to(torch.int64).cpu().numpy(), module.kernel_size, module.stride, module.dilation,
                          pad)
        return codes.to(torch.int64).cpu().numpy().reshape(-1, codes.shape[-1])

    def _count_inputs(self, v: np.ndarray) -> None:
        m = self.macro
        step = max(1, CHUNK_BITS // max(1, v.shape[1] * m.input_bits))
        for start in range(0, v.shape[0], step):
            counts, self.previous = input_bit_counts(v[start:start + step], m.input_bits, m.input_bits_per_cycle,
                                                     self.previous)
            self.counts += counts


def _splits(dataset: str, data_path: str | Path | None, seed: int):
    """(train, test) of the data set, split as the simulator splits it (digits: by ``seed``)."""
    from dse.accuracy.datasets import load_split

    split_seed = seed if dataset == "digits" else 0
    return (load_split(dataset, "train", data_path, seed=split_seed),
            load_split(dataset, "test", data_path, seed=split_seed))


def measure_activity(model: str | Path | onnx.ModelProto, workload: Workload | str | Path | None,
                     hardware: Macro | Accelerator | str | Path, *, dataset: str = "digits",
                     data_path: str | Path | None = None, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                     calibration_samples: int = 512, per_channel: bool = False, batch_size: int = 128,
                     device: str = "cpu") -> dict[str, LayerActivity]:
    """Weight sparsity, input toggle rate and input density of every compute layer, keyed by layer name.

    ``model``: the ONNX model with its weights; ``workload``: its layer graph (with the mapping file's precision
    overrides applied; default: loaded from ``model``), whose ``W`` and ``I`` bits set the quantisers (capped at
    the macro's); ``hardware``: the macro (its weight_bits, input_bits and input_bits_per_cycle). The network runs
    on ``samples`` test images of ``dataset`` (a seeded subset), after its activation clips are calibrated on
    ``calibration_samples`` training images as the simulator does. Raises :class:`InputError` for a model
    without weights, an unsupported op or a missing data set.
    """
    import torch

    from dse.accuracy.convert import convert
    from dse.accuracy.core import CimConfig
    from dse.accuracy.layers import cim_layers, set_mode
    from dse.accuracy.quant import quantize_weight
    from dse.accuracy.simulate import batches_of, calibrate, sample_indices
    from dse.hardware import macro_of
    from dse.workload import Workload, load_onnx

    if samples < 1:
        raise InputError(None, "samples", f"= {samples}: must be at least 1")
    macro = macro_of(hardware)
    if workload is None or not isinstance(workload, Workload):
        workload = load_onnx(workload if workload is not None else model)
    layers = {layer.name: layer for layer in workload.layers}
    if not layers:
        raise InputError(workload.source or workload.name, None, "no compute layer to measure")
    # the quantisers only: exact arithmetic, one input bit per cycle (any width divides), each layer's own bits
    base = CimConfig(weight_bits=max(2, macro.weight_bits), input_bits=macro.input_bits, input_bits_per_cycle=1)

    def bits(layer) -> tuple[int, int]:
        return max(2, min(layer.precision.W, macro.weight_bits)), min(layer.precision.I, macro.input_bits)

    overrides = {glob.escape(name): {"weight_bits": w, "input_bits": i}
                 for name, layer in layers.items() for w, i in [bits(layer)]
                 if (w, i) != (base.weight_bits, base.input_bits)}
    cim = convert(model, base, overrides, digital=(), per_channel=per_channel).to(device)
    train, test = _splits(dataset, data_path, seed)
    calibration = batches_of(train, batch_size, sample_indices(len(train), calibration_samples, seed))
    probes = {layer.name: _LayerProbe(layer, macro) for layer in cim_layers(cim) if layer.name in layers}
    handles: list = []
    try:
        calibrate(cim, calibration, device)
        set_mode(cim, "inference")
        handles = [layer.register_forward_hook(probes[layer.name]) for layer in cim_layers(cim)
                   if layer.name in probes]
        with torch.no_grad():
            for x, _ in batches_of(test, batch_size, sample_indices(len(test), samples, seed)):
                cim(x.to(device))
    except (RuntimeError, TypeError) as err:  # the data set's images do not fit the model's input
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(workload.source or workload.name, "dataset",
                         f"= {dataset!r}: the model cannot run on its images ({first})",
                         "measure on the data set the model was built for") from None
    finally:
        for handle in handles:
            handle.remove()

    out: dict[str, LayerActivity] = {}
    for name, layer in layers.items():
        probe = probes.get(name)
        if probe is None or probe.counts.vectors == 0:
            raise InputError(workload.source or workload.name, f"layer '{name}'",
                             f"received no input while running {dataset}: no activity can be measured")
        w_bits, i_bits = bits(layer)
        if hasattr(probe.layer, "weight"):  # Conv2d, Linear: the constant weights
            codes, _ = quantize_weight(probe.layer.weight.detach(), w_bits, per_channel)
            zeros, total = weight_bit_counts(codes.to(torch.int64).cpu().numpy(), macro.weight_bits)
        else:  # a matmul: its second operand, quantised as it is written into the array, over every product
            zeros, total = probe.stored_zeros, probe.stored_bits
        stored = "weights" if layer.weight_constant else "activations"
        out[name] = LayerActivity(
            layer=name, weight_sparsity=zeros / total if total else 0.0,
            input_toggle_rate=probe.counts.toggle_rate, input_density=probe.counts.density,
            weight_bits=w_bits, input_bits=i_bits, vectors=probe.counts.vectors, stored=stored)
    return out
