"""Turn a float model (torch or ONNX with weights) into a CiM model driven by one macro description.

``convert(model, macro)`` swaps every nn.Conv2d, nn.Linear and activation x activation matmul for its
CiM layer, each with a :class:`CimConfig` read from the macro (rows per conversion, ADC bits,
precisions, input bits per cycle, noise, hybrid levels, votes) and per-layer overrides. The stem (first
compute layer) and the classifier (last) stay *digital* by default: quantised to the same bits but
computed exactly, as the anchors keep them off the analog array; pass ``digital=()`` to put them on it.

A digital macro (``kind: digital``) is simulated as what it is: exact adder trees (``adc_bits`` None), and
each layer records ``macro_kind``. ``macro.accuracy.pac_operand`` turns on PAC (:mod:`dse.accuracy.pac`) in
every layer on the array; overrides may set ``pac_operand`` (null = off), ``pac_dynamic`` and
``pac_thresholds`` per layer, and ``asymmetric`` (UINT codes with zero points, PACiM's framework; also
``convert(..., asymmetric=True)`` for every Conv2d and Linear). Dynamic PAC and asymmetric weights need exact
cycles (a digital macro, or ``adc_bits: null``).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path

import onnx
from torch import nn

from dse.accuracy.core import CimConfig
from dse.accuracy.layers import CimConv2d, CimLayer, CimLinear, CimMatMul, set_mode
from dse.accuracy.pac import DEFAULT_THRESHOLDS, PacConfig
from dse.errors import InputError, did_you_mean
from dse.hardware import Accelerator, Macro, macro_of
from dse.models.vit import ActivationMatMul

DIGITAL_DEFAULT: tuple[str, ...] = ("first", "last")
CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CimConfig))
LAYER_FIELDS: tuple[str, ...] = ("digital", "asymmetric", "pac_operand", "pac_dynamic", "pac_thresholds")
"""Per-layer override keys that are not CimConfig fields."""


def config_from_macro(macro: Macro) -> CimConfig:
    """The simulator's view of a macro: only what changes the arithmetic, nothing about cost."""
    acc = macro.accuracy
    analog = macro.kind == "analog"
    return CimConfig(
        weight_bits=macro.weight_bits,
        input_bits=macro.input_bits,
        rows=macro.circuit.rows_active or macro.rows,
        adc_bits=macro.adc_bits if analog else None,
        input_bits_per_cycle=macro.input_bits_per_cycle,
        noise_sigma_pct=(acc.noise_sigma_pct or 0.0) if analog else 0.0,
        noise_sigma_lsb=acc.noise_sigma_lsb if analog else None,
        nonlinear_sigma_pct=acc.nonlinear_sigma_pct if analog else 0.0,
        hybrid_levels=acc.hybrid_levels if analog else 0,
        votes=acc.votes if analog else 1,
        voting_levels=acc.voting_levels if analog else 0,
    )


def digital_config(config: CimConfig) -> CimConfig:
    """The same precisions computed exactly: no ADC, no noise."""
    return replace(config, adc_bits=None, noise_sigma_pct=0.0, noise_sigma_lsb=None, nonlinear_sigma_pct=0.0,
                   hybrid_levels=0, votes=1, voting_levels=0)


def _macro(hardware: Macro | Accelerator | CimConfig | str | Path) -> Macro | CimConfig:
    return hardware if isinstance(hardware, CimConfig) else macro_of(hardware)


def _torch_model(model: nn.Module | str | Path | onnx.ModelProto) -> tuple[nn.Module, dict[str, str]]:
    """The model as torch, and its module-path -> layer-name map (ONNX node names when from ONNX)."""
    if isinstance(model, nn.Module):
        return copy.deepcopy(model), dict(getattr(model, "node_of", {}))
    from dse.accuracy.onnx_torch import load_torch_model

    module = load_torch_model(model)
    return module, dict(module.node_of)


def _apply_overrides(name: str, config: CimConfig, digital: bool, overrides: Mapping[str, Mapping[str, object]],
                     layer: dict[str, object] | None = None) -> tuple[CimConfig, bool]:
    """The layer's config and digital flag after the matching overrides; ``layer`` collects the other keys."""
    layer = {} if layer is None else layer
    for pattern, changes in overrides.items():
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        for key, value in changes.items():
            if key == "digital":
                digital = bool(value)
            elif key in LAYER_FIELDS:
                layer[key] = value
            elif key not in CONFIG_FIELDS:
                raise InputError(None, f"overrides.{pattern}.{key}", "unknown CiM setting",
                                 did_you_mean(key, (*CONFIG_FIELDS, *LAYER_FIELDS)))
        known = {k: v for k, v in changes.items() if k not in LAYER_FIELDS}
        if known:
            try:
                config = replace(config, **known)
            except (TypeError, ValueError) as err:
                raise InputError(None, f"overrides.{pattern}", str(err)) from None
    return config, digital


