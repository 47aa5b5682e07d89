"""Host side of the bit-sliced kernel (``core_bitsliced.c``): build, load, dispatch.

The kernel counts column sums lane by lane across 512 rows at once (carry-save adders on bit
planes, see the C file's header) and runs the ADC epilogue of ``core_kernels`` in 16-lane
(AVX-512) or 8-lane (AVX2 + FMA) vectors; one source, built for the best of the two that torch's
capability string reports (``CIM_DSE_BITSLICED_ISA=avx2`` builds the AVX2 one on an AVX-512 CPU;
both compute the same bits). It is an optional fast path of ``core_fused``: compiled on first use
with the system C compiler (``$CC``, else ``cc``; about a second) into a per-user cache
(``$CIM_DSE_CACHE``, else ``$XDG_CACHE_HOME/cim-dse`` or ``~/.cache/cim-dse``), keyed by the
source, flags and compiler, and loaded with ctypes. Without a compiler, on a CPU with neither
(not x86-64), or for a configuration it does not cover (:func:`covers`: votes, the nonlinear noise
term, Box-Muller noise, more than 8 input bits or 511 rows), the numba kernels run instead (the
torch path without numba).

Noise-free results equal the numba kernels' bit for bit. Noisy codes have the same exact
distribution (inverse-CDF sampling of one 32-bit uniform, exact to 2^-32) from another generator:
xoshiro128++ in 16 lanes, seeded per (batch element, block of 512 rows) from one key drawn from
the caller's torch generator, so results depend on the generator's state, not on threads or on
how M is chunked (chunks are whole blocks). On CPUs with AVX-512 VBMI most noisy codes of single-bit cycles
come from the kernel's byte stage (:func:`byte_tables`): the same exact distribution, other bits than the
quantile sampler alone (``CIM_DSE_BYTE_NOISE=0`` switches it off, e.g. to compare with the AVX2 build).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor

from dse.accuracy.conv_rows import ConvRows
from dse.accuracy.core_planes import check_integral

if TYPE_CHECKING:
    from dse.accuracy.core import CimConfig
    from dse.accuracy.core_fused import Tables

SOURCE = Path(__file__).with_suffix(".c")
FLAGS = ("-O2", "-std=c11", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared")
ISA_FLAGS = {"avx512": ("-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl"), "avx2": ("-mavx2", "-mfma")}
"""Target flags of each build; the source picks its vector layer from the compiler's target macros."""
LANES = 512
MIN_ROWS = 2 * LANES
"""Fewest rows of M per batch element for which ``auto`` takes this kernel over numba's (measured: at one block
per element numba's is as fast, and faster on attention-sized products, where the blocks would be mostly padding
and the per-element setup would dominate)."""
MAX_ROWS = 511
MAX_CYCLES = 8
KEEP_BUILDS = 4
"""Compiled versions kept in the cache (one per source, flags and compiler)."""
CONVERT_BYTES = 64 * 2**20
"""Scratch of the code conversion (int32 rows at a time)."""

_P_I64, _P_F32, _P_F64 = ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_double)


class Params(ctypes.Structure):
    """The C kernel's ``Params`` (same fields, same order)."""

    _fields_ = [
        ("kp", ctypes.c_int64), ("ldx", ctypes.c_int64), ("n", ctypes.c_int), ("wb", ctypes.c_int),
        ("bits", ctypes.c_int), ("groups", ctypes.c_int), ("nc", ctypes.c_int), ("wide", ctypes.c_int),
        ("lists", ctypes.POINTER(ctypes.c_int32)), ("offsets", _P_I64), ("cyc", _P_I64),
        ("kinds", ctypes.POINTER(ctypes.c_int8)), ("wts", _P_F32), ("scale", _P_F32), ("den", _P_F32),
        ("lev", _P_F64), ("fp", _P_F32), ("ratio", _P_F64), ("fx", _P_F64), ("coef", _P_F32),
        ("rows_nominal", ctypes.c_double), ("levels", ctypes.c_double), ("key", ctypes.c_uint64),
        ("btab", ctypes.POINTER(ctypes.c_uint8)), ("bm", ctypes.c_int),
        ("bpath", ctypes.c_int), ("upath", ctypes.c_int),
        ("nseg", ctypes.c_int), ("seg", _P_I64), ("ow", ctypes.c_int64), ("rpi", ctypes.c_int64),
        ("ldy", ctypes.c_int64), ("ldw", ctypes.c_int64), ("ldi", ctypes.c_int64),
    ]


