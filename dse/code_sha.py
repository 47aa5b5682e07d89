"""A hash of cim-dse's own code, so that stored results are recomputed when the code that made them changes.

An exploration folder keeps its results across runs; without this, a better cost model (or a fixed
simulator) would be mixed with results of the old one. The hash is taken over each module's syntax
tree with docstrings removed, so comments, docstrings and formatting do not invalidate anything, while
any change to what the code does (a constant, a formula, an import) does.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
from functools import cache
from importlib import metadata
from pathlib import Path

from dse.atomic import write_atomic

PACKAGE = Path(__file__).resolve().parent
MAX_REMEMBERED = 4096


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def module_digest(path: Path) -> str:
    """sha256 of a Python file's syntax tree without docstrings (the raw bytes if it does not parse)."""
    return _tree_digest(path.read_bytes(), str(path))


def _tree_digest(text: bytes, name: str) -> str:
    try:
        tree = _strip_docstrings(ast.parse(text, filename=name))
    except SyntaxError:
        return hashlib.sha256(text).hexdigest()
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def cache_file() -> Path:
    """Where the tree digests are remembered by file content (parsing all of dse takes about half a second)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "cim-dse" / "code-digests.json"


def _digests(paths: list[Path]) -> dict[Path, str]:
    """Tree digest of each Python file, looked up by the sha256 of its bytes in :func:`cache_file` when possible;
    the sha256 of the bytes of any other file."""
    try:
        known = json.loads(cache_file().read_text(encoding="utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    out, current, fresh = {}, {}, False
    for path in paths:
        text = path.read_bytes()
        raw = hashlib.sha256(text).hexdigest()
        if path.suffix != ".py":
            out[path] = raw
            continue
        digest = known.get(raw)
        if not isinstance(digest, str):
            digest, fresh = _tree_digest(text, str(path)), True
        out[path] = current[raw] = digest
    if fresh:
        merged = {**known, **current}
        if len(merged) > MAX_REMEMBERED:  # a developer's many edits: keep what this code uses
            merged = current
        with contextlib.suppress(OSError):  # a read-only home only costs the parsing next time
            write_atomic(cache_file(), json.dumps(merged, indent=0, sort_keys=True))
    return out


@cache
def code_sha(include: tuple[str, ...] = (), exclude: tuple[str, ...] = (), packages: tuple[str, ...] = ()) -> str:
    """Hash of the ``dse`` modules under the ``include`` sub-paths (all when empty) minus ``exclude``,
    plus the installed versions of ``packages`` (e.g. torch, whose kernels the simulator's numbers depend on).

    Paths are relative to the package (``"accuracy"``, ``"explore/plots.py"``); 16 hex digits.
    """
    def under(rel: str, parts: tuple[str, ...]) -> bool:
        return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in parts)

    chosen = {}
    for path in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.c")]):  # .c: the simulator's native kernel
        rel = path.relative_to(PACKAGE).as_posix()
        if (not include or under(rel, include)) and not under(rel, exclude):
            chosen[rel] = path
    digests = _digests(list(chosen.values()))
    digest = hashlib.sha256()
    for rel, path in chosen.items():
        digest.update(f"{rel}\0{digests[path]}\n".encode())
    for name in packages:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}=={version}\n".encode())
    return digest.hexdigest()[:16]


def cost_code_sha() -> str:
    """What a point's cost depends on: everything but the simulator and the presentation layers."""
    return code_sha(exclude=("accuracy", "cli.py", "schema_docs.py", "explore/plots.py"))


def accuracy_code_sha() -> str:
    """What a simulated accuracy depends on: the simulator and torch's version."""
    return code_sha(include=("accuracy",), packages=("torch", "numba"))