def _pac(name: str, settings: Mapping[str, object], operand: int | None, config: CimConfig) -> PacConfig | None:
    """The layer's PAC from the macro's operand and its overrides, checked against its config."""
    operand = settings.get("pac_operand", operand)
    if operand is None:
        return None
    where = f"layer {name!r}: pac_operand"
    try:
        pac = PacConfig(operand=operand, dynamic=bool(settings.get("pac_dynamic", False)),
                        thresholds=tuple(settings.get("pac_thresholds", DEFAULT_THRESHOLDS)))
    except (TypeError, ValueError) as err:
        raise InputError(None, where, str(err)) from None
    if pac.operand > min(config.weight_bits, config.input_bits):
        raise InputError(None, where, f"= {pac.operand}: must be <= min(weight_bits, input_bits) = "
                         f"{min(config.weight_bits, config.input_bits)}")
    if pac.dynamic and not config.lossless:
        raise InputError(None, where, "dynamic PAC needs exact cycles (a digital macro, or adc_bits: null)")
    return pac


def convert(model: nn.Module | str | Path | onnx.ModelProto, hardware: Macro | Accelerator | CimConfig | str | Path,
            overrides: Mapping[str, Mapping[str, object]] | None = None, *, digital: Sequence[str] = DIGITAL_DEFAULT,
            per_channel: bool = False, calibration: str = "max", pact: bool = False,
            semantics: str = "default", asymmetric: bool = False) -> nn.Module:
    """A copy of the model with its compute layers replaced by CiM layers (mode ``simulate``).

    ``overrides`` maps a layer-name pattern (fnmatch; ONNX node name, or module path for a torch model)
    to CimConfig fields, ``digital: true/false`` or the PAC and ``asymmetric`` keys of :data:`LAYER_FIELDS`.
    ``asymmetric`` makes every Conv2d and Linear use UINT codes with zero points. ``digital`` lists layers
    computed exactly:
    ``"first"``, ``"last"`` or name patterns. The activation quantisers still need calibration
    (:func:`dse.accuracy.simulate.calibrate`).
    """
    module, node_of = _torch_model(model)
    base = _macro(hardware)
    base_config = base if isinstance(base, CimConfig) else config_from_macro(base)
    base_config = replace(base_config, semantics=semantics)
    if isinstance(base, Macro):
        macro_kind, pac_operand = base.kind, base.accuracy.pac_operand
    else:
        macro_kind, pac_operand = ("digital" if base.adc_bits is None else "analog"), None
    overrides = dict(overrides or {})
    targets = [(path, m) for path, m in module.named_modules()
               if isinstance(m, nn.Conv2d | nn.Linear | ActivationMatMul) and not isinstance(m, CimLayer)]
    if not targets:
        raise InputError(None, "model", "has no Conv2d, Linear or MatMul layer to put on the CiM macro")
    unknown = [p for p in overrides if not any(fnmatch.fnmatchcase(node_of.get(t, t), p) for t, _ in targets)]
    if unknown:
        names = [node_of.get(t, t) for t, _ in targets]
        raise InputError(None, f"overrides.{unknown[0]}", "matches no compute layer", did_you_mean(unknown[0], names))
    for index, (path, layer) in enumerate(targets):
        name = node_of.get(path, path)
        is_digital = (("first" in digital and index == 0) or ("last" in digital and index == len(targets) - 1)
                      or any(fnmatch.fnmatchcase(name, p) for p in digital if p not in ("first", "last")))
        settings: dict[str, object] = {}
        config, is_digital = _apply_overrides(name, base_config, is_digital, overrides, settings)
        if is_digital:
            config = digital_config(config)
        kwargs = {"name": name, "per_channel": per_channel, "calibration": calibration, "pact": pact}
        asym = bool(settings.get("asymmetric", asymmetric)) and not isinstance(layer, ActivationMatMul)
        if asym and not config.lossless:
            raise InputError(None, f"layer {name!r}: asymmetric", "UINT weights need exact cycles (a digital "
                             "macro, or adc_bits: null): the analog core stores two's-complement weight planes")
        if isinstance(layer, nn.Conv2d):
            new: CimLayer = CimConv2d(layer, config, **kwargs, asymmetric=asym)
        elif isinstance(layer, nn.Linear):
            new = CimLinear(layer, config, **kwargs, asymmetric=asym)
        else:
            new = CimMatMul(config, **kwargs)
        new.digital = is_digital
        new.macro_kind = macro_kind
        new.pac = None if is_digital else _pac(name, settings, pac_operand, config)
        _set_submodule(module, path, new)
    return set_mode(module, "simulate")


def _set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, attr, new)
