"""Measured switching activity in an exploration (``workload.activity: measured``).

Each design is priced at the input toggle rate and weight sparsity that its own quantisers give on the
data set (:func:`dse.cost.activity.measure_activity`). Those depend on the macro's weight bits, input bits
and input bits per cycle only (plus the model, data set, samples and seed, shared by the run), so one
measurement serves every design with the same three: it runs in the main process the first time a design
needs it and is kept in the run folder (``activity/<key>.json``), so a resumed run measures nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dse.code_sha import accuracy_code_sha, cost_code_sha
from dse.errors import InputError
from dse.explore.space import content_sha
from dse.hardware import Macro

FIELDS = ("input_toggle_rate", "weight_sparsity")
"""What the cost model prices; input density is measured and stored but not priced."""


@dataclass(frozen=True)
class ActivitySettings:
    """What every activity measurement of a run shares (from the space's ``workload:`` section)."""

    model: str
    model_sha: str
    dataset: str = "digits"
    data_path: str | None = None
    samples: int = 256
    seed: int = 0

    def fingerprint(self) -> dict[str, Any]:
        return {"measured": True, "dataset": self.dataset, "data_path": self.data_path, "samples": self.samples,
                "seed": self.seed}


def activity_key(settings: ActivitySettings, macro: Macro) -> dict[str, Any]:
    """Everything a measurement depends on (the code of the quantisers and of the counting included)."""
    return {"weight_bits": macro.weight_bits, "input_bits": macro.input_bits,
            "input_bits_per_cycle": macro.input_bits_per_cycle, "model": settings.model_sha,
            **settings.fingerprint(), "code": [accuracy_code_sha(), cost_code_sha()]}


def key_hash(settings: ActivitySettings, macro: Macro) -> str:
    return content_sha(activity_key(settings, macro))[:16]


def measure(settings: ActivitySettings, workload: Any, mapping: Any, macro: Macro) -> dict[str, dict[str, float]]:
    """``{layer: {input_toggle_rate, weight_sparsity, input_density}}`` of the workload (with the mapping file's
    precisions) on this macro's quantisers; raises :class:`InputError` as the measurement does."""
    from dse.cost.activity import measure_activity

    wl = workload.with_precisions(mapping.precision_of)
    measured = measure_activity(settings.model, wl, macro, dataset=settings.dataset, data_path=settings.data_path,
                                samples=settings.samples, seed=settings.seed)
    return {name: {"input_toggle_rate": a.input_toggle_rate, "weight_sparsity": a.weight_sparsity,
                   "input_density": a.input_density} for name, a in measured.items()}


def priced(per_layer: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The fields the cost function takes, per layer."""
    return {name: {f: values[f] for f in FIELDS} for name, values in per_layer.items()}


def failure(exc: Exception) -> str:
    """A measurement's error as a point's reason."""
    if isinstance(exc, InputError):  # with its file: here it is the data set or the model, not the design
        return f"activity: {exc}"
    return f"activity: {type(exc).__name__}: {exc}"
