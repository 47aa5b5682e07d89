"""The design-space file: base accelerators, a workload, the fields to vary, constraints, objectives, strategy.

These frozen pydantic dataclasses are the YAML schema (unknown fields are refused; ``docs/space.md``
is generated from them). ``load_space`` validates a file and resolves it into a :class:`Space`:
the base accelerators loaded, every parameter path checked against them and its values expanded.
Relative paths in the file are read from the space file's folder.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass as plain_dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.dataclasses import dataclass
from typing_extensions import TypeAliasType

from dse.errors import FieldProblem, InputError, display_path
from dse.explore.paths import ACCELERATOR, applies, check_path, set_path
from dse.hardware import Accelerator, accelerator_from_dict, accelerator_to_dict, load_accelerator
from dse.yamlio import read_yaml, validate

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MAPPING = REPO_ROOT / "mapping" / "default.yaml"
CHIPS = ("aimc1", "aimc2", "aimc3", "dimc1", "dimc2", "dimc3", "dimc4")  # the calibrated chips (as dse.cli.CHIPS)

# named aliases: the generated docs show "value" and "number" rather than the unions
Scalar = TypeAliasType("value", bool | int | float | str | None)  # a YAML scalar; null unsets a field
Number = TypeAliasType("number", int | float)
_STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_STRICT)
class Parameter:
    """The values one field takes: give exactly one of values, range, log_range, pow2 (a plain list = values)."""

    values: tuple[Scalar, ...] | None = Field(
        None, description="the values in order (numbers, strings, true/false; `null` unsets an optional field); "
        "a plain list or a single value in the file means this"
    )
    range: tuple[Number, Number, Number] | None = Field(
        None, description="[lo, hi, step]: lo, lo + step, ... up to and including hi; integers when all three are"
    )
    log_range: tuple[Number, Number, int] | None = Field(
        None, description="[lo, hi, n]: n values evenly spaced in log scale from lo to hi (both included); "
        "rounded to integers (repeats dropped) when lo and hi are integers"
    )
    pow2: tuple[int, int] | None = Field(None, description="[lo, hi]: every power of two from lo to hi")
    when: dict[str, Scalar | tuple[Scalar, ...]] | None = Field(
        None, description="vary this field only in designs whose fields have these values (field path -> value, "
        "or a list of allowed values; `accelerator` is the base's name), judged after the unconditional "
        "parameters are applied. Default: the field is varied on every base where at least one of its values "
        "gives a valid accelerator, and left as the base has it elsewhere"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        given = [k for k in ("values", "range", "log_range", "pow2") if getattr(self, k) is not None]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            raise FieldProblem("values", f"give exactly one of values, range, log_range, pow2 (found {what})")
        return self


@dataclass(frozen=True, config=_STRICT)
class WorkloadSpec:
    """The network every design point runs, and how its accuracy is measured."""

    model: str = Field(description="ONNX model (relative to the space file); with weights when accuracy is wanted")
    mapping: str | None = Field(None, description="mapping YAML (relative to the space file; default: cim-dse's "
                                "mapping/default.yaml)")
    opt: Literal["energy", "latency", "edp"] = Field("latency", description="what the mapper minimises per layer")
    dataset: str = Field("digits", description="data set the accuracy is measured on")
    data_path: str | None = Field(None, description="where the data set lives, if it is not built in")
    samples: int | None = Field(None, gt=0, description="test images per accuracy run (default: the whole test set)")
    repeats: int = Field(1, gt=0, description="noise instances averaged per accuracy run")
    seed: int = Field(0, description="seed of the accuracy simulation (noise, sample choice)")
    activity: Literal["macro", "measured"] = Field(
        "macro", description="switching activity each layer is priced at: `macro` (the hardware YAML's `activity` "
        "defaults) or `measured` (input toggle rate and weight sparsity measured per layer on `activity_samples` "
        "test images of `dataset`, once per weight bits, input bits and input bits per cycle; needs the model's "
        "weights). The mapping file's `activity` entries win either way")
    activity_samples: int = Field(256, gt=0, description="test images the activity is measured on")
    finetune_epochs: int = Field(
        0, ge=0, description="hardware-aware fine-tuning before each accuracy run: this many epochs of training "
        "from the model's weights through the design's own macro (its ADC, noise and non-linearity in the forward "
        "pass; `cim-dse train --macro-noise`) on the training split of `dataset`; 0 simulates the model as it is")
    finetune_lr: float = Field(1e-3, gt=0, description="learning rate of the fine-tuning (Adam)")


@dataclass(frozen=True, config=_STRICT)
class Constraints:
    """Limits a design must meet; a design that misses one is recorded as `infeasible` and kept off the front."""

    max_area_mm2: float | None = Field(None, gt=0, description="area budget, mm^2")
    max_latency_s: float | None = Field(None, gt=0, description="latency of one inference, s")
    max_energy_pJ: float | None = Field(None, gt=0, description="energy of one inference, pJ")
    max_edp_Js: float | None = Field(None, gt=0, description="energy-delay product, J*s")
    min_accuracy: float | None = Field(None, ge=0, le=1, description="top-1 accuracy, fraction in [0, 1]")
    min_tops_per_w: float | None = Field(None, gt=0, description="energy efficiency on the workload, TOP/s/W")


@dataclass(frozen=True, config=_STRICT)
class Strategy:
    """How the design points are chosen."""

    kind: Literal["auto", "grid", "nsga2"] = Field(
        "auto", description="grid = every point; nsga2 = optuna's NSGA-II multi-objective search under the budget; "
        "auto = grid when the grid has at most `budget` points, else nsga2"
    )
    budget: int = Field(500, gt=0, description="nsga2: distinct design points to evaluate (points already in the "
                        "result store count)")
    population: int = Field(16, ge=2, description="nsga2: design points per generation")
    seed: int = Field(0, description="seed of the search (nsga2)")


@dataclass(frozen=True, config=_STRICT)
class DesignSpace:
    """A design-space exploration: base accelerator(s), workload, varied fields, constraints, objectives."""

    base: tuple[str, ...] = Field(
        description="accelerator YAML file(s), relative to the space file; several bases become the parameter "
        "`accelerator` (their `name`s)"
    )
    workload: WorkloadSpec = Field(description="network, mapping and accuracy settings")
    parameters: dict[str, Parameter] = Field(
        default_factory=dict, description="field path -> values. Paths: `macro.<field>` (also `macro.circuit.*`, "
        "`macro.accuracy.*`), `technology.<field>`, `memories.<level name>.<field>`, `clock_ns`"
    )
    objectives: tuple[Literal["energy", "latency", "area", "edp", "accuracy", "tops_per_w", "program_energy",
                              "program_time"], ...] = Field(
        ("energy", "latency", "area"), description="2 to 4 of: energy (pJ, min), latency (s, min), area (mm^2, min), "
        "edp (J*s, min), accuracy (max), tops_per_w (TOP/s/W on the workload, max), program_energy (pJ, min) and "
        "program_time (s, min) of NVM write-verify; the first two are the main plot"
    )
    constraints: Constraints = Field(default_factory=Constraints, description="limits on the results")
    strategy: Strategy = Field(default_factory=Strategy, description="grid or search")
    name: str | None = Field(None, description="run name: results go to outputs/<name>/ (default: the file's stem)")
    references: tuple[str, ...] | None = Field(
        None, description="accelerator YAML files evaluated on the same workload and drawn as labelled reference "
        "markers (default: the 7 calibrated chips in cim-dse's hardware/; [] for none)"
    )

    @field_validator("base", "references", mode="before")
    @classmethod
    def _one_or_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("parameters", mode="before")
    @classmethod
    def _plain_values(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: v if isinstance(v, dict) else {"values": v if isinstance(v, list) else [v]}
                for k, v in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> DesignSpace:
        if not self.base:
            raise FieldProblem("base", "empty: name at least one accelerator YAML file")
        if not 2 <= len(self.objectives) <= 4:
            raise FieldProblem("objectives", f"= {list(self.objectives)}: give 2 to 4 objectives")
        if len(set(self.objectives)) != len(self.objectives):
            raise FieldProblem("objectives", f"= {list(self.objectives)}: an objective is listed twice")
        if ACCELERATOR in self.parameters:
            raise FieldProblem(f"parameters.{ACCELERATOR}", "is set by `base`: list the files there")
        return self


# -- the resolved space ------------------------------------------------------------------------
@plain_dataclass(frozen=True)
class Base:
    """One base accelerator: its name (the `accelerator` parameter's value), file, data and content hash."""

    name: str
    path: Path
    accelerator: Accelerator
    data: dict
    sha: str


@plain_dataclass(frozen=True)
class Param:
    """One varied field: its path, its values, the bases it applies to and its `when` condition."""

    path: str
    values: tuple[Any, ...]
    bases: tuple[str, ...]
    when: tuple[tuple[str, tuple[Any, ...]], ...] | None = None


@plain_dataclass(frozen=True)
class Space:
    """A validated design space, ready to enumerate."""

    spec: DesignSpace
    source: str  # the file as shown in messages
    root: Path  # folder relative paths are read from
    name: str
    bases: tuple[Base, ...]
    params: tuple[Param, ...]
    model: Path
    mapping: Path
    references: tuple[Path, ...]
    notes: tuple[str, ...]  # parameters dropped on some bases, and why

    @property
    def objectives(self) -> tuple[str, ...]:
        return self.spec.objectives

    @property
    def needs_accuracy(self) -> bool:
        return "accuracy" in self.spec.objectives or self.spec.constraints.min_accuracy is not None

    @property
    def param_names(self) -> tuple[str, ...]:
        return (ACCELERATOR, *(p.path for p in self.params))

    def base(self, name: str) -> Base:
        return next(b for b in self.bases if b.name == name)

    def summary(self) -> dict:
        """Plain data of the space as resolved (for run.json)."""
        return {
            "source": self.source,
            "name": self.name,
            "bases": {b.name: {"path": display_path(b.path), "sha256": b.sha} for b in self.bases},
            "parameters": {p.path: {"values": list(p.values), "bases": list(p.bases),
                                    "when": {k: list(v) for k, v in p.when} if p.when else None}
                           for p in self.params},
            "objectives": list(self.objectives),
            "constraints": {k: v for k, v in vars(self.spec.constraints).items() if v is not None},
            "strategy": vars(self.spec.strategy),
            "workload": {**vars(self.spec.workload), "model": display_path(self.model),
                         "mapping": display_path(self.mapping)},
            "references": [display_path(p) for p in self.references],
            "notes": list(self.notes),
        }


def content_sha(data: Any) -> str:
    """sha256 of plain data in canonical JSON (key order and YAML comments do not matter)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_space(path: str | Path) -> Space:
    """Read and resolve a design-space YAML file (docs/space.md); bad input -> InputError."""
    path = Path(path)
    return space_from_data(read_yaml(path), path, root=path.parent)


def space_from_data(data: Any, source: str | Path = "<space>", root: str | Path | None = None) -> Space:
    """Validate plain data (as read from YAML) and resolve it; relative paths are read from ``root``."""
    shown = display_path(source) if isinstance(source, Path) else str(source)
    root = Path(root) if root is not None else Path.cwd()
    spec: DesignSpace = validate(DesignSpace, data, shown)
    name = spec.name or (Path(source).stem if isinstance(source, Path) else "explore")
    bases = _load_bases(spec, shown, root)
    params, notes = _resolve_params(spec, shown, bases)
    model = _existing(root, spec.workload.model, shown, "workload.model")
    mapping = _existing(root, spec.workload.mapping, shown, "workload.mapping") if spec.workload.mapping \
        else DEFAULT_MAPPING
    if spec.references is None:
        refs = tuple(p for p in (REPO_ROOT / "hardware" / f"{c}.yaml" for c in CHIPS) if p.exists())
    else:
        refs = tuple(_existing(root, r, shown, f"references[{i}]") for i, r in enumerate(spec.references))
    return Space(spec=spec, source=shown, root=root, name=name, bases=bases, params=params, model=model,
                 mapping=mapping, references=refs, notes=tuple(notes))


def _existing(root: Path, rel: str, shown: str, where: str) -> Path:
    path = Path(rel) if Path(rel).is_absolute() else root / rel
    if not path.exists():
        raise InputError(shown, where, f"= {rel!r}: no such file (paths are relative to {display_path(root) or '.'})")
    return path


def _load_bases(spec: DesignSpace, shown: str, root: Path) -> tuple[Base, ...]:
    bases: list[Base] = []
    for i, rel in enumerate(spec.base):
        path = _existing(root, rel, shown, f"base[{i}]")
        acc = load_accelerator(path)
        if any(b.name == acc.name for b in bases):
            raise InputError(shown, f"base[{i}]", f"= {rel!r}: another base is also named '{acc.name}'",
                             "give the accelerators distinct `name`s")
        data = accelerator_to_dict(acc)
        bases.append(Base(name=acc.name, path=path, accelerator=acc, data=data, sha=content_sha(data)))
    return tuple(bases)


def expand_values(param: Parameter, where: str, shown: str) -> tuple[Any, ...]:
    """The values a parameter entry stands for, in order, repeats dropped."""
    if param.values is not None:
        values: list[Any] = list(param.values)
    elif param.range is not None:
        lo, hi, step = param.range
        if step <= 0 or hi < lo:
            raise InputError(shown, f"{where}.range", f"= {list(param.range)}: expected [lo, hi, step] with "
                             "lo <= hi and step > 0")
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        as_int = all(isinstance(v, int) for v in param.range)
        values = [lo + i * step if as_int else float(f"{lo + i * step:.12g}") for i in range(n)]
    elif param.log_range is not None:
        lo, hi, n = param.log_range
        if lo <= 0 or hi < lo or n < 1:
            raise InputError(shown, f"{where}.log_range", f"= {list(param.log_range)}: expected [lo, hi, n] with "
                             "0 < lo <= hi and n >= 1")
        raw = [lo * (hi / lo) ** (i / (n - 1)) if n > 1 else lo for i in range(n)]
        as_int = isinstance(lo, int) and isinstance(hi, int)
        values = [round(v) if as_int else float(f"{v:.12g}") for v in raw]
    else:
        assert param.pow2 is not None
        lo, hi = param.pow2
        values = [1 << k for k in range(64) if lo <= 1 << k <= hi]
        if not values:
            raise InputError(shown, f"{where}.pow2", f"= {list(param.pow2)}: no power of two lies in [lo, hi]")
    out: list[Any] = []
    for v in values:
        if not any(v == o and type(v) is type(o) for o in out):
            out.append(v)
    if not out:
        raise InputError(shown, where, "no values: list at least one")
    return tuple(out)


def _resolve_params(spec: DesignSpace, shown: str, bases: tuple[Base, ...]) -> tuple[tuple[Param, ...], list[str]]:
    memory_names = {b.name: [m["name"] for m in b.data.get("memories", [])] for b in bases}
    params: list[Param] = []
    notes: list[str] = []
    conditional = {p for p, entry in spec.parameters.items() if entry.when}
    for path, entry in spec.parameters.items():
        where = f"parameters.{path}"
        check_path(path, memory_names, shown, where)
        values = expand_values(entry, where, shown)
        when = None
        if entry.when:
            conds = []
            for cpath, allowed in entry.when.items():
                if cpath in conditional:
                    raise InputError(shown, f"{where}.when.{cpath}", "names another conditional parameter",
                                     "a condition may only read the base and the unconditional parameters")
                if cpath != ACCELERATOR:
                    check_path(cpath, memory_names, shown, f"{where}.when.{cpath}")
                conds.append((cpath, tuple(allowed) if isinstance(allowed, tuple | list) else (allowed,)))
            when = tuple(conds)
            on = tuple(b.name for b in bases if applies(path, b.data))
        else:
            on, reasons = _bases_taking(path, values, bases)
            if not on:
                raise InputError(shown, where, f"applies to no base: {reasons[0]}",
                                 "check the values, or the field belongs to another kind of macro")
            for b, why in zip((b for b in bases if b.name not in on), reasons, strict=False):
                notes.append(f"{path} is not varied on {b.name}: {why}")
        params.append(Param(path=path, values=values, bases=on, when=when))
    return tuple(params), notes


def _bases_taking(path: str, values: tuple[Any, ...], bases: tuple[Base, ...]) -> tuple[tuple[str, ...], list[str]]:
    """Bases on which at least one value gives a valid accelerator; for the others, why not."""
    on: list[str] = []
    reasons: list[str] = []
    for b in bases:
        if not applies(path, b.data):
            reasons.append(f"{b.name} has no such field")
            continue
        problem = None
        for v in values:
            try:
                accelerator_from_dict(set_path(b.data, path, v), b.name)
            except InputError as err:
                problem = problem or str(InputError(None, err.where, err.problem, err.hint))
                continue
            on.append(b.name)
            break
        else:
            reasons.append(f"every value is invalid on {b.name} ({problem})")
    return tuple(on), reasons

