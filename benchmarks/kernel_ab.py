"""Two versions of the bit-sliced kernel's C source timed against each other in one process (issue 5).

Each source is compiled like ``core_bitsliced.build`` (the same flags, the AVX-512 build) into a temporary folder
and loaded; the rounds then call ``cim_matmul`` on sim_speed.py's layer (its uint8 codes unfolded once, so the
rows time the kernel) with each build in turn, so that the shared machine's drift hits both alike. Printed per
case: the median ns per conversion per thread of each build, the median of the per-round ratios A / B (above 1:
B is faster), and whether the two builds gave the same bits (they must where a change keeps the noise streams).
An earlier version comes from git, e.g.

    git show d33f8ad~1:dse/accuracy/core_bitsliced.c > /tmp/before.c
    .venv/bin/python benchmarks/kernel_ab.py /tmp/before.c dse/accuracy/core_bitsliced.c [--cases 6:1,8:1]
        [--batch 16] [--rounds 9] [--threads 1]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from sim_speed import BITS, ROWS, unfold_cl, weight_matrix

from dse.accuracy import core_bitsliced, core_fused
from dse.accuracy.core import CimConfig, cim_matmul


def load(source: Path, folder: Path) -> ctypes.CDLL:
    """The AVX-512 build of ``source``, through core_bitsliced's own build and loader."""
    with (mock.patch.object(core_bitsliced, "SOURCE", source),
          mock.patch.dict(os.environ, {"CIM_DSE_CACHE": str(folder)})):
        dll = core_bitsliced._library.__wrapped__("avx512")
    if dll is None:
        raise SystemExit(f"kernel_ab.py: {source} does not build here (needs cc and an AVX-512 CPU)")
    if not hasattr(dll, "cim_row_scale"):  # a source before afcea77: planes bit-major, 64 bytes per (row, input bit)
        dll.cim_row_scale = lambda: 64 * BITS
    return dll


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path, help="C source A (e.g. the version before a change)")
    ap.add_argument("b", type=Path, help="C source B")
    ap.add_argument("--cases", default="6:1,8:1", help="ADC bits:noise %% pairs, comma-separated")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if core_bitsliced.isa() != "avx512":
        raise SystemExit("kernel_ab.py: needs a CPU with AVX-512")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        dlls = [load(src.resolve(), Path(tmp) / name) for name, src in (("a", args.a), ("b", args.b))]
        torch.manual_seed(0)
        x8 = torch.randint(0, 2**BITS, (args.batch, 64, 32, 32)).to(torch.uint8)
        w = torch.randint(-(2 ** (BITS - 1) - 1), 2 ** (BITS - 1), (64, 64, 3, 3)).float()
        wm, cols = weight_matrix(w), unfold_cl(x8)
        conversions = cols.shape[0] * 64 * 192
        print(f"A {args.a}, B {args.b}; {args.threads} threads, batch {args.batch}, {args.rounds} rounds")
        print("| case | A (ns/conv/thread) | B (ns/conv/thread) | A / B (paired) | same bits | load |")
        print("|---|---|---|---|---|---|")
        with mock.patch.dict(os.environ, {core_fused.ENV: "bitsliced"}):
            for adc, noise in [(int(a), float(v)) for a, v in (case.split(":") for case in args.cases.split(","))]:
                c = CimConfig(weight_bits=BITS, input_bits=BITS, rows=ROWS, adc_bits=adc, noise_sigma_pct=noise)
                times: list[list[float]] = [[], []]
                outs = []
                for r in range(args.rounds + 1):  # the first round warms up and keeps the results
                    for k, dll in enumerate(dlls):
                        with mock.patch.object(core_bitsliced, "_library", lambda target, dll=dll: dll):
                            t0 = time.perf_counter()
                            y = cim_matmul(cols, wm, c, torch.Generator().manual_seed(1))
                            dt = time.perf_counter() - t0
                        if r:
                            times[k].append(dt)
                        else:
                            outs.append(y)
                per = [statistics.median(t) / conversions * 1e9 * args.threads for t in times]
                ratio = statistics.median(a / b for a, b in zip(*times, strict=True))
                print(f"| ADC {adc}, noise {noise:g} % | {per[0]:.3f} | {per[1]:.3f} | {ratio:.3f} | "
                      f"{'yes' if torch.equal(*outs) else 'no'} | {'/'.join(f'{v:.1f}' for v in os.getloadavg())} |",
                      flush=True)


if __name__ == "__main__":
    main()
