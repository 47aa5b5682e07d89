"""Speed of the bit-wise CiM accuracy simulator on one convolution layer (issue 5).

Layer: batch 64, 64 -> 64 channels, 32x32, 3x3, padding 1, W8A8 unsigned inputs, rows 255, so
K = 576 splits into row groups of 255, 255 and 66. Cases: ADC 8 and ADC 6 bits, each without
noise and with 1 % of full scale noise. Rows of the table:

- plain: ``F.conv2d`` in fp32 on the integer codes (the layer without any CiM effect);
- loop: the anchor simulator's structure, written here as the baseline: one matmul per
  (row group, input bit, weight bit) on the unfolded 0/1 planes, each followed by the ADC
  (normalise, noise, clamp, round, rescale) and a shift-add;
- ours: the zero-padded channels-last uint8 codes as :class:`dse.accuracy.conv_rows.ConvRows` (the unfold
  described, K in the (ky, kx, channel) order of the loop's columns) + :func:`dse.accuracy.core.cim_matmul`: the
  bit-sliced kernel gathers each block's rows from the image itself, the other paths unfold first. Once per
  epilogue path (``CIM_DSE_KERNEL``): ``torch`` (whole-tensor passes after one batched GEMM),
  ``popcount`` (numba: AND + popcount of packed bit planes fused with the ADC epilogue),
  ``gemm`` (numba: the torch bit-plane GEMM, then the fused epilogue) and, where it builds,
  ``bitsliced`` (C with AVX-512 or AVX2: carry-save counting across 512 rows, vector epilogue; the
  default there). The fused paths draw noisy codes by table sampling (``CIM_DSE_NOISE=table``,
  the default); in the noisy cases the numba paths are timed again with Box-Muller normals
  (``CIM_DSE_NOISE=normal``), and ``normal / table`` is the ratio of the two times (popcount, gemm).

Times are medians of several rounds; in each round every path and sampler of ours runs once, then the loop
(in the first ``--loop-repeats`` rounds), so load changes on the shared machine hit them alike, and ``loop /
best`` is the median over the rounds of the loop's time over the fastest table-noise path's time in the same
round (a paired ratio: the run-to-run drift of this shared VM cancels). ``os.getloadavg()`` is printed with
each case. ``max |ours - loop|`` (noise-free cases) shows that they
compute the same thing; the three paths of ours are asserted equal bit for bit without noise.
The numba kernels are compiled (or loaded from numba's cache) before timing.

    .venv/bin/python benchmarks/sim_speed.py [--batch 64] [--repeats 3] [--loop-repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from dse.accuracy import core_bitsliced, core_fused
from dse.accuracy.conv_rows import ConvRows
from dse.accuracy.core import CimConfig, cim_matmul

ROWS = 255
PATHS = ("torch", "popcount", "gemm")
NOISE_PATHS = ("popcount", "gemm")  # timed with both noise samplers in the noisy cases
BITS = 8


def unfold_cl(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B*H*W, 9*C) rows of 3x3 patches (padding 1), K ordered (ky, kx, C)."""
    xp = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).contiguous()
    b, hp, wp, c = xp.shape
    s = xp.stride()
    patches = xp.as_strided((b, hp - 2, wp - 2, 3, 3, c), (s[0], s[1], s[2], s[1], s[2], s[3]))
    return patches.reshape(b * (hp - 2) * (wp - 2), 9 * c)


def weight_matrix(w: Tensor) -> Tensor:
    """(Cout, C, 3, 3) -> (9*C, Cout) in the (ky, kx, C) order of :func:`unfold_cl`."""
    return w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).contiguous()


