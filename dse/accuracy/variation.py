"""NVM device variation and selective write-verify (SWIM): noise model, curvature, selection, Monte Carlo.

**Noise model.** A weight of N bits is stored over ceil(N/m) devices of m bits; each device deviates
by an independent Gaussian weighted by its significance, relative to the layer's max|W|:
noise = max|W| * sum_{i=1..N/m} g_i 2^(-i m), g_i ~ N(0, sigma^2), with sigma = ``write_var`` for a
write-verified weight and ``dev_var`` otherwise. A sum of independent Gaussians is Gaussian, so one
draw with std sigma * max|W| * sqrt(sum 4^(-i m)) (:func:`noise_std_factor`, 0.577 for N=8, m=1) has
exactly that distribution at N/m times less random numbers. N is each layer's weight bits, m the
macro's ``bits_per_device``. The standard-normal draws do not depend on which weights are verified,
so every selection and fraction is scored on the same chips (common random numbers): differences
between methods are not noise between chip samples.

Noise lives on the layers as ``weight_delta`` in weight-code units (:mod:`dse.accuracy.layers`); only
layers on the array carry it (``digital`` layers and activation x activation matmuls do not).

**Curvature.** :func:`sensitivity` returns, per weight, the diagonal of the loss curvature with respect
to a perturbation in units of the layer's max|W| (the unit the noise is drawn in), so scores of
different layers compare. The default estimator is the *sampled Fisher*: labels drawn from the model's
own softmax, the squared gradient of the summed loss of a batch. For softmax cross-entropy the Fisher is
the Gauss-Newton matrix, and given x the sampled-label gradient of each sample has zero mean, so the
squared batch gradient is an unbiased estimate of the summed per-sample Gauss-Newton diagonal at the
cost of one first-order backward pass per batch (smaller batches: less variance). For a piecewise-linear
network (ReLU, max-pool, conv, linear) the output is linear in each single weight, so the Hessian
diagonal *equals* the Gauss-Newton diagonal; ``estimator="hutchinson"`` (E[v * Hv], Rademacher v,
Hessian-vector products by double backward) estimates it directly and is meant for models with smooth
non-linearities, where the two differ, but it pays the off-diagonal terms as variance. SWIM propagates
an OBD-style diagonal by hand and adds 2x the gradient; the gradient term vanishes in expectation under
zero-mean noise, so it is left out here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dse.accuracy.layers import CimConv2d, CimLayer, CimLinear, cim_layers, set_generator
from dse.accuracy.quant import weight_scale
from dse.accuracy.simulate import Progress, evaluate
from dse.hardware import DeviceVariation

Masks = dict[str, Tensor]
"""Layer name -> bool tensor shaped like its weight; True = write-verified."""
Scores = dict[str, Tensor]
"""Layer name -> per-weight curvature (float tensor shaped like its weight)."""
Estimator = Literal["fisher", "hutchinson"]
Method = Literal["sm", "second", "magnitude", "saliency", "random"]
METHODS: tuple[str, ...] = ("sm", "second", "magnitude", "saliency", "random")
ESTIMATORS: tuple[str, ...] = ("fisher", "hutchinson")
CURVATURE_METHODS = frozenset({"sm", "second", "saliency"})
"""Selection methods that need :func:`sensitivity`."""


# ---------------------------------------------------------------------------------------------- noise model
def significance(weight_bits: int, bits_per_device: int) -> Tensor:
    """Weight of each device's deviation, most significant first: 2^(-i m) for i = 1..ceil(N/m)."""
    if weight_bits < 1 or bits_per_device < 1:
        raise ValueError(f"weight_bits = {weight_bits}, bits_per_device = {bits_per_device}: both must be >= 1")
    devices = math.ceil(weight_bits / bits_per_device)
    return torch.tensor([2.0 ** (-i * bits_per_device) for i in range(1, devices + 1)], dtype=torch.float64)


def noise_std_factor(weight_bits: int, bits_per_device: int) -> float:
    """Std of the summed device noise per unit sigma and max|W|: sqrt(sum 4^(-i m))."""
    return float(significance(weight_bits, bits_per_device).square().sum().sqrt())


def nvm_layers(model: nn.Module) -> list[CimConv2d | CimLinear]:
    """The layers whose weights sit in the NVM array: Conv2d and Linear CiM layers that are not digital."""
    layers = [m for m in cim_layers(model) if isinstance(m, CimConv2d | CimLinear) and not m.digital]
    names = [m.name for m in layers]
    if len(set(names)) != len(names):
        raise ValueError("CiM layers must have unique names to carry variation masks")
    return layers


def weight_count(model: nn.Module) -> int:
    """Weights stored in the NVM array (what write-verify programs)."""
    return sum(layer.weight.numel() for layer in nvm_layers(model))


