"""The bit-sliced kernel's byte-stage noise (AVX-512 VBMI): noisy codes decided from the top byte(s) of the
uniform by tables, the undecided few sent to the quantile sampler with their top bits kept. Tested here: the
tables decide exactly the codes of the exact thresholds (both kinds, every count, random and edge uniforms),
which cycles get which tables, and that the layer's noise keeps its distribution against the quantile sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dse.accuracy import core_bitsliced, core_fused
from dse.accuracy.core import CimConfig, cim_matmul
from dse.accuracy.core_bitsliced import byte_noise_for

LIB = core_bitsliced.library()
pytestmark = pytest.mark.skipif(LIB is None or not LIB.cim_byte_noise(),
                                reason="needs the AVX-512 build on a CPU with VBMI")


def exact_codes(u32: np.ndarray, s: np.ndarray, tables: core_fused.Tables, j: int) -> np.ndarray:
    """#{c in 1 .. L : (U + 1/2) / 2^32 >= Phi((c - 1/2 - u) / std)}, u = s * ratio (core_kernels.exact_code)."""
    sigma, s_nl, mpl = tables.fx
    levels = int(tables.levels)
    p = (u32.astype(np.float64) + 0.5) * 2.0**-32
    out = np.empty(u32.size, np.int64)
    for sv in np.unique(s):
        u = float(np.float32(sv)) * tables.ratio[j]
        std = math.sqrt(sigma * sigma + s_nl * s_nl / max(u * mpl + 1.0, 1.0))
        t = np.array([0.5 * math.erfc(-((c - 0.5 - u) / std) * 0.7071067811865476) for c in range(1, levels + 1)])
        at = s == sv
        out[at] = np.searchsorted(t, p[at], side="right")  # thresholds <= p
    return out


def uniforms(n: int, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    edges = np.array([(r << 24) + e for r in range(256) for e in (0, 1, 2**24 - 1)], np.uint32)  # byte ends
    return np.concatenate([u, edges])


@pytest.mark.parametrize("config,path", [
    (CimConfig(rows=255, adc_bits=8, noise_sigma_pct=1.0), "upath"),  # levels = full scale: shift tables
    (CimConfig(rows=127, adc_bits=7, noise_sigma_lsb=0.3), "upath"),  # L = 127, narrow
    (CimConfig(rows=255, adc_bits=8, noise_sigma_lsb=6.0), "upath"),  # wide noise
    (CimConfig(rows=255, adc_bits=6, noise_sigma_pct=1.0), "bpath"),  # u = s 63 / 255: count tables
    (CimConfig(rows=200, adc_bits=5, noise_sigma_lsb=0.9), "bpath"),
])
def test_the_tables_decide_the_exact_thresholds_codes(config, path):
    bn, tables = byte_noise_for(config)
    cycles = [j for j in range(len(config.cycles)) if (getattr(bn, path) >> j) & 1]
    assert cycles == list(range(len(config.cycles)))  # every (single-bit) cycle
    assert ((bn.bpath if path == "upath" else bn.upath) & ((1 << len(config.cycles)) - 1)) == 0
    levels = int(tables.levels)
    for j in cycles[:2]:
        u32 = uniforms(200_000, seed=j)
        s = np.random.default_rng(10 + j).integers(0, config.rows + 1, u32.size)
        exact = exact_codes(u32, s, tables, j)
        r1 = (u32 >> 24).astype(np.int64)
        tab = bn.tables[j].astype(np.int64)
        if path == "upath":
            base, a2 = bn.tables[j, 0].view(np.int8).astype(np.int64), tab[1]
            r2 = ((u32 >> 16) & 255).astype(np.int64)
            code = np.clip(s + base[r1] + (r2 > a2[r1]), 0, levels)
            decided = (r1 != 0) & (r1 != 255) & (r2 != a2[r1])
        else:
            mids = tab[1 : 1 + bn.bm][:, s]  # (bm, n)
            code = tab[0][s] + (mids < r1).sum(axis=0)
            decided = (r1 != 0) & (r1 != 255) & ~(mids == r1).any(axis=0)
        assert np.array_equal(code[decided], exact[decided])
        assert decided.mean() > 0.95  # the tables decide nearly all conversions
        assert len(np.unique(exact[decided])) > 3


def test_cycles_the_tables_do_not_cover_take_the_quantile_sampler(monkeypatch):
    bn, _ = byte_noise_for(CimConfig(rows=255, adc_bits=8, noise_sigma_pct=1.0, input_bits_per_cycle=2))
    assert bn.bpath == bn.upath == 0  # bit-parallel cycles (width 2)
    bn, _ = byte_noise_for(CimConfig(rows=255, adc_bits=6, noise_sigma_pct=8.0))
    assert bn.bpath == 0  # too many middle thresholds per count
    bn, _ = byte_noise_for(CimConfig(rows=255, adc_bits=8, noise_sigma_lsb=12.0))
    assert bn.bpath == bn.upath == 0  # two thresholds share a top byte in the tails
    bn, _ = byte_noise_for(CimConfig(rows=255, adc_bits=10, noise_sigma_pct=1.0))
    assert bn.bpath == bn.upath == 0  # codes above a byte
    bn, _ = byte_noise_for(CimConfig(rows=255, adc_bits=8, weight_bits=9, noise_sigma_pct=1.0))
    assert bn.bpath == bn.upath == 0  # the kernel's int16 sums hold 8 weight bits
    monkeypatch.setenv(core_bitsliced.BYTE_ENV, "0")
    bn, _ = byte_noise_for(CimConfig(rows=255, adc_bits=8, noise_sigma_pct=1.0))
    assert bn.bpath == bn.upath == 0


@pytest.mark.parametrize("config", [
    CimConfig(rows=255, adc_bits=8, noise_sigma_pct=1.0),
    CimConfig(rows=255, adc_bits=6, noise_sigma_pct=1.0),
])
def test_the_noise_of_a_layer_has_the_quantile_samplers_distribution(config, monkeypatch):
    """Noise (noisy minus noise-free output) of a layer with every kind of count: the byte stage and the quantile
    sampler give the same spread and mean, and their outputs differ (other bits)."""
    monkeypatch.setenv(core_fused.ENV, "bitsliced")
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (2048, 600), generator=gen)
    w = torch.randint(-127, 128, (600, 24), generator=gen)
    clean = cim_matmul(x, w, CimConfig.from_dict({**config.to_dict(), "noise_sigma_pct": 0.0}))
    byte = cim_matmul(x, w, config, torch.Generator().manual_seed(1)) - clean
    monkeypatch.setenv(core_bitsliced.BYTE_ENV, "0")
    quantile = cim_matmul(x, w, config, torch.Generator().manual_seed(1)) - clean
    assert not torch.equal(byte, quantile)
    n = byte.numel()
    assert abs(byte.std() / quantile.std() - 1) < 4 * math.sqrt(2 / n) + 0.01
    assert abs(byte.mean() - quantile.mean()) < 4 * quantile.std() * math.sqrt(2 / n)