def per_cycle_loop(cols: Tensor, wm: Tensor, config: CimConfig, generator: torch.Generator) -> Tensor:
    """The baseline: a Python loop over row groups x input bits x weight bits, one matmul each."""
    m, k = cols.shape
    levels = 2**config.adc_bits - 1
    rows = config.rows
    sigma = config.noise_sigma_pct / 100.0
    xi = cols.to(torch.int32)
    wt = wm.to(torch.int32) & (2**config.weight_bits - 1)
    out = torch.zeros(m, wm.shape[1])
    for start in range(0, k, rows):
        xg, wg = xi[:, start : start + rows], wt[start : start + rows]
        for j in range(config.input_bits):
            a = ((xg >> j) & 1).float()
            for i in range(config.weight_bits):
                b = ((wg >> i) & 1).float()
                v = (a @ b) / rows
                if sigma > 0:
                    v = (v + sigma * torch.randn(v.shape, generator=generator)).clamp_(0.0, 1.0)
                p = torch.round(v * levels) * (rows / levels)
                sign = -1.0 if i == config.weight_bits - 1 else 1.0
                out += (sign * 2.0 ** (i + j)) * p
    return out


def timed(fn: Callable[[], Tensor], repeats: int, warm_up: bool = True) -> tuple[float, Tensor]:
    """Median wall time of ``repeats`` calls (after one warm-up call) and the last result."""
    result = fn() if warm_up else None
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


@contextlib.contextmanager
def environment(kernel: str, sampler: str) -> Iterator[None]:
    """CIM_DSE_KERNEL and CIM_DSE_NOISE set for the block."""
    saved = {k: os.environ.get(k) for k in (core_fused.ENV, core_fused.NOISE_ENV)}
    os.environ[core_fused.ENV], os.environ[core_fused.NOISE_ENV] = kernel, sampler
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def conv_rows(x: Tensor) -> ConvRows:
    """The rows of :func:`unfold_cl`, described: padding 1, channels last, K ordered (ky, kx, C)."""
    return ConvRows.channels_last(F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).contiguous(), (3, 3))


def ours_fn(x8: Tensor, wm: Tensor, config: CimConfig, batch: int, kernel: str, sampler: str) -> Callable[[], Tensor]:
    """The layer through cim_matmul on one epilogue path and noise sampler (a fresh generator, seed 1, per call)."""

    def ours() -> Tensor:
        with environment(kernel, sampler):
            y = cim_matmul(conv_rows(x8), wm, config, generator=torch.Generator().manual_seed(1))
        return y.reshape(batch, 32, 32, 64).permute(0, 3, 1, 2)

    return ours


