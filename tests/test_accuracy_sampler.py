"""Table noise of the fused CPU kernels (``CIM_DSE_NOISE=table``): every noisy ADC code is drawn by
inverse-CDF sampling of one 32-bit uniform, so its distribution is the analytic one (clamped,
rounded Gaussian) to 2^-32. Tested here: the quantile polynomials and their error bound, the exact
thresholds, the code frequencies of the kernels against the analytic distribution (clamping at 0
and at L, non-integer levels, the nonlinear std, votes), that the exact and the fast way agree,
and reproducibility independent of threads, chunks and kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dse.accuracy import core_bitsliced, core_fused
from dse.accuracy.core import CimConfig, cim_matmul

K = core_fused.kernels()
pytestmark = pytest.mark.skipif(K is None, reason="numba not installed")
SAMPLERS = ["table", "normal"]
# the kernels that sample codes: numba's, and the bit-sliced native one where it builds (table noise only;
# configurations it does not cover run numba's)
KERNELS = ["popcount", *(["bitsliced"] if core_bitsliced.library() is not None else [])]


def phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def code_probs(u: float, std: float, levels: int) -> np.ndarray:
    """P(code = c), c = 0 .. L, of rint(clamp(u + std * n, 0, L)), n ~ N(0, 1)."""
    cdf = np.array([phi((c + 0.5 - u) / std) for c in range(levels)] + [1.0])  # P(code <= c)
    return np.diff(cdf, prepend=0.0)


def mode_of_3_probs(p: np.ndarray) -> np.ndarray:
    """P(mode = c) of three independent codes with probabilities p (no repeat: the smallest)."""
    above = np.cumsum(p[::-1])[::-1] - p  # P(code > c)
    above_sq = np.cumsum((p**2)[::-1])[::-1] - p**2
    return 3 * p**2 * (1 - p) + p**3 + 6 * p * (above**2 - above_sq) / 2


def chi2_ok(counts: np.ndarray, probs: np.ndarray, z: float = 4.0) -> tuple[float, float]:
    """(chi-square, its critical value at about z sigma), bins with an expected count below 5 merged."""
    n = counts.sum()
    order = np.argsort(probs)  # merge the least likely bins into one until it expects >= 5
    merged_c, merged_p, bins_c, bins_p = 0.0, 0.0, [], []
    for k in order:
        if merged_p * n < 5:
            merged_c, merged_p = merged_c + counts[k], merged_p + probs[k]
        else:
            bins_c.append(counts[k])
            bins_p.append(probs[k])
    bins_c.append(merged_c)
    bins_p.append(merged_p)
    c, p = np.array(bins_c), np.array(bins_p)
    stat = float(((c - n * p) ** 2 / (n * p)).sum())
    dof = len(c) - 1
    crit = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3  # Wilson-Hilferty
    return stat, crit


def one_conversion(adc_bits: int, mac: int, rows_m: int = 4000, seed: int = 9, **noise) -> np.ndarray:
    """Codes of many conversions with column sum ``mac`` (rows 255; 64 columns, each its own noise)."""
    config = CimConfig(weight_bits=2, input_bits=1, rows=255, adc_bits=adc_bits, hybrid_levels=1, **noise)
    x = torch.zeros(rows_m, 255)
    x[:, :mac] = 1
    w = torch.ones(255, 64)  # plane 0 all ones, sign plane (digital) all zeros
    y = cim_matmul(x, w, config, torch.Generator().manual_seed(seed)).flatten().double()
    levels = 2**adc_bits - 1
    codes = torch.round(y * levels / 255)
    assert torch.allclose(codes * 255 / levels, y, atol=1e-3)
    return codes.long().numpy()


# ----------------------------------------------------------------------------------------------
# the pieces


def test_quantiles_are_the_normal_quantile_within_their_bound():
    coef = core_fused.quantile_table()
    rng = np.random.default_rng(0)
    q = np.concatenate([np.arange(2**16), rng.integers(0, 2**31, 2**20), 2**31 - 1 - np.arange(2**12)])
    u = np.concatenate([q, 2**32 - 1 - q]).astype(np.uint32)  # both halves: U < 2^31 gives z < 0
    z = K.quantile_values(u, coef, False)
    exact = torch.special.ndtri(torch.from_numpy((u.astype(np.float64) + 0.5) * 2.0**-32)).numpy()
    assert np.abs(z - exact).max() < core_fused.QUANTILE_ERROR
    assert np.abs(z).max() < core_fused.Z_MAX
    assert np.array_equal(z[: q.size], -z[q.size :])
    assert np.array_equal(z, K.quantile_values(u, coef, True))  # scalar loads: the same bits


def test_noise_row_draws_the_quantiles_of_its_splitmix64_halves():
    coef = core_fused.quantile_table()
    key, c0 = np.uint64(0x0123456789ABCDEF), 1000
    uw, z = K.row_values(key, c0, coef, 45)
    assert np.array_equal(z, K.quantile_values(uw, coef, False))
    mask = 2**64 - 1
    for lane in range(45):  # SplitMix64's output function, written out
        x = (int(key) + (c0 + lane // 2) * int(K.GAMMA)) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        x ^= x >> 31
        assert uw[lane] == (x >> 32 if lane % 2 else x & 0xFFFFFFFF)


@pytest.mark.parametrize("u,std,levels", [(3.3, 1.7, 63), (0.2, 2.0, 15), (250.0, 4.0, 255), (7.5, 1e-3, 15)])
def test_exact_code_counts_the_thresholds_below_the_uniform(u, std, levels):
    uniforms = np.linspace(0, 2**32 - 1, 4001).astype(np.uint32)
    for uv in uniforms:
        p = (float(uv) + 0.5) * 2.0**-32
        expected = sum(p >= phi((c - 0.5 - u) / std) for c in range(1, levels + 1))
        for guess in (0.0, float(levels), float(expected)):
            assert K.exact_code(uv, u, std, guess, float(levels)) == expected
    # the code frequencies of an even grid of uniforms are the analytic probabilities
    grid = np.arange(0, 2**32, 2**20, dtype=np.uint64).astype(np.uint32)
    counts = np.bincount([int(K.exact_code(v, u, std, 0.0, float(levels))) for v in grid], minlength=levels + 1)
    assert np.abs(counts / grid.size - code_probs(u, std, levels)).max() <= 2 / grid.size


def test_noise_choice_and_margin(monkeypatch):
    monkeypatch.setenv(core_fused.NOISE_ENV, "pink")
    with pytest.raises(ValueError, match="CIM_DSE_NOISE='pink': must be one of table, normal"):
        core_fused.noise_for()
    monkeypatch.delenv(core_fused.NOISE_ENV)
    assert core_fused.noise_for() == "table"
    config = CimConfig(rows=255, adc_bits=8, noise_sigma_pct=1.0)
    tables = core_fused.Tables(config, torch.float32, "table")
    assert tables.table and 0 < tables.margin < 2e-4 and tables.fp[5] <= 0.5 - tables.margin
    assert not core_fused.Tables(config, torch.float32, "normal").table
    absurd = CimConfig(rows=255, adc_bits=8, noise_sigma_lsb=3e4)  # margin over 1/4 LSB: normals instead
    assert not core_fused.Tables(absurd, torch.float32, "table").table


# ----------------------------------------------------------------------------------------------
# the kernels' codes against the analytic distribution


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("adc_bits,mac,noise", [
    (8, 128, {"noise_sigma_lsb": 2.0}),  # u = 128
    (8, 1, {"noise_sigma_lsb": 2.0}),  # clamped at 0
    (8, 254, {"noise_sigma_lsb": 2.0}),  # clamped at L = 255
    (8, 0, {"noise_sigma_lsb": 0.4}),  # mostly code 0
    (6, 100, {"noise_sigma_pct": 1.0}),  # u = 100 * 63 / 255 = 24.705..., std 0.63
    (6, 135, {"noise_sigma_lsb": 0.25}),  # u = 33.35..., narrow
    (8, 10, {"nonlinear_sigma_pct": 4.0}),  # std from u: 4 % of L / sqrt(u + 1)
    (8, 3, {"noise_sigma_pct": 0.5, "nonlinear_sigma_pct": 4.0}),  # both terms, clamped at 0
    (8, 200, {"noise_sigma_lsb": 12.0}),  # wide, clamped at L
])
def test_code_frequencies_match_the_analytic_distribution(adc_bits, mac, noise, sampler, kernel, monkeypatch):
    if kernel == "bitsliced" and sampler == "normal":
        pytest.skip("the bit-sliced kernel samples table noise only (normal noise runs numba's)")
    monkeypatch.setenv(core_fused.NOISE_ENV, sampler)
    monkeypatch.setenv(core_fused.ENV, kernel)
    levels = 2**adc_bits - 1
    u = mac * levels / 255
    sigma = noise.get("noise_sigma_lsb", noise.get("noise_sigma_pct", 0.0) / 100 * levels)
    s_nl = noise.get("nonlinear_sigma_pct", 0.0) / 100 * levels
    std = math.sqrt(sigma**2 + s_nl**2 / max(u * 255 / levels + 1, 1))
    codes = one_conversion(adc_bits, mac, **noise)
    probs = code_probs(u, std, levels)
    counts = np.bincount(codes, minlength=levels + 1)
    stat, crit = chi2_ok(counts, probs)
    assert stat < crit, (stat, crit)
    n = codes.size
    mean = (probs * np.arange(levels + 1)).sum()
    var = (probs * (np.arange(levels + 1) - mean) ** 2).sum()
    assert abs(codes.mean() - mean) < 5 * math.sqrt(var / n)
    assert abs(codes.var() / var - 1) < 5 * math.sqrt(2 / n) + 1e-3


def test_a_wrong_std_is_caught():
    """The frequency test above has the power to see a 2 % error of the std."""
    codes = one_conversion(8, 128, noise_sigma_lsb=2.0)
    counts = np.bincount(codes, minlength=256)
    stat, crit = chi2_ok(counts, code_probs(128.0, 2.04, 255))
    assert stat > crit


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_voted_codes_are_the_mode_of_three(sampler, monkeypatch):
    monkeypatch.setenv(core_fused.NOISE_ENV, sampler)
    codes = one_conversion(6, 100, noise_sigma_lsb=0.8, votes=3, voting_levels=2)
    probs = mode_of_3_probs(code_probs(100 * 63 / 255, 0.8, 63))
    assert abs(probs.sum() - 1) < 1e-12
    stat, crit = chi2_ok(np.bincount(codes, minlength=64), probs)
    assert stat < crit, (stat, crit)


# ----------------------------------------------------------------------------------------------
# the exact and the fast way; reproducibility


@pytest.mark.parametrize("config", [
    CimConfig(rows=64, adc_bits=6, noise_sigma_pct=1.0),
    CimConfig(rows=100, adc_bits=7, noise_sigma_pct=2.0, nonlinear_sigma_pct=3.0, votes=3, voting_levels=5,
              hybrid_levels=2),
    CimConfig(input_bits=9, signed_inputs=True, input_bits_per_cycle=3, rows=64, adc_bits=5, noise_sigma_lsb=0.7),
    CimConfig(rows=4000, adc_bits=12, weight_bits=6, input_bits=6, noise_sigma_pct=0.1),  # float64 epilogue
])
def test_codes_equal_the_exact_thresholds_where_half_the_conversions_take_them(config, monkeypatch):
    """A margin of 0.2499 LSB sends about half of the conversions through the exact thresholds:
    the results stay the same bit for bit, so the fast codes are the exact ones."""
    gen = torch.Generator().manual_seed(3)
    lo, hi = (-(2 ** (config.input_bits - 1)) + 1, 2 ** (config.input_bits - 1)) if config.signed_inputs else (
        0, 2**config.input_bits)
    x = torch.randint(lo, hi, (2, 37, 300), generator=gen)
    w = torch.randint(-(2 ** (config.weight_bits - 1)) + 1, 2 ** (config.weight_bits - 1), (300, 21), generator=gen)
    for kernel in ("popcount", "gemm", *KERNELS[1:]):
        monkeypatch.setenv(core_fused.ENV, kernel)
        fast = cim_matmul(x, w, config, torch.Generator().manual_seed(4))
        with monkeypatch.context() as m:
            m.setattr(core_fused, "noise_margin", lambda *a: 0.2499)
            slow = cim_matmul(x, w, config, torch.Generator().manual_seed(4))
        assert torch.equal(fast, slow)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_noise_depends_on_the_seed_only(sampler, monkeypatch):
    monkeypatch.setenv(core_fused.NOISE_ENV, sampler)
    gen = torch.Generator().manual_seed(13)
    x = torch.randint(0, 256, (300, 200), generator=gen)
    w = torch.randint(-127, 128, (200, 19), generator=gen)
    config = CimConfig(rows=64, adc_bits=6, noise_sigma_pct=1.0, nonlinear_sigma_pct=0.5, votes=3, voting_levels=4)
    small = CimConfig.from_dict({**config.to_dict(), "memory_budget_bytes": 1})  # one row per chunk

    def run(seed: int, kernel: str = "popcount", cfg: CimConfig = config, threads: int = 2) -> torch.Tensor:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        monkeypatch.setenv(core_fused.ENV, kernel)
        try:
            return cim_matmul(x, w, cfg, torch.Generator().manual_seed(seed))
        finally:
            torch.set_num_threads(before)

    first = run(1)
    assert torch.equal(first, run(1, threads=1))  # streams per output element, not per thread
    assert torch.equal(first, run(1, cfg=small))  # nor per chunk
    assert torch.equal(first, run(1, "gemm"))  # the same counters in both kernels
    assert not torch.equal(first, run(2))
    monkeypatch.setenv(core_fused.NOISE_ENV, "normal" if sampler == "table" else "table")
    assert not torch.equal(first, run(1))  # the other sampler: another draw
