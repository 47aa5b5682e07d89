"""Design points: which parameters apply to a design, the grid of all points, and stable point ids.

A point is its base's name plus the value of every parameter that applies to it (in the space's
order); a parameter that does not apply (``when:`` not met, or no valid value on that base) is
absent, so it does not multiply the points. The id hashes the point's parameters and its base's
content: the same design always has the same id, and editing a base gives its points new ids.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dse.errors import InputError
from dse.explore.paths import ACCELERATOR, get_path, set_path
from dse.explore.space import Param, Space, content_sha
from dse.hardware import Accelerator, accelerator_from_dict


@dataclass(frozen=True)
class Point:
    """One design: ``params`` maps `accelerator` and each applicable parameter path to its value."""

    id: str
    params: dict[str, Any]

    @property
    def base(self) -> str:
        return self.params[ACCELERATOR]


def point_id(params: dict[str, Any], base_sha: str) -> str:
    return content_sha({"params": params, "base": base_sha})[:16]


def make_point(space: Space, params: dict[str, Any]) -> Point:
    """The point of ``params`` (`accelerator` and any parameter values), keeping only those that apply."""
    base = space.base(params[ACCELERATOR])
    kept: dict[str, Any] = {ACCELERATOR: base.name}
    data = base.data
    for p in space.params:  # unconditional first: conditions are judged on them
        if p.when is None and base.name in p.bases and p.path in params:
            kept[p.path] = params[p.path]
            data = set_path(data, p.path, params[p.path])
    for p in space.params:
        if p.when is not None and p.path in params and _matches(p, base.name, data):
            kept[p.path] = params[p.path]
    ordered = {k: kept[k] for k in space.param_names if k in kept}
    return Point(id=point_id(ordered, base.sha), params=ordered)


def _matches(p: Param, base: str, data: dict) -> bool:
    if base not in p.bases:
        return False
    assert p.when is not None
    for path, allowed in p.when:
        value = base if path == ACCELERATOR else get_path(data, path)
        if not any(value == a for a in allowed):
            return False
    return True


def grid(space: Space) -> Iterator[Point]:
    """Every point of the space: bases in order, then the parameters in file order (the last varies fastest)."""
    seen: set[str] = set()
    for base in space.bases:
        fixed = [p for p in space.params if p.when is None and base.name in p.bases]
        for combo in itertools.product(*(p.values for p in fixed)):
            values = {ACCELERATOR: base.name, **{p.path: v for p, v in zip(fixed, combo, strict=True)}}
            data = base.data
            for p, v in zip(fixed, combo, strict=True):
                data = set_path(data, p.path, v)
            extra = [p for p in space.params if p.when is not None and _matches(p, base.name, data)]
            for combo2 in itertools.product(*(p.values for p in extra)):
                point = make_point(space, {**values, **{p.path: v for p, v in zip(extra, combo2, strict=True)}})
                if point.id not in seen:
                    seen.add(point.id)
                    yield point


def grid_size(space: Space, limit: int | None = None) -> int:
    """Number of grid points (with conditional parameters, counting stops past ``limit``)."""
    n = 0
    for base in space.bases:
        fixed = [p for p in space.params if p.when is None and base.name in p.bases]
        conditional = [p for p in space.params if p.when is not None and base.name in p.bases]
        if not conditional:
            n += math.prod(len(p.values) for p in fixed)
            continue
        for combo in itertools.product(*(p.values for p in fixed)):
            data = base.data
            for p, v in zip(fixed, combo, strict=True):
                data = set_path(data, p.path, v)
            n += math.prod(len(p.values) for p in conditional if _matches(p, base.name, data))
            if limit is not None and n > limit:
                return n
    return n


def build_accelerator(space: Space, point: Point) -> Accelerator:
    """The accelerator of a point; an invalid combination raises InputError naming the field."""
    base = space.base(point.base)
    data = base.data
    for path, value in point.params.items():
        if path != ACCELERATOR:
            data = set_path(data, path, value)
    return accelerator_from_dict(data, f"point {point.id}")


def reason(err: InputError) -> str:
    """An InputError as a reason for a point's record, without the file part."""
    return str(InputError(None, err.where, err.problem, err.hint))