def timed_interleaved(fns: dict, rounds: dict, warm_up: tuple = ()) -> tuple[dict, dict]:
    """Wall times of each function ``fns[k]`` in the first ``rounds[k]`` of rounds that call the functions once
    each in turn (after one untimed call of those in ``warm_up``), so that the shared machine's load drifts over
    all of them alike; returns the lists of times and the last results."""
    results = {k: fns[k]() for k in warm_up}
    times: dict = {k: [] for k in fns}
    for r in range(max(rounds.values())):
        for k, fn in fns.items():
            if r < rounds[k]:
                t0 = time.perf_counter()
                results[k] = fn()
                times[k].append(time.perf_counter() - t0)
    return times, results


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of plain and ours (median)")
    ap.add_argument("--loop-repeats", type=int, default=3,
                    help="timed runs of the per-cycle loop, one in each of the first rounds of ours (median)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    x = torch.randint(0, 2**BITS, (args.batch, 64, 32, 32)).float()
    w = torch.randint(-(2 ** (BITS - 1) - 1), 2 ** (BITS - 1), (64, 64, 3, 3)).float()
    wm = weight_matrix(w)
    x8 = x.to(torch.uint8)
    cols = unfold_cl(x8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, AMX {torch.cpu._is_amx_tile_supported()}, "
          f"bit-sliced build {core_bitsliced.isa() if core_bitsliced.library() is not None else 'none'}")
    print(f"layer: x {tuple(x.shape)}, w {tuple(w.shape)}, M={cols.shape[0]}, K={cols.shape[1]}, N=64, "
          f"rows {ROWS} (groups {', '.join(str(min(ROWS, 576 - s)) for s in range(0, 576, ROWS))})")

    t_plain, ref = timed(lambda: F.conv2d(x, w, padding=1), args.repeats + 2)
    t_unfold, _ = timed(lambda: unfold_cl(x8), args.repeats + 2)
    t_funfold, _ = timed(lambda: F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 576), args.repeats)
    print(f"plain conv {t_plain:.3f} s; unfold (uint8, channels-last) {t_unfold:.3f} s; "
          f"F.unfold fp32 {t_funfold:.3f} s; load {load()}")

    fused = core_fused.kernels() is not None
    paths = PATHS if fused else PATHS[:1]
    if core_bitsliced.library() is not None:
        paths = (*paths, "bitsliced")
    normal_paths = NOISE_PATHS if fused else ()
    cases = [(8, 0.0), (8, 1.0), (6, 0.0), (6, 1.0)]
    lines = ["| case | plain conv (s) | per-cycle loop (s) | "
             + " | ".join([f"ours, {p} (s)" for p in paths] + [f"{p}, normal noise (s)" for p in normal_paths])
             + (" | normal / table" if normal_paths else "")
             + " | best / plain | loop / best | max abs(ours - loop) | load (1/5/15 min) |",
             "|---" * (7 + len(paths) + len(normal_paths) + bool(normal_paths)) + "|"]
    for adc, noise in cases:
        config = CimConfig(weight_bits=BITS, input_bits=BITS, rows=ROWS, adc_bits=adc, noise_sigma_pct=noise)
        runs = [(kernel, "table") for kernel in (paths[:1] if config.lossless else paths)]  # lossless: one GEMM
        if noise > 0:
            runs += [(kernel, "normal") for kernel in normal_paths]
        fns = {run: ours_fn(x8, wm, config, args.batch, *run) for run in runs}
        for run in runs:
            with environment(*run):
                cim_matmul(cols[:64], wm, config)  # numba: compile or load the cached kernels
        lg = torch.Generator().manual_seed(2)
        fns["loop"] = lambda config=config, lg=lg: per_cycle_loop(cols, wm, config, lg)
        all_times, results = timed_interleaved(fns, {**{run: args.repeats for run in runs}, "loop": args.loop_repeats},
                                               warm_up=tuple(runs))
        medians = {k: statistics.median(v) for k, v in all_times.items()}
        times = {kernel: medians[kernel, s] for kernel, s in runs if s == "table"}
        outs = {kernel: results[kernel, s] for kernel, s in runs if s == "table"}
        normal_times = {kernel: medians[kernel, s] for kernel, s in runs if s == "normal"}
        y = outs["torch"]
        if adc == 8 and noise == 0:
            assert torch.equal(y, ref), "lossless case must equal the plain conv"
        if noise == 0:
            assert all(torch.equal(o, y) for o in outs.values()), "the epilogue paths must agree bit for bit"
        t_loop, y_loop = medians["loop"], results["loop"].reshape(args.batch, 32, 32, 64).permute(0, 3, 1, 2)
        diff = f"{(y - y_loop).abs().max().item():.3g}" if noise == 0 else "(noisy)"
        best = min(times.values())
        best_times = all_times[min(times, key=times.get), "table"]
        paired = min(len(all_times["loop"]), len(best_times))  # the rounds that timed both
        speedup = statistics.median(a / b for a, b in zip(all_times["loop"][:paired], best_times[:paired], strict=True))
        name = f"ADC {adc}, noise {noise:g} %" + (" (lossless)" if config.lossless else "")
        cells = [f"{times[p]:.3f}" if p in times else "(same)" for p in paths]
        cells += [f"{normal_times[p]:.3f}" if p in normal_times else "-" for p in normal_paths]
        if normal_paths:
            cells.append(", ".join(f"{normal_times[p] / times[p]:.2f}x" for p in normal_paths)
                         if normal_times else "-")
        lines.append(f"| {name} | {t_plain:.3f} | {t_loop:.2f} | {' | '.join(cells)} | {best / t_plain:.1f}x "
                     f"| {speedup:.1f}x | {diff} | {load()} |")
        print(lines[-1], flush=True)
    print()
    print("\n".join(lines))

if __name__ == "__main__":
    main()