def _peak_and_code_unit(layer: CimLayer) -> tuple[Tensor, Tensor]:
    """The layer's max|W| and its weight-code step (per channel when the layer quantises so)."""
    w = layer.weight.detach()
    return w.abs().amax(), weight_scale(w, layer.config.weight_bits, layer.per_channel)


def uniform_masks(model: nn.Module, verified: bool) -> Masks:
    """Every NVM weight verified (True) or none (False): the all-verify and no-verify baselines."""
    return {layer.name: torch.full(layer.weight.shape, verified, dtype=torch.bool, device=layer.weight.device)
            for layer in nvm_layers(model)}


@torch.no_grad()
def sample_deltas(model: nn.Module, variation: DeviceVariation, masks: Mapping[str, Tensor],
                  generator: torch.Generator) -> dict[str, Tensor]:
    """One chip instance: each NVM weight's deviation in code units (sigma by its mask, see the module doc)."""
    deltas = {}
    for layer in nvm_layers(model):
        mask = masks.get(layer.name)
        if mask is None:
            raise KeyError(f"no write-verify mask for layer {layer.name!r}")
        peak, code_unit = _peak_and_code_unit(layer)
        w = layer.weight
        z = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
        sigma = torch.where(mask.to(w.device), variation.write_var, variation.dev_var).to(w.dtype)
        factor = noise_std_factor(layer.config.weight_bits, variation.bits_per_device)
        deltas[layer.name] = z * sigma * (peak * factor) / code_unit
    return deltas


def set_variation(model: nn.Module, deltas: Mapping[str, Tensor] | None) -> None:
    """Put each layer's deviation (code units) on it; None clears every layer."""
    for layer in nvm_layers(model):
        layer.weight_delta = None if deltas is None else deltas.get(layer.name)


@contextmanager
def perturbed(model: nn.Module, deltas: Mapping[str, Tensor]) -> Iterator[nn.Module]:
    """The model with these deviations applied for the duration of the block, cleared after."""
    set_variation(model, deltas)
    try:
        yield model
    finally:
        set_variation(model, None)


# ---------------------------------------------------------------------------------------------- curvature
def sensitivity(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], *, estimator: Estimator = "fisher",
                draws: int = 1, seed: int = 0, device: torch.device | str = "cpu") -> Scores:
    """Per-weight diagonal curvature of the cross-entropy, per unit of max|W| (see the module docstring).

    Computed in ``inference`` mode (the exact integer arithmetic the noise perturbs, activations by STE)
    as the mean over samples; ``draws`` label samples (Fisher) or probe vectors (Hutchinson) per batch.
    The model's modes, training flag and any applied variation are restored.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator = {estimator!r}: expected one of {', '.join(ESTIMATORS)}")
    if draws < 1:
        raise ValueError(f"draws = {draws}: must be at least 1")
    layers = nvm_layers(model)
    if not layers:
        raise ValueError("the model has no weights on the NVM array (every CiM layer is digital)")
    saved = [layer.weight_delta for layer in layers]
    all_layers = cim_layers(model)
    modes = [layer.mode for layer in all_layers]
    was_training = model.training
    generator = torch.Generator(device=device).manual_seed(seed)
    probes = [torch.zeros_like(layer.weight, requires_grad=True) for layer in layers]
    totals = [torch.zeros_like(layer.weight) for layer in layers]
    seen = 0
    try:
        for layer in all_layers:
            layer.mode = "inference"
        for layer, probe in zip(layers, probes, strict=True):
            layer.weight_delta = probe
        model.eval()
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            logits = logits[0] if isinstance(logits, tuple) else logits
            if estimator == "fisher":
                probs = logits.detach().softmax(dim=-1)
                for d in range(draws):
                    labels = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                    loss = F.cross_entropy(logits, labels, reduction="sum")
                    grads = torch.autograd.grad(loss, probes, retain_graph=d < draws - 1)
                    for total, g in zip(totals, grads, strict=True):
                        total += g.square()
            else:
                grads = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), probes, create_graph=True)
                for d in range(draws):
                    vs = [torch.randint(0, 2, p.shape, generator=generator, device=p.device).to(p.dtype) * 2 - 1
                          for p in probes]
                    hvs = torch.autograd.grad(grads, probes, grad_outputs=vs, retain_graph=d < draws - 1,
                                              allow_unused=True)
                    for total, v, hv in zip(totals, vs, hvs, strict=True):
                        if hv is not None:  # None: that gradient does not depend on these weights (zero curvature)
                            total += v * hv
            seen += len(y)
    finally:
        for layer, delta in zip(layers, saved, strict=True):
            layer.weight_delta = delta
        for layer, mode in zip(all_layers, modes, strict=True):
            layer.mode = mode
        model.train(was_training)
    if seen == 0:
        raise ValueError("no batches to estimate the curvature from")
    scores = {}
    for layer, total in zip(layers, totals, strict=True):
        peak, code_unit = _peak_and_code_unit(layer)
        scores[layer.name] = (total / (seen * draws)) * (peak / code_unit).square()
    return scores


# ---------------------------------------------------------------------------------------------- selection
def verified_count(weights: int, fraction: float) -> int:
    """How many of ``weights`` a fraction verifies: round half up, floor(fraction * weights + 0.5)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction = {fraction}: must be between 0 and 1")
    return min(weights, math.floor(fraction * weights + 0.5))


