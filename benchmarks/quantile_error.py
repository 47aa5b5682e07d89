"""Largest error of the kernels' fast normal quantile over every 32-bit uniform (the QUANTILE_ERROR bound).

The table sampler (``dse.accuracy.core_fused``) computes z = Phi^-1((U + 1/2) / 2^32) with a per-octave polynomial
and checks every code within a margin of a boundary against the exact thresholds; the margin grows with
``QUANTILE_ERROR``, which must bound the polynomial's error. This script evaluates the quantile of every U below
2^31 (the other half is the exact negation, tested) with the bit-sliced kernel (the same bits as numba's, tested)
or, without it, numba's, and compares with float64 ``torch.special.ndtri``. About a minute on two cores.

    .venv/bin/python benchmarks/quantile_error.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from dse.accuracy import core_bitsliced, core_fused

STEP = 1 << 25


def quantiles(u: np.ndarray) -> np.ndarray:
    """The kernels' quantiles of uint32 uniforms."""
    if core_bitsliced.library() is not None:
        return core_bitsliced.quantiles(u)
    kernels = core_fused.kernels()
    if kernels is None:
        raise SystemExit("quantile_error: needs the bit-sliced kernel (x86-64 with a C compiler) or numba")
    return kernels.quantile_values(u, core_fused.quantile_table(), False)


def main() -> None:
    t0 = time.perf_counter()
    worst, worst_u, zmax = 0.0, 0, 0.0
    for lo in range(0, 1 << 31, STEP):
        u = np.arange(lo, lo + STEP, dtype=np.uint32)
        z = quantiles(u).astype(np.float64)
        exact = torch.special.ndtri(torch.from_numpy((u.astype(np.float64) + 0.5) * 2.0**-32)).numpy()
        err = np.abs(z - exact)
        at = int(err.argmax())
        if err[at] > worst:
            worst, worst_u = float(err[at]), lo + at
        zmax = max(zmax, float(np.abs(z).max()))
    print(f"degree {core_fused.QUANTILE_DEGREE}: max |z - Phi^-1((U + 1/2) / 2^32)| = {worst:.3e} at U = {worst_u} "
          f"(bound QUANTILE_ERROR = {core_fused.QUANTILE_ERROR:g}); max |z| = {zmax:.4f} (bound Z_MAX = "
          f"{core_fused.Z_MAX}); {time.perf_counter() - t0:.0f} s")
    if worst >= core_fused.QUANTILE_ERROR or zmax >= core_fused.Z_MAX:
        raise SystemExit("quantile_error: a bound does not hold")


if __name__ == "__main__":
    main()
