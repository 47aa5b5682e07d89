"""Integer-domain core of the bit-wise CiM simulator: exactness against simple per-cycle references,
noise statistics, voting, batch invariance, seeds and config validation."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dse.accuracy.core as core
import dse.accuracy.core_planes as planes
from dse.accuracy import core_bitsliced, core_fused
from dse.accuracy.core import CimConfig, Cycle, cim_matmul, input_cycles, row_groups

# the epilogue paths: torch (whole-tensor passes), the numba kernels (where numba is installed) and the
# bit-sliced native kernel (where it builds: x86-64 with AVX-512 and a C compiler)
FUSED = ["popcount", "gemm"] if core_fused.kernels() is not None else []
NATIVE = ["bitsliced"] if core_bitsliced.library() is not None else []
PATHS = ["torch", *FUSED, *NATIVE]


@contextlib.contextmanager
def path(kernel: str) -> Iterator[None]:
    """Run cim_matmul through one epilogue path (a context manager: also inside hypothesis tests)."""
    with mock.patch.dict(os.environ, {core_fused.ENV: kernel}):
        yield

# ----------------------------------------------------------------------------------------------
# the simple reference: Python loops over group, weight bit and input cycle, float64, no noise


def reference(x: torch.Tensor, w: torch.Tensor, c: CimConfig) -> torch.Tensor:
    """What the macro computes, written as plainly as possible (2-D x and w, noise-free)."""
    x, w = x.long(), w.long()
    k = x.shape[1]
    size, count = c.rows, max(1, math.ceil(k / c.rows))
    if c.semantics == "asim" and c.kernel_area > 1:  # whole channels per group; only ceil(K/rows) groups
        size = c.rows // c.kernel_area * c.kernel_area
    cycles = c.cycles
    wb, nc = c.weight_bits, len(cycles)
    xt, wt = x & (2**c.input_bits - 1), w & (2**wb - 1)  # two's complement
    levels = 1 if c.adc_bits is None else 2**c.adc_bits - 1
    out = torch.zeros(x.shape[0], w.shape[1], dtype=torch.float64)  # in units of 1/levels: exact integers
    for g in range(count):
        rows = slice(g * size, min((g + 1) * size, k))
        for i in range(wb):
            b = (wt[rows] >> i) & 1
            for j, cy in enumerate(cycles):
                a = (xt[:, rows] >> cy.shift) & (2**cy.width - 1)
                m = (a @ b).double()
                digital = i + j > wb + nc - 2 - c.hybrid_levels
                if c.adc_bits is None or (digital and c.semantics == "default"):
                    p = m * levels
                else:
                    fs = (2**cy.width - 1) * c.rows
                    p = torch.round(m * levels / fs) * fs  # code * FS: the partial sum times levels
                sign = -1.0 if (i == wb - 1) != cy.negative else 1.0
                out += sign * 2.0 ** (i + cy.shift) * p
    return out / levels


def codes(shape, bits: int, signed: bool, gen: torch.Generator) -> torch.Tensor:
    lo, hi = (-(2 ** (bits - 1)) + 1, 2 ** (bits - 1)) if signed else (0, 2**bits)
    return torch.randint(lo, hi, shape, generator=gen)


def weights(shape, bits: int, gen: torch.Generator) -> torch.Tensor:
    return codes(shape, bits, True, gen)


# ----------------------------------------------------------------------------------------------
# exactness


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("config", [
    CimConfig(rows=64, adc_bits=None),
    CimConfig(rows=255, adc_bits=8),
    CimConfig(rows=85, adc_bits=8),  # L a multiple of FS
    CimConfig(rows=50, adc_bits=4, hybrid_levels=8 + 8 - 1),  # default: every cycle digital
    CimConfig(weight_bits=4, input_bits=4, rows=1, adc_bits=1),
])
def test_lossless_configs_equal_the_integer_matmul(config, signed):
    config = CimConfig.from_dict({**config.to_dict(), "signed_inputs": signed})
    assert config.lossless
    gen = torch.Generator().manual_seed(0)
    x = codes((37, 300), config.input_bits, signed, gen)
    w = weights((300, 11), config.weight_bits, gen)
    expected = (x @ w).float()
    for xs, ws in ((x, w), (x.float(), w.float()), (x.to(torch.int16), w.to(torch.int8))):
        assert torch.equal(cim_matmul(xs, ws, config), expected)


def test_uint8_codes_and_a_wide_k_are_exact():
    gen = torch.Generator().manual_seed(1)
    x, w = codes((40, 4608), 8, False, gen), weights((4608, 9), 8, gen)
    got = cim_matmul(x.to(torch.uint8), w.float(), CimConfig(rows=255, adc_bits=8))
    assert torch.equal(got, (x @ w).float())  # |result| < 2^24 here, so float32 holds it exactly


@pytest.mark.parametrize("int8_fast", [False, True])
def test_the_lossless_gemm_stays_exact_where_fp32_sums_would_round(int8_fast, monkeypatch):
    """fp32 only while the weights bound every partial sum below 2^24; beyond that int8 (VNNI/AMX) or fp64."""
    monkeypatch.setattr(core, "_int8_gemm_is_fast", lambda: int8_fast)
    gen = torch.Generator().manual_seed(2)
    x, w = codes((64, 4608), 8, False, gen), weights((4608, 9), 8, gen).abs()  # sums near 2^27
    expected = (x @ w).float()  # int64, rounded once
    assert not torch.equal(x.float() @ w.float(), expected)  # an fp32 GEMM rounds on the way: not vacuous
    for xs in (x, x.to(torch.uint8), x.float()):
        assert torch.equal(cim_matmul(xs, w.float(), CimConfig(rows=255, adc_bits=8)), expected)
    small = w.clamp(max=3)  # sum |w| * 255 < 2^24: the fp32 GEMM, chunked
    assert torch.equal(cim_matmul(x.to(torch.uint8), small.float(), CimConfig(rows=255, adc_bits=8)),
                       (x @ small).float())


def _configs(semantics: str):
    @st.composite
    def build(draw):
        wb = draw(st.integers(2, 8))
        signed = draw(st.booleans())
        xb = draw(st.integers(2 if signed else 1, 8))
        e = draw(st.sampled_from([d for d in (1, 2, 4) if xb % d == 0]))
        nc = len(input_cycles(xb, e, signed))
        return CimConfig(
            weight_bits=wb, input_bits=xb, signed_inputs=signed, input_bits_per_cycle=e,
            rows=draw(st.integers(1, 70)), adc_bits=draw(st.integers(1, 9)),
            hybrid_levels=draw(st.integers(0, wb + nc - 1)), semantics=semantics,
        )
    return build()


@pytest.mark.parametrize("kernel", PATHS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=_configs("asim"), m=st.integers(1, 9), k=st.integers(1, 150), n=st.integers(1, 6), seed=st.integers(0, 99))
def test_asim_semantics_equals_the_per_cycle_reference(kernel, config, m, k, n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = codes((m, k), config.input_bits, config.signed_inputs, gen)
    w = weights((k, n), config.weight_bits, gen)
    with path(kernel):
        assert torch.equal(cim_matmul(x, w, config), reference(x, w, config).float())


@pytest.mark.parametrize("kernel", PATHS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=_configs("default"), m=st.integers(1, 9), k=st.integers(1, 150), n=st.integers(1, 6), seed=st.integers(0, 99))
def test_default_semantics_equals_its_reference(kernel, config, m, k, n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = codes((m, k), config.input_bits, config.signed_inputs, gen)
    w = weights((k, n), config.weight_bits, gen)
    with path(kernel):
        assert torch.equal(cim_matmul(x, w, config), reference(x, w, config).float())


@pytest.mark.parametrize("kernel", PATHS)
@pytest.mark.parametrize("e,signed", [(1, False), (2, False), (4, False), (1, True), (2, True), (4, True)])
@pytest.mark.parametrize("semantics", ["asim", "default"])
def test_w8a8_layers_with_lossy_adc_and_hybrid_cycles(e, signed, semantics, kernel):
    gen = torch.Generator().manual_seed(e + 10 * signed)
    for adc, hybrid in ((6, 0), (5, 3)):
        config = CimConfig(rows=100, adc_bits=adc, input_bits_per_cycle=e, signed_inputs=signed, hybrid_levels=hybrid,
                           semantics=semantics)
        x, w = codes((20, 230), 8, signed, gen), weights((230, 7), 8, gen)
        expected = reference(x, w, config).float()
        with path(kernel):
            assert torch.equal(cim_matmul(x.float(), w.float(), config), expected)
        assert not torch.equal(expected, (x @ w).float())  # really lossy


def test_input_cycles():
    assert input_cycles(8, 1, False) == tuple(Cycle(s, 1) for s in range(8))
    assert input_cycles(8, 4, False) == (Cycle(0, 4), Cycle(4, 4))
    # signed: the sign bit alone (negated, top cycle), the 7 lower bits by 2 with the remainder on top
    assert input_cycles(8, 2, True) == (Cycle(0, 2), Cycle(2, 2), Cycle(4, 2), Cycle(6, 1), Cycle(7, 1, True))
    assert input_cycles(9, 4, True) == (Cycle(0, 4), Cycle(4, 4), Cycle(8, 1, True))


def test_partial_last_group_is_kept_in_default_and_asim_linear():
    config = CimConfig(rows=255, adc_bits=6)
    assert row_groups(576, config) == row_groups(576, CimConfig(rows=255, adc_bits=6, semantics="asim"))
    groups = row_groups(576, config)
    assert (groups.size, groups.count, groups.keep) == (255, 3, 576)  # 255 + 255 + 66


@pytest.mark.parametrize("kernel", PATHS)
def test_asim_conv_grouping_drops_the_tail_like_the_anchor(kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    # rows 256, 3x3, 256 channels: 28 channels (252 rows) per group, ceil(2304/256) = 9 groups, 4 channels lost
    asim = CimConfig(rows=256, adc_bits=8, semantics="asim", kernel_area=9)
    groups = row_groups(2304, asim)
    assert (groups.size, groups.count, groups.keep) == (252, 9, 2268)
    assert not asim.lossless
    gen = torch.Generator().manual_seed(3)
    x, w = codes((5, 2304), 8, False, gen), weights((2304, 4), 8, gen)
    got = cim_matmul(x, w, asim)
    assert torch.equal(got, reference(x, w, asim).float())
    dropped_exact = CimConfig(rows=256, adc_bits=None, semantics="asim", kernel_area=9)
    assert torch.equal(cim_matmul(x, w, dropped_exact), (x[:, :2268] @ w[:2268]).float())
    # rows 255: 10 groups of 252 cover every channel; default semantics never drops rows
    assert row_groups(2304, CimConfig(rows=255, semantics="asim", kernel_area=9)).keep == 2304
    assert row_groups(2304, CimConfig(rows=256, kernel_area=9)).keep == 2304
    with pytest.raises(ValueError, match="kernel_area"):
        cim_matmul(x[:, :100], w[:100], asim)


@pytest.mark.parametrize("kernel", PATHS)
def test_hybrid_cycles_are_exact_in_default_but_pass_the_adc_in_asim(kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    gen = torch.Generator().manual_seed(4)
    x, w = codes((30, 200), 8, False, gen), weights((200, 5), 8, gen)
    full = 8 + 8 - 1
    noisy = {"rows": 64, "adc_bits": 6, "noise_sigma_pct": 5.0, "hybrid_levels": full}
    default = cim_matmul(x, w, CimConfig(**noisy), torch.Generator().manual_seed(0))
    assert torch.equal(default, (x @ w).float())  # every cycle digital: no noise, no ADC
    asim = cim_matmul(x, w, CimConfig(**noisy, semantics="asim"), torch.Generator().manual_seed(0))
    assert torch.equal(asim, cim_matmul(x, w, CimConfig(rows=64, adc_bits=6, semantics="asim")))  # ADC, no noise


@pytest.mark.parametrize("kernel", PATHS)
def test_batch_dims_broadcast_like_matmul(kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    gen = torch.Generator().manual_seed(5)
    config = CimConfig(rows=40, adc_bits=5)
    x = codes((3, 2, 6, 90), 8, False, gen)
    w = weights((2, 90, 4), 8, gen)
    got = cim_matmul(x, w, config)
    assert got.shape == (3, 2, 6, 4) and got.dtype == torch.float32
    for a in range(3):
        for b in range(2):
            assert torch.equal(got[a, b], reference(x[a, b], w[b], config).float())
    grouped = cim_matmul(x[0], w, config)  # grouped conv: (G, M, K/G) @ (G, K/G, N/G)
    assert torch.equal(grouped, got[0])
    shared = cim_matmul(x, w[0], config)  # one weight matrix for every batch
    assert torch.equal(shared[1, 1], reference(x[1, 1], w[0], config).float())
    assert cim_matmul(x[..., :0], w[:, :0], config).abs().sum() == 0


@pytest.mark.parametrize("kernel", ["torch", *FUSED[1:]])  # the bit-plane GEMM's users
@pytest.mark.parametrize("engine", [
    planes.Engine(torch.float64, 6, 8),
    planes.Engine(torch.bfloat16, 1, 8),  # the AMX path (exact while sums <= 256)
    planes.Engine(torch.float32, 1, 8),
    planes.Engine(torch.float32, 2, 12),  # fields that are not whole bytes
])
def test_every_gemm_engine_is_exact(engine, kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    monkeypatch.setattr(planes, "choose_engine", lambda *args: engine)
    gen = torch.Generator().manual_seed(6)
    config = CimConfig(rows=128, adc_bits=6, hybrid_levels=2)
    x, w = codes((25, 300), 8, False, gen), weights((300, 9), 8, gen)
    assert torch.equal(cim_matmul(x, w, config), reference(x, w, config).float())


def test_engine_choice():
    cpu = torch.device("cpu")
    noise_free = planes.choose_engine(cpu, 255, 8, False)
    assert noise_free.dtype in (torch.float32, torch.bfloat16)
    if noise_free.dtype == torch.float32:
        assert noise_free.fields == 3  # 3 GEMM columns for 8 planes
        assert planes.choose_engine(cpu, 255, 8, True).fields == 2  # no padding plane to draw noise for
    assert planes.choose_engine(cpu, 2**30, 8, False).dtype == torch.float64


# ----------------------------------------------------------------------------------------------
# batch invariance and seeds


@pytest.mark.parametrize("kernel", PATHS)
def test_noise_free_results_do_not_depend_on_chunking(kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    gen = torch.Generator().manual_seed(7)
    config = CimConfig(rows=50, adc_bits=5, hybrid_levels=4, input_bits_per_cycle=2)
    x, w = codes((203, 300), 8, False, gen), weights((300, 17), 8, gen)
    whole = cim_matmul(x, w, config)
    tiny = cim_matmul(x, w, CimConfig.from_dict({**config.to_dict(), "memory_budget_bytes": 1}))
    assert torch.equal(whole, tiny)
    parts = torch.cat([cim_matmul(x[s : s + 29], w, config) for s in range(0, 203, 29)])
    assert torch.equal(whole, parts)


@pytest.mark.parametrize("kernel", PATHS)
def test_seed_reproducibility_and_noise_independent_of_batch(kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    gen = torch.Generator().manual_seed(8)
    x, w = codes((400, 200), 8, False, gen), weights((200, 16), 8, gen)
    config = CimConfig(rows=64, adc_bits=6, noise_sigma_pct=1.0)

    def run(seed: int, cfg: CimConfig = config) -> torch.Tensor:
        return cim_matmul(x, w, cfg, torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    monkeypatch.setattr(planes, "PARALLEL_NORMAL_MIN", 1)  # the multi-thread normal path, when there are threads
    assert torch.equal(run(3), run(3))
    clean = cim_matmul(x, w, CimConfig(rows=64, adc_bits=6))
    small = CimConfig.from_dict({**config.to_dict(), "memory_budget_bytes": 1})  # one row per chunk
    err_big, err_small = (run(4) - clean).std(), (run(5, small) - clean).std()
    assert abs(err_big / err_small - 1) < 0.1


# ----------------------------------------------------------------------------------------------
# noise statistics: one analog conversion isolated (W=2, X=1, the sign plane digital)


def _one_conversion(config_kwargs: dict, mac: int, semantics: str = "default", samples: int = 20000) -> torch.Tensor:
    """Codes of one conversion with column sum ``mac`` (rows 255, 8-bit ADC: 1 LSB = 1 count)."""
    config = CimConfig(weight_bits=2, input_bits=1, rows=255, adc_bits=8, hybrid_levels=1, semantics=semantics,
                       **config_kwargs)
    x = torch.zeros(samples, 255)
    x[:, :mac] = 1
    w = torch.ones(255, 1)  # plane 0 all ones, sign plane (digital) all zeros
    return cim_matmul(x, w, config, torch.Generator().manual_seed(9)).flatten()


@pytest.mark.parametrize("kernel", PATHS)
@pytest.mark.parametrize("semantics", ["default", "asim"])
@pytest.mark.parametrize("kwargs,sigma_lsb", [
    ({"noise_sigma_pct": 1.0}, 2.55),  # 1 % of full scale = 2.55 LSB at 8 bits
    ({"noise_sigma_lsb": 1.5}, 1.5),
    ({"noise_sigma_lsb": 1.5, "noise_sigma_pct": 9.0}, 1.5),  # LSB overrides %
    ({"nonlinear_sigma_pct": 4.0}, 4.0 / 100 * 255 / math.sqrt(99 + 1)),  # 1/sqrt(MAC + 1) at MAC 99
    ({"noise_sigma_pct": 0.5, "nonlinear_sigma_pct": 4.0}, math.hypot(1.275, 1.02)),
])
def test_injected_noise_has_the_configured_std(kwargs, sigma_lsb, semantics, kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    y = _one_conversion(kwargs, 99 if "nonlinear_sigma_pct" in kwargs else 128, semantics)
    expected = math.sqrt(sigma_lsb**2 + 1 / 12)  # plus the rounding of the ADC
    assert abs(y.std().item() / expected - 1) < 0.03
    assert abs(y.mean().item() - (99 if "nonlinear_sigma_pct" in kwargs else 128)) < 0.1


@pytest.mark.parametrize("kernel", PATHS)
def test_noise_is_clamped_at_zero_codes(kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    y = _one_conversion({"noise_sigma_lsb": 2.0}, 0)
    assert y.min() == 0 and 0.7 < y.mean().item() < 0.9  # E[round(max(0, 2 n))] ~= 0.8


# ----------------------------------------------------------------------------------------------
# the fused numba path against the torch path, its random numbers and its choice


@pytest.mark.skipif(not FUSED, reason="numba not installed")
@pytest.mark.parametrize("config,shape", [
    (CimConfig(rows=255, adc_bits=6), (70, 576, 19)),
    (CimConfig(rows=100, adc_bits=6, hybrid_levels=4), (33, 300, 8)),  # L/FS not dyadic: two-step scaling
    (CimConfig(weight_bits=3, input_bits=12, rows=70, adc_bits=7, input_bits_per_cycle=4), (21, 150, 5)),
    (CimConfig(input_bits=9, signed_inputs=True, input_bits_per_cycle=3, rows=64, adc_bits=5), (17, 200, 6)),
    (CimConfig(rows=4000, adc_bits=12, weight_bits=6, input_bits=6), (9, 4100, 3)),
    (CimConfig(rows=255, adc_bits=7, semantics="asim", kernel_area=9, hybrid_levels=3), (12, 9 * 64, 4)),
    (CimConfig(weight_bits=16, input_bits=16, rows=30, adc_bits=9, input_bits_per_cycle=8), (8, 100, 3)),
])
def test_fused_paths_equal_the_torch_path_bit_for_bit(config, shape, monkeypatch):
    m, k, n = shape
    gen = torch.Generator().manual_seed(12)
    x = codes((2, m, k), config.input_bits, config.signed_inputs, gen)
    w = weights((2, k, n), config.weight_bits, gen)
    wide = config.rows == 4000 or config.weight_bits == 16  # float64 epilogues
    assert planes.work_dtype(config, config.rows) == (torch.float64 if wide else torch.float32)
    results = {}
    for kernel in PATHS:
        monkeypatch.setenv(core_fused.ENV, kernel)
        results[kernel] = cim_matmul(x, w, config)
    for kernel in [*FUSED, *NATIVE]:
        assert torch.equal(results[kernel], results["torch"]), kernel
    assert not torch.equal(results["torch"], (x @ w).float())


@pytest.mark.skipif(not FUSED, reason="numba not installed")
def test_kernel_normals_are_standard_normal():
    z = torch.from_numpy(core_fused.kernels().normals(core_fused.np.uint64(2024), 0, 2**21)).double()
    mean, std = z.mean().item(), z.std().item()
    kurtosis = ((z - mean) ** 4).mean().item() / std**4
    assert abs(mean) < 0.003 and abs(std - 1) < 0.002 and abs(kurtosis - 3) < 0.02
    # the whole distribution: Kolmogorov-Smirnov distance to Phi (critical value 1.63 / sqrt(n) at 1 %)
    srt = torch.sort(z).values
    cdf = torch.special.ndtr(srt)
    i = torch.arange(1, z.numel() + 1, dtype=torch.float64) / z.numel()
    assert (i - cdf).abs().max().item() < 1.63 / math.sqrt(z.numel())
    for t in (2.0, 3.0, 4.0):  # both tails
        expected = 2 * (1 - torch.special.ndtr(torch.tensor(t)).item())
        assert abs((z.abs() > t).double().mean().item() / expected - 1) < 0.05 + 3 / math.sqrt(expected * z.numel())
    pairs = z.view(-1, 2)  # the two normals of one Box-Muller draw are uncorrelated
    assert abs(torch.corrcoef(pairs.T)[0, 1].item()) < 0.005


@pytest.mark.skipif(not FUSED, reason="numba not installed")
@pytest.mark.parametrize("kernel", FUSED)
def test_fused_noise_depends_on_the_seed_only(kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    gen = torch.Generator().manual_seed(13)
    x, w = codes((300, 200), 8, False, gen), weights((200, 16), 8, gen)
    config = CimConfig(rows=64, adc_bits=6, noise_sigma_pct=1.0, nonlinear_sigma_pct=0.5, votes=3, voting_levels=4)

    def run(seed: int, cfg: CimConfig = config, threads: int = 2) -> torch.Tensor:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return cim_matmul(x, w, cfg, torch.Generator().manual_seed(seed))
        finally:
            torch.set_num_threads(before)

    first = run(1)
    assert torch.equal(first, run(1, threads=1))  # streams per output element, not per thread
    small = CimConfig.from_dict({**config.to_dict(), "memory_budget_bytes": 1})
    assert torch.equal(first, run(1, small))  # nor per chunk
    assert not torch.equal(first, run(2))
    torch.manual_seed(5)  # no generator: the default one
    a = cim_matmul(x, w, config)
    torch.manual_seed(5)
    assert torch.equal(a, cim_matmul(x, w, config))


def test_kernel_choice(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv(core_fused.ENV, "torch")
    assert core_fused.kernel_for(cpu) == "torch"
    monkeypatch.setenv(core_fused.ENV, "tensorflow")
    with pytest.raises(ValueError, match="CIM_DSE_KERNEL='tensorflow': must be one of auto, torch, popcount, gemm, "
                                         "bitsliced"):
        core_fused.kernel_for(cpu)
    monkeypatch.setenv(core_fused.ENV, "auto")
    assert core_fused.kernel_for(torch.device("cuda")) == "torch"
    auto = core_fused.kernel_for(cpu)
    assert auto == (NATIVE or FUSED or ["torch"])[0] or (auto == "gemm" and FUSED)
    monkeypatch.setattr(core_fused.core_bitsliced, "library", lambda: None)  # no compiler or no AVX-512
    monkeypatch.setenv(core_fused.ENV, "bitsliced")
    assert core_fused.kernel_for(cpu) == ("popcount" if FUSED else "torch")
    monkeypatch.setattr(core_fused, "kernels", lambda: None)  # numba missing or broken
    monkeypatch.setenv(core_fused.ENV, "popcount")
    assert core_fused.kernel_for(cpu) == "torch"
    gen = torch.Generator().manual_seed(14)
    x, w = codes((5, 80), 8, False, gen), weights((80, 3), 8, gen)
    config = CimConfig(rows=40, adc_bits=5)
    assert torch.equal(cim_matmul(x, w, config), reference(x, w, config).float())


def test_numba_kernels_import_where_numba_is_installed():
    """kernels() turns any import failure into "no numba"; a quantile degree out of step would hide that way."""
    pytest.importorskip("numba")
    from dse.accuracy import core_kernels

    assert core_kernels.DEGREE == core_fused.QUANTILE_DEGREE
    assert core_fused.quantile_table().shape == (core_fused.QUANTILE_DEGREE + 1, 32)


# ----------------------------------------------------------------------------------------------
# voting


@pytest.mark.parametrize("kernel", PATHS)
def test_one_vote_is_no_voting(kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    gen = torch.Generator().manual_seed(10)
    x, w = codes((50, 200), 8, False, gen), weights((200, 8), 8, gen)
    base = {"rows": 64, "adc_bits": 6, "noise_sigma_lsb": 0.8}
    plain = cim_matmul(x, w, CimConfig(**base), torch.Generator().manual_seed(1))
    one = cim_matmul(x, w, CimConfig(**base, votes=1, voting_levels=5), torch.Generator().manual_seed(1))
    assert torch.equal(plain, one)


@pytest.mark.parametrize("kernel", PATHS)
def test_voting_reduces_the_error(kernel, monkeypatch):
    monkeypatch.setenv(core_fused.ENV, kernel)
    gen = torch.Generator().manual_seed(11)
    x, w = codes((600, 128), 8, False, gen), weights((128, 8), 8, gen)
    clean = cim_matmul(x, w, CimConfig(rows=128, adc_bits=6))

    def rms(votes: int) -> float:
        config = CimConfig(rows=128, adc_bits=6, noise_sigma_lsb=0.3, votes=votes, voting_levels=15)
        return (cim_matmul(x, w, config, torch.Generator().manual_seed(2)) - clean).pow(2).mean().sqrt().item()

    one = rms(1)  # measured: 3 votes ~0.73, 5 votes ~0.56 of it
    assert rms(3) < 0.85 * one
    assert rms(5) < 0.7 * one
    nonlinear = {"rows": 128, "adc_bits": 6, "nonlinear_sigma_pct": 3.0, "voting_levels": 15}
    errors = [(cim_matmul(x, w, CimConfig(**nonlinear, votes=v), torch.Generator().manual_seed(3)) - clean).abs().mean()
              for v in (1, 5)]
    assert errors[1] < 0.8 * errors[0]


def test_mode_breaks_ties_to_the_smallest_code():
    votes = torch.tensor([[3.0, 5.0, 1.0], [5.0, 5.0, 2.0], [3.0, 1.0, 2.0], [7.0, 1.0, 4.0]])
    assert planes.mode(votes, 7).tolist() == [3.0, 1.0, 2.0]  # 5 and 1 both twice: 1


# ----------------------------------------------------------------------------------------------
# config and operand validation


def test_config_round_trip_and_derived_values():
    config = CimConfig(rows=255, adc_bits=8, noise_sigma_pct=1.0, semantics="asim")
    assert CimConfig.from_dict(config.to_dict()) == config
    assert config.noise_lsb == pytest.approx(2.55)
    assert config.noisy and not config.lossless
    assert not CimConfig(rows=256, adc_bits=8).lossless
    with pytest.raises(ValueError, match="unknown field.*'adc_bitz'"):
        CimConfig.from_dict({"adc_bitz": 8})


@pytest.mark.parametrize("kwargs,field", [
    ({"weight_bits": 1}, "weight_bits"),
    ({"weight_bits": 8.0}, "weight_bits"),
    ({"input_bits": 0}, "input_bits"),
    ({"input_bits": 1, "signed_inputs": True}, "input_bits"),
    ({"signed_inputs": 1}, "signed_inputs"),
    ({"rows": 0}, "rows"),
    ({"adc_bits": 0}, "adc_bits"),
    ({"adc_bits": 17}, "adc_bits"),
    ({"input_bits_per_cycle": 3}, "input_bits_per_cycle"),
    ({"input_bits_per_cycle": 0}, "input_bits_per_cycle"),
    ({"adc_bits": 8, "noise_sigma_pct": -1.0}, "noise_sigma_pct"),
    ({"adc_bits": 8, "noise_sigma_pct": math.nan}, "noise_sigma_pct"),
    ({"adc_bits": 8, "noise_sigma_lsb": -0.5}, "noise_sigma_lsb"),
    ({"adc_bits": 8, "nonlinear_sigma_pct": math.inf}, "nonlinear_sigma_pct"),
    ({"noise_sigma_pct": 1.0}, "noise_sigma_pct"),  # noise without an ADC
    ({"hybrid_levels": -1}, "hybrid_levels"),
    ({"hybrid_levels": 16}, "hybrid_levels"),
    ({"votes": 0}, "votes"),
    ({"voting_levels": 99}, "voting_levels"),
    ({"semantics": "ASiM"}, "semantics"),
    ({"kernel_area": 200}, "kernel_area"),
    ({"memory_budget_bytes": 0}, "memory_budget_bytes"),
])
def test_bad_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"CimConfig\.{field}\b"):
        CimConfig(**kwargs)


def test_bad_operands_are_reported():
    config = CimConfig(rows=16, adc_bits=4)
    w = torch.zeros(8, 2)
    with pytest.raises(ValueError, match=r"x_codes spans \[256.0, 256.0\], outside \[0, 255\] for input_bits=8"):
        cim_matmul(torch.full((3, 8), 256.0), w, config)
    with pytest.raises(ValueError, match="x_codes spans"):
        cim_matmul(torch.full((3, 8), -1.0), w, config)
    with pytest.raises(ValueError, match="w_codes spans"):
        cim_matmul(torch.zeros(3, 8), torch.full((8, 2), 200.0), config)
    with pytest.raises(ValueError, match="integer codes"):
        cim_matmul(torch.full((3, 8), 0.5), w, config)
    with pytest.raises(ValueError, match="K mismatch"):
        cim_matmul(torch.zeros(3, 7), w, config)
    with pytest.raises(ValueError, match="x_codes spans"):
        cim_matmul(torch.full((3, 8), math.nan), w, config)


@pytest.mark.skipif(not FUSED, reason="numba not installed")
def test_numba_kernels_leave_torch_thread_count_alone():
    """numba's OpenMP pool raises the process's OpenMP thread count when it starts; a worker that asked torch
    for one thread must keep one (a fresh process: the pool starts once)."""
    import subprocess
    import sys

    script = ("import os, torch\n"
              "torch.set_num_threads(1)\n"
              "from dse.accuracy.core import CimConfig, cim_matmul\n"
              "os.environ['CIM_DSE_KERNEL'] = 'popcount'\n"
              "cim_matmul(torch.randint(0, 256, (300, 300)).float(), torch.randint(-127, 128, (300, 8)).float(),\n"
              "           CimConfig(rows=64, adc_bits=6, noise_sigma_pct=1.0))\n"
              "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "1"