def _descending_order(primary: Tensor, secondary: Tensor | None = None) -> Tensor:
    """Indices sorting by primary, then secondary, both descending; full ties keep index order."""
    order = torch.arange(primary.numel(), device=primary.device)
    if secondary is not None:
        order = torch.sort(secondary, descending=True, stable=True).indices
    return order[torch.sort(primary[order], descending=True, stable=True).indices]


def select(model: nn.Module, scores: Mapping[str, Tensor] | None, fraction: float, method: Method = "sm",
           seed: int = 0) -> Masks:
    """Masks verifying exactly :func:`verified_count` weights, chosen by one global ranking over all layers.

    Ranks (higher first), with h = ``scores`` and |w| normalised by its layer's max|W| (the noise unit):
    ``sm`` SWIM's |h| max|W| 1e6 + |w|, taken as what it means: |h| first, |w| breaking ties (sorted
    lexicographically so the tie-break never outweighs curvature); ``second`` |h|; ``saliency``
    |h| w^2 (OBD); ``magnitude`` |w|; ``random`` a seeded random subset. The ranking is one stable sort,
    so it has no element limit (torch.quantile stops at 2^24) and ties resolve the same every time.
    """
    if method not in METHODS:
        raise ValueError(f"method = {method!r}: expected one of {', '.join(METHODS)}")
    layers = nvm_layers(model)
    if method in CURVATURE_METHODS:
        if scores is None:
            raise ValueError(f"method {method!r} needs curvature scores (sensitivity(...))")
        missing = [layer.name for layer in layers if layer.name not in scores]
        if missing:
            raise KeyError(f"no curvature scores for layer {missing[0]!r}")
    sizes = [layer.weight.numel() for layer in layers]
    total = sum(sizes)
    k = verified_count(total, fraction)
    chosen = torch.zeros(total, dtype=torch.bool)
    if 0 < k < total:
        magnitude = torch.cat([(layer.weight.detach().abs() / _peak_and_code_unit(layer)[0].clamp_min(1e-12))
                               .flatten().cpu() for layer in layers])
        if method == "random":
            generator = torch.Generator().manual_seed(seed)
            order = torch.randperm(total, generator=generator)
        elif method == "magnitude":
            order = _descending_order(magnitude)
        else:
            h = torch.cat([scores[layer.name].detach().abs().flatten().cpu() for layer in layers])
            if method == "sm":
                order = _descending_order(h, magnitude)
            elif method == "second":
                order = _descending_order(h)
            else:
                order = _descending_order(h * magnitude.square())
        chosen[order[:k]] = True
    elif k == total:
        chosen[:] = True
    masks = {}
    for layer, part in zip(layers, torch.split(chosen, sizes), strict=True):
        masks[layer.name] = part.reshape(layer.weight.shape).to(layer.weight.device)
    return masks


# ---------------------------------------------------------------------------------------------- Monte Carlo
@dataclass(frozen=True)
class MonteCarloResult:
    """Top-1 accuracy over chip instances: mean, sample std (n-1) and each instance's value."""

    mean: float
    std: float
    per_instance: tuple[float, ...]


def monte_carlo_accuracy(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], masks: Mapping[str, Tensor],
                         variation: DeviceVariation, instances: int = 20, seed: int = 0,
                         device: torch.device | str = "cpu", progress: Progress | None = None) -> MonteCarloResult:
    """Accuracy of ``instances`` chips: chip r draws its device noise (and any macro noise) from seed + r.

    ``batches`` is iterated once per chip, so it must be re-iterable (a list, not a generator).
    The model runs in its current mode (``inference`` for the exact integer arithmetic, ``simulate`` for
    the bit-wise macro); the variation is removed afterwards.
    """
    if instances < 1:
        raise ValueError(f"instances = {instances}: must be at least 1")
    if iter(batches) is batches:
        raise TypeError("batches is an iterator: it would be used up by the first chip; pass a list")
    accs = []
    for r in range(instances):
        generator = torch.Generator(device=device).manual_seed(seed + r)
        deltas = sample_deltas(model, variation, masks, generator)
        set_generator(model, generator)
        try:
            with perturbed(model, deltas):
                accs.append(evaluate(model, batches, device))
        finally:
            set_generator(model, None)
        if progress:
            progress(r + 1, instances)
    mean = sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
    return MonteCarloResult(mean=mean, std=std, per_instance=tuple(accs))
