"""The bit-sliced kernel alone on sim_speed.py's layer, with its byte-stage noise on and off (issue 5).

The layer's uint8 codes are unfolded once (sim_speed.py times the unfold in every call), so the rows show the
kernel: ns per conversion per thread for ADC 8 and ADC 6, without and with 1 % noise (ADC 8 without noise is
lossless: one GEMM, not the kernel), once with the byte stage
(``CIM_DSE_BYTE_NOISE=1``, where the CPU has AVX-512 VBMI) and once without (the quantile sampler only), the two
taking turns in every round (medians). ``off / on`` is the byte stage's speed-up; the load is
``os.getloadavg()``. For the noisy cases it also prints the share of conversions the tables leave to the quantile
sampler (the count tables' share weighs each count by the layer's Binomial(255, 1/4) column sums).

``--profile-build`` compiles the kernel with ``-DPROFILE -g`` (its stages as separate functions), so that
``perf record .venv/bin/python benchmarks/sim_kernel.py --profile-build --cases 8:1`` and ``perf report`` show
where one case's time goes (the byte stage on only).

    .venv/bin/python benchmarks/sim_kernel.py [--batch 16] [--repeats 7] [--threads 1] [--cases 8:1,6:1]
        [--profile-build]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from unittest import mock

import numpy as np
import torch
from sim_speed import BITS, ROWS, unfold_cl, weight_matrix

from dse.accuracy import core_bitsliced, core_fused
from dse.accuracy.core import CimConfig, cim_matmul


def undecided_share(c: CimConfig) -> float | None:
    """Share of the layer's noisy conversions the byte tables leave undecided (None: no tables)."""
    bn, _ = core_bitsliced.byte_noise_for(c)
    tab = bn.tables[0].astype(np.int64)
    if bn.upath & 1:  # top byte 0 or 255, or the second byte equal to a2 (1/256 of the rest)
        return 2 / 256 + 254 / 256 / 256
    if bn.bpath & 1:  # top byte 0, 255, or one of the count's middle thresholds
        s = np.arange(256)
        weights = np.array([math.comb(255, k) * 0.25**k * 0.75 ** (255 - k) for k in s])
        middle = (tab[1 : 1 + bn.bm] != 255).sum(axis=0)
        return float(((middle + 2) / 256 * weights).sum())
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile-build", action="store_true", help="build with -DPROFILE -g (for perf)")
    ap.add_argument("--cases", default="8:0,8:1,6:0,6:1", help="ADC bits:noise %% pairs, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile_build:
        core_bitsliced.FLAGS = (*core_bitsliced.FLAGS, "-DPROFILE", "-g")
    lib = core_bitsliced.library()
    if lib is None:
        raise SystemExit("sim_kernel.py: the bit-sliced kernel does not build here (needs x86-64 with AVX2 and cc)")
    torch.manual_seed(0)
    x8 = torch.randint(0, 2**BITS, (args.batch, 64, 32, 32)).to(torch.uint8)
    w = torch.randint(-(2 ** (BITS - 1) - 1), 2 ** (BITS - 1), (64, 64, 3, 3)).float()
    wm = weight_matrix(w)
    cols = unfold_cl(x8)
    conversions = cols.shape[0] * 64 * 192
    print(f"bit-sliced build {core_bitsliced.isa()}, byte stage available: {bool(lib.cim_byte_noise())}, "
          f"{args.threads} threads, batch {args.batch} ({conversions / 1e6:.0f} M conversions)")
    print("| case | byte stage on (ns/conv/thread) | off (ns/conv/thread) | off / on | undecided | load |")
    print("|---|---|---|---|---|---|")
    with mock.patch.dict(os.environ, {core_fused.ENV: "bitsliced"}):  # restored after
        for adc, noise in [(int(a), float(v)) for a, v in (case.split(":") for case in args.cases.split(","))]:
            c = CimConfig(weight_bits=BITS, input_bits=BITS, rows=ROWS, adc_bits=adc, noise_sigma_pct=noise)
            times: dict[str, list[float]] = {"1": []} if args.profile_build else {"1": [], "0": []}
            for r in range(args.repeats + 1):  # the first round warms up
                for flag, ts in times.items():
                    os.environ[core_bitsliced.BYTE_ENV] = flag
                    t0 = time.perf_counter()
                    cim_matmul(cols, wm, c, torch.Generator().manual_seed(1))
                    if r:
                        ts.append(time.perf_counter() - t0)
            on, off = (statistics.median(times.get(f, [math.nan])) / conversions * 1e9 * args.threads
                       for f in ("1", "0"))
            os.environ[core_bitsliced.BYTE_ENV] = "1"
            share = undecided_share(c) if noise > 0 else None
            print(f"| ADC {adc}, noise {noise:g} % | {on:.3f} | {off:.3f} | {off / on:.2f}x | "
                  f"{'-' if share is None else f'{100 * share:.1f} %'} | "
                  f"{'/'.join(f'{v:.1f}' for v in os.getloadavg())} |")


if __name__ == "__main__":
    main()