BYTE_THRESHOLDS = 8
"""The C kernel's most middle thresholds per count for its byte-stage noise (``BYTE_THRESHOLDS``)."""
BYTE_ENV = "CIM_DSE_BYTE_NOISE"
"""Set to 0 to keep every noisy conversion on the quantile sampler (the AVX2 build's, and the only one of CPUs
without AVX-512 VBMI): the same distribution, other bits."""


def cache_dir() -> Path:
    """Where the compiled kernel is kept."""
    if os.environ.get("CIM_DSE_CACHE"):
        return Path(os.environ["CIM_DSE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cim-dse"


def _compiler() -> str | None:
    cc = os.environ.get("CC", "cc")
    return shutil.which(cc) or shutil.which("gcc")


def isa() -> str | None:
    """The vector extension the kernel is built for here: "avx512", "avx2" or None (no x86-64 with AVX2 + FMA).

    torch's capability string says what the CPU (and OS) support; its "AVX2" level includes FMA.
    ``CIM_DSE_BITSLICED_ISA=avx2`` asks for the AVX2 build where AVX-512 is present (tests, comparisons)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    have = {"AVX512": "avx512", "AVX2": "avx2"}.get(torch.backends.cpu.get_cpu_capability())
    if have == "avx512" and os.environ.get("CIM_DSE_BITSLICED_ISA", "").lower() == "avx2":
        return "avx2"
    return have


def build(cc: str, folder: Path, target: str = "avx512") -> Path:
    """Compile the kernel for ``target`` (a key of :data:`ISA_FLAGS`) with ``cc`` into ``folder`` (once per
    source, flags and compiler) and return the library.

    Raises OSError or subprocess.SubprocessError when the compiler fails."""
    from dse.accuracy.core_fused import QUANTILE_DEGREE

    flags = (*FLAGS, *ISA_FLAGS[target], f"-DDEG={QUANTILE_DEGREE}")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    tag = hashlib.sha256(SOURCE.read_bytes() + " ".join(flags).encode() + version.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"core_bitsliced-{target}-{tag}.so"
    if not lib.exists():
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
        try:
            subprocess.run([cc, *flags, "-o", tmp, str(SOURCE), "-lm"], check=True, capture_output=True, timeout=300)
            os.replace(tmp, lib)  # atomic: a concurrent build or reader sees a whole file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _prune(folder, lib)
    return lib


def _prune(folder: Path, keep: Path) -> None:
    """Remove all but the :data:`KEEP_BUILDS` newest builds (other versions rebuild in a second if needed)."""
    builds = sorted(folder.glob("core_bitsliced-*.so"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [b for b in builds if b != keep][KEEP_BUILDS - 1 :]:
        with contextlib.suppress(OSError):  # a concurrent prune, or a read-only entry
            old.unlink()


def library(target: str | None = None) -> ctypes.CDLL | None:
    """The compiled kernel for ``target`` (default: :func:`isa`), built into :func:`cache_dir` on first use and
    loaded once per process; None where it cannot run."""
    return _library(target or isa())


def forget() -> None:
    """Drop the loaded kernels, so the next :func:`library` looks again (tests: compiler or CPU changed)."""
    _library.cache_clear()


@cache
def _library(target: str | None) -> ctypes.CDLL | None:
    cc = _compiler()
    if target is None or cc is None or not SOURCE.exists():
        return None
    try:
        dll = ctypes.CDLL(str(build(cc, cache_dir(), target)))
    except (OSError, subprocess.SubprocessError):
        return None
    dll.cim_lanes.restype = ctypes.c_int
    dll.cim_lanes.argtypes = []
    dll.cim_bitsliced.restype = ctypes.c_int
    dll.cim_bitsliced.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint64,
                                  ctypes.POINTER(Params), ctypes.c_void_p, ctypes.c_int64]
    dll.cim_quantiles.restype = None
    dll.cim_quantiles.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    dll.cim_row_lists.restype = ctypes.c_int
    dll.cim_row_lists.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_int64,
                                  ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    dll.cim_byte_noise.restype = ctypes.c_int
    dll.cim_byte_noise.argtypes = []
    dll.cim_byte_tables.restype = ctypes.c_int
    dll.cim_byte_tables.argtypes = [ctypes.POINTER(Params), ctypes.c_int, ctypes.c_void_p]
    dll.cim_shift_tables.restype = ctypes.c_int
    dll.cim_shift_tables.argtypes = [ctypes.POINTER(Params), ctypes.c_int, ctypes.c_void_p]
    dll.cim_uniforms.restype = None
    dll.cim_uniforms.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int64, ctypes.c_void_p]
    return dll


def covers(c: CimConfig, group_rows: int, tables: Tables, keep: int = 0) -> bool:
    """Whether the kernel computes this configuration with ``keep`` rows of K (else the numba kernels do)."""
    return ((keep + 1) * 64 * c.input_bits < 2**31 and tables.fp.dtype == np.float32 and c.input_bits <= 8
            and group_rows <= MAX_ROWS
            and len(c.cycles) <= MAX_CYCLES and c.votes == 1 and c.nonlinear_sigma_pct == 0
            and (tables.nslots == 0 or tables.table) and int(tables.kinds.max(initial=0)) <= 2)


def row_lists(w: Tensor, c: CimConfig, group_rows: int, groups: int, keep: int,
              scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(lists, offsets): for (g, n, i), the global rows k < keep of group g whose weight bit i in column n is 1.

    List q = (g * N + n) * W + i is lists[offsets[q]:offsets[q + 1]], ascending, each entry ``k * scale``
    (the kernel takes byte offsets), padded with ``keep * scale`` (the zero row) to a multiple of 16 entries.
    Built by the C library in two passes over the weights (numpy's boolean planes took seconds per network).
    """
    lib = library()
    assert lib is not None
    n = w.shape[-1]
    wk = np.ascontiguousarray((w[:keep].to(torch.int64) & (2**c.weight_bits - 1)).numpy().astype(np.uint16))
    offsets = np.empty(groups * n * c.weight_bits + 1, np.int64)
    args = (wk.ctypes.data, keep, n, c.weight_bits, group_rows, groups, scale, offsets.ctypes.data)
    lib.cim_row_lists(*args, None)
    lists = np.empty(int(offsets[-1]), np.int32)
    if lib.cim_row_lists(*args, lists.ctypes.data) != 0:
        raise MemoryError("cim_matmul: the bit-sliced kernel could not allocate its row lists")
    return lists, offsets


def _pool(threads: int) -> ThreadPoolExecutor:
    """Worker threads for the kernel's blocks (ctypes releases the GIL during a call); one pool per process,
    since a forked child inherits the parent's pool object but none of its threads."""
    return _process_pool(threads, os.getpid())


@cache
def _process_pool(threads: int, pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="cim-bitsliced")


def _codes_u8(x: Tensor, c: CimConfig) -> Tensor:
    """(M, K) integer codes -> contiguous uint8 two's-complement low bits, converted a chunk of rows at a time."""
    if x.dtype == torch.uint8 and not c.signed_inputs:
        return x.contiguous()
    m, k = x.shape
    out = torch.empty(m, k, dtype=torch.uint8)
    rows = max(1, CONVERT_BYTES // max(1, 4 * k))
    for s in range(0, m, rows):
        xc = x[s : s + rows]
        check_integral(xc)
        if c.signed_inputs or not xc.is_floating_point():
            xc = xc.to(torch.int32) & (2**c.input_bits - 1)
        out[s : s + rows] = xc
    return out


def _ptr(a: np.ndarray, t):  # type: ignore[no-untyped-def]
    return a.ctypes.data_as(t)


class ByteNoise(NamedTuple):
    """The byte-stage noise of one call: its tables (cycle j at ``tables[j]``) and which noisy cycles use them."""

    tables: np.ndarray
    bm: int  # most middle thresholds of a count among the count-table cycles
    bpath: int  # bit j: cycle j has count tables (cim_byte_tables)
    upath: int  # bit j: cycle j has shift tables (cim_shift_tables)


def byte_tables(lib: ctypes.CDLL, params: Params, c: CimConfig, tables: Tables) -> ByteNoise:
    """The byte-stage noise tables of every noisy single-bit cycle: shift tables where the code is the count plus a
    function of the uniform (levels = full scale), else count tables where a count has at most BYTE_THRESHOLDS
    middle thresholds; none without VBMI, for wide sums, above 8 weight bits, or with the stage switched off
    (``CIM_DSE_BYTE_NOISE=0``).
    The cycles without tables take the quantile sampler."""
    nc = len(c.cycles)
    out = np.zeros((nc, 1 + BYTE_THRESHOLDS, 256), np.uint8)
    noisy = (tables.kinds == 2).any(axis=1)
    if (not noisy.any() or params.wide or c.weight_bits > 8 or os.environ.get(BYTE_ENV, "1") == "0"
            or not lib.cim_byte_noise()):  # (the kernel sums the byte-stage codes of 8 weight bits in int16)
        return ByteNoise(out, 0, 0, 0)
    most, bpath, upath, done = 0, 0, 0, {}
    for j in range(nc):
        if not noisy[j] or c.cycles[j].width != 1:
            continue
        key = float(tables.ratio[j])
        if key in done:  # the same thresholds as an earlier cycle
            out[j] = out[done[key]]
            bpath |= ((bpath >> done[key]) & 1) << j
            upath |= ((upath >> done[key]) & 1) << j
            continue
        done[key] = j
        if lib.cim_shift_tables(ctypes.byref(params), j, out[j].ctypes.data) == 0:
            upath |= 1 << j
        elif (m := lib.cim_byte_tables(ctypes.byref(params), j, out[j].ctypes.data)) >= 0:
            most, bpath = max(most, m), bpath | 1 << j
    return ByteNoise(out, most, bpath, upath)


def byte_noise_for(c: CimConfig) -> tuple[ByteNoise, Tables]:
    """The byte-stage tables the kernel would use for ``c`` (narrow sums), with the epilogue tables they came from
    (tests and benchmarks read them; :func:`simulate` builds them from its own Params)."""
    from dse.accuracy.core_fused import Tables

    lib = library()
    assert lib is not None
    tables = Tables(c, torch.float32, "table")
    params = Params(wide=0, ratio=_ptr(tables.ratio, _P_F64), fx=_ptr(tables.fx, _P_F64), levels=tables.levels)
    return byte_tables(lib, params, c, tables), tables


def simulate(x: Tensor | ConvRows, w: Tensor, c: CimConfig, group_rows: int, groups: int, keep: int,
             tables: Tables, key: np.uint64) -> Tensor:
    """(Bt, M, K) @ (Bt, K, N) through the macro with the bit-sliced kernel; float32 (Bt, M, N). ConvRows rows are
    gathered by the kernel from the image, batch element b from conv group b's channels."""
    lib = library()
    assert lib is not None
    seg = x.byte_segments(keep) if isinstance(x, ConvRows) else None
    if seg is not None and len(seg) == 0:  # no column kept: the (zero) operand itself
        x, seg = x.materialize(), None
    bt, m, _ = x.shape
    n = w.shape[-1]
    cyc = np.ascontiguousarray(np.array([(cy.shift, cy.width) for cy in c.cycles], np.int64))
    kinds = np.ascontiguousarray(tables.kinds.astype(np.int8))
    arrays = [cyc, kinds, tables.wts, tables.scale, tables.den, tables.lev, tables.fp, tables.ratio, tables.fx,
              tables.coef]
    assert all(a.flags.c_contiguous for a in arrays)  # the kernel reads them through bare pointers
    threads = max(1, torch.get_num_threads())
    pool = _pool(threads)
    out = torch.empty(bt, m, n)
    blocks = math.ceil(m / LANES)
    step = math.ceil(blocks / threads)
    pending: deque = deque()  # (jobs, what they read): batch elements in flight, at most 2 per thread

    def finish(entry: tuple) -> None:
        if any(j.result() != 0 for j in entry[0]):
            raise MemoryError("cim_matmul: the bit-sliced kernel could not allocate its scratch")

    row_scale = lib.cim_row_scale()  # the planes' byte offset per row
    shared = bt > 1 and w.stride(0) == 0  # one weight matrix for every batch element: one set of lists
    lists = offsets = None
    bn = None
    try:
        for b in range(bt):
            if lists is None or not shared:
                lists, offsets = row_lists(w[b], c, group_rows, groups, keep, row_scale)  # planes' bytes
            params = Params(keep, 0, n, c.weight_bits, c.input_bits, groups, len(c.cycles), int(group_rows > 255),
                            _ptr(lists, ctypes.POINTER(ctypes.c_int32)), _ptr(offsets, _P_I64), _ptr(cyc, _P_I64),
                            _ptr(kinds, ctypes.POINTER(ctypes.c_int8)), _ptr(tables.wts, _P_F32),
                            _ptr(tables.scale, _P_F32), _ptr(tables.den, _P_F32), _ptr(tables.lev, _P_F64),
                            _ptr(tables.fp, _P_F32), _ptr(tables.ratio, _P_F64), _ptr(tables.fx, _P_F64),
                            _ptr(tables.coef, _P_F32), tables.rows, tables.levels, int(key))
            if bn is None:
                bn = byte_tables(lib, params, c, tables)
            params.btab, params.bm = _ptr(bn.tables, ctypes.POINTER(ctypes.c_uint8)), bn.bm
            params.bpath, params.upath = bn.bpath, bn.upath
            if seg is None:
                xb = _codes_u8(x[b, :, :keep], c)
                params.ldx, xptr = xb.stride(0), xb.data_ptr()
            else:  # (int8 images: the same bytes, two's complement)
                xb = x.image
                params.nseg, params.seg = len(seg), _ptr(seg, _P_I64)
                params.ow, params.rpi, params.ldy, params.ldw, params.ldi = x.row_strides()
                xptr = xb.data_ptr() + b * x.channels
            jobs = [pool.submit(lib.cim_bitsliced, xptr, m, lo, min(blocks, lo + step), b << 32,
                                ctypes.byref(params), out[b].data_ptr(), n)
                    for lo in range(0, blocks, step)]
            pending.append((jobs, (params, lists, offsets, xb, bn)))
            while len(pending) > 2 * threads:
                finish(pending.popleft())
        while pending:
            finish(pending.popleft())
    finally:
        for jobs, _ in pending:  # an error: let the kernels still running finish before their inputs go
            for j in jobs:
                j.exception()
    return out


def quantiles(u: np.ndarray) -> np.ndarray:
    """The kernel's quantiles of uint32 uniforms (tests: the same bits as the numba kernels')."""
    from dse.accuracy.core_fused import quantile_table

    lib = library()
    assert lib is not None
    padded = np.zeros((u.size + 15) // 16 * 16, np.uint32)
    padded[: u.size] = u
    out = np.empty(padded.size, np.float32)
    coef = quantile_table()
    lib.cim_quantiles(padded.ctypes.data, padded.size, coef.ctypes.data, out.ctypes.data)
    return out[: u.size]


def uniforms(key: int, stream: int, count: int) -> np.ndarray:
    """``count`` uniforms of one block's generator (tests)."""
    lib = library()
    assert lib is not None
    out = np.empty((count + 15) // 16 * 16, np.uint32)
    lib.cim_uniforms(key, stream, out.size, out.ctypes.data)
    return out[:count]
