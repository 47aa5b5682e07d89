"""The bit-sliced native kernel (``core_bitsliced``): bit for bit the numba kernels' results without noise,
the same quantiles, seeded and thread-free noise, the same bits from its AVX2 and AVX-512 builds, its
fallbacks and its build. The tests run with the build this CPU takes (AVX-512 or AVX2)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from dse.accuracy import core_bitsliced, core_fused
from dse.accuracy.core import CimConfig, cim_matmul

LIB = core_bitsliced.library()
NUMBA = core_fused.kernels()
pytestmark = pytest.mark.skipif(LIB is None or NUMBA is None,
                                reason="needs x86-64 with AVX2 or AVX-512, a C compiler and numba")


def run(kernel: str, x: torch.Tensor, w: torch.Tensor, c: CimConfig, monkeypatch, seed: int = 1,
        threads: int | None = None) -> torch.Tensor:
    monkeypatch.setenv(core_fused.ENV, kernel)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return cim_matmul(x, w, c, torch.Generator().manual_seed(seed))
    finally:
        torch.set_num_threads(before)


def operands(shape: tuple[int, ...], c: CimConfig, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    *batch, m, k, n = shape
    gen = torch.Generator().manual_seed(seed)
    xb = c.input_bits
    lo, hi = (-(2 ** (xb - 1)) + 1, 2 ** (xb - 1)) if c.signed_inputs else (0, 2**xb)
    x = torch.randint(lo, hi, (*batch, m, k), generator=gen).float()
    wb = c.weight_bits
    w = torch.randint(-(2 ** (wb - 1)) + 1, 2 ** (wb - 1), (*batch, k, n), generator=gen).float()
    return x, w


@pytest.mark.parametrize("config,shape", [
    (CimConfig(rows=255, adc_bits=6), (1100, 576, 19)),  # three blocks of 512 rows, the last partial
    (CimConfig(rows=128, adc_bits=8, input_bits_per_cycle=2), (600, 300, 64)),  # the AIMC template's shape
    (CimConfig(rows=100, adc_bits=6, hybrid_levels=4), (513, 300, 8)),  # L/FS not dyadic: two steps
    (CimConfig(rows=256, adc_bits=7, input_bits_per_cycle=4), (700, 700, 5)),  # sums above 255: 9 planes
    (CimConfig(rows=511, adc_bits=8), (64, 1100, 7)),  # the widest group the kernel takes
    (CimConfig(input_bits=8, signed_inputs=True, input_bits_per_cycle=4, rows=64, adc_bits=5), (2, 300, 200, 6)),
    (CimConfig(input_bits=4, weight_bits=4, rows=37, adc_bits=3), (2, 90, 150, 33)),  # batched weights
    (CimConfig(rows=255, adc_bits=7, semantics="asim", kernel_area=9, hybrid_levels=3), (40, 9 * 64, 4)),
    (CimConfig(rows=64, adc_bits=4, semantics="asim", hybrid_levels=2), (17, 200, 3)),  # hybrid via the ADC
])
def test_noise_free_results_equal_the_numba_kernel_bit_for_bit(config, shape, monkeypatch):
    x, w = operands(shape, config)
    ours = run("bitsliced", x, w, config, monkeypatch)
    assert torch.equal(ours, run("popcount", x, w, config, monkeypatch))
    assert not torch.equal(ours, (x @ w).float())  # lossy: the test is not vacuous


def test_integer_dtypes_and_uint8_codes(monkeypatch):
    config = CimConfig(rows=100, adc_bits=5)
    x, w = operands((300, 250, 9), config, seed=3)
    expected = run("popcount", x, w, config, monkeypatch)
    for xt in (x.to(torch.uint8), x.to(torch.int64), x.double()):
        assert torch.equal(run("bitsliced", xt, w, config, monkeypatch), expected)
    with pytest.raises(ValueError, match="integer codes"):
        run("bitsliced", x.clamp(max=254) + 0.5, w, config, monkeypatch)


def test_configurations_it_does_not_cover_run_the_numba_kernel(monkeypatch):
    x, w = operands((200, 300, 7), CimConfig())
    for config in (CimConfig(rows=64, adc_bits=6, noise_sigma_pct=1.0, votes=3, voting_levels=3),
                   CimConfig(rows=64, adc_bits=6, nonlinear_sigma_pct=2.0),
                   CimConfig(rows=600, adc_bits=8, noise_sigma_pct=0.5)):
        tables = core_fused.Tables(config, torch.float32 if config.rows < 600 else torch.float64)
        assert not core_bitsliced.covers(config, config.rows, tables)
        assert torch.equal(run("bitsliced", x, w, config, monkeypatch), run("popcount", x, w, config, monkeypatch))
    monkeypatch.setenv(core_fused.NOISE_ENV, "normal")  # Box-Muller normals are numba's only
    config = CimConfig(rows=64, adc_bits=6, noise_sigma_pct=1.0)
    assert torch.equal(run("bitsliced", x, w, config, monkeypatch), run("popcount", x, w, config, monkeypatch))


@pytest.mark.parametrize("weight_bits, k, n, group_rows, keep", [(8, 300, 7, 128, 300), (3, 40, 5, 16, 36),
                                                                 (12, 70, 3, 64, 70), (4, 10, 2, 64, 0)])
def test_row_lists_hold_the_rows_of_each_weight_bit(weight_bits, k, n, group_rows, keep):
    c = CimConfig(weight_bits=weight_bits, rows=group_rows, adc_bits=4)
    groups = -(-k // group_rows)
    gen = torch.Generator().manual_seed(weight_bits)
    top = 2 ** (weight_bits - 1)
    w = torch.randint(-top + 1, top, (k, n), generator=gen)
    w[5 % k] = 0  # a row with no bits
    lists, offsets = core_bitsliced.row_lists(w, c, group_rows, groups, keep, scale=3)
    assert offsets[0] == 0 and offsets.size == groups * n * weight_bits + 1
    bits = (w.to(torch.int64) & (2**weight_bits - 1)).numpy()
    for g in range(groups):
        for col in range(n):
            for i in range(weight_bits):
                q = (g * n + col) * weight_bits + i
                got = lists[offsets[q] : offsets[q + 1]]
                want = [3 * r for r in range(g * group_rows, min(keep, (g + 1) * group_rows)) if bits[r, col] >> i & 1]
                assert got.size % 16 == 0 and got.size - len(want) < 16
                assert got[: len(want)].tolist() == want and (got[len(want) :] == 3 * keep).all()


def test_quantiles_are_the_numba_kernels_bits():
    rng = np.random.default_rng(1)
    middle = np.arange(2**15, 2**23, 1021)  # octaves 16 to 23: the second coefficient register of the AVX2 build
    u = np.concatenate([np.arange(4096), 2**32 - 1 - np.arange(4096), middle, 2**32 - 1 - middle,
                        rng.integers(0, 2**32, 2**18)]).astype(np.uint32)
    coef = core_fused.quantile_table()
    assert np.array_equal(core_bitsliced.quantiles(u), NUMBA.quantile_values(u, coef, False))


def test_uniforms_look_uniform_and_streams_differ():
    a = core_bitsliced.uniforms(7, 0, 2**20).astype(np.float64)
    b = core_bitsliced.uniforms(7, 1, 2**20).astype(np.float64)
    c = core_bitsliced.uniforms(8, 0, 2**20).astype(np.float64)
    n = a.size
    for v in (a, b, c):
        assert abs(v.mean() / 2**32 - 0.5) < 5 * np.sqrt(1 / 12 / n)
        counts = np.bincount((v / 2**24).astype(np.int64), minlength=256)  # top 8 bits
        assert ((counts - n / 256) ** 2 / (n / 256)).sum() < 255 + 6 * np.sqrt(2 * 255)
        lanes = v.reshape(-1, 16)  # neighbouring lanes and steps uncorrelated
        assert abs(np.corrcoef(lanes[:, 0], lanes[:, 1])[0, 1]) < 5 / np.sqrt(lanes.shape[0])
        assert abs(np.corrcoef(lanes[:-1, 3], lanes[1:, 3])[0, 1]) < 5 / np.sqrt(lanes.shape[0])
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a, core_bitsliced.uniforms(7, 0, 2**20).astype(np.float64))


def test_noise_depends_on_the_seed_and_the_rows_only(monkeypatch):
    config = CimConfig(rows=64, adc_bits=6, noise_sigma_pct=1.0, input_bits_per_cycle=2)
    x, w = operands((2, 1300, 200, 9), config, seed=5)
    first = run("bitsliced", x, w, config, monkeypatch)
    assert torch.equal(first, run("bitsliced", x, w, config, monkeypatch, threads=1))  # blocks, not threads
    assert torch.equal(first, run("bitsliced", x, w, config, monkeypatch, threads=3))
    assert torch.equal(first[:, :1024], run("bitsliced", x[:, :1024], w, config, monkeypatch))  # whole blocks
    assert not torch.equal(first, run("bitsliced", x, w, config, monkeypatch, seed=2))
    assert not torch.equal(first[0], first[1])  # each batch element its own streams
    exact = run("bitsliced", x, w, CimConfig.from_dict({**config.to_dict(), "noise_sigma_pct": 0.0}), monkeypatch)
    err = (first - exact) / exact.abs().max()
    assert 0.01 < err.abs().mean() < 0.2  # noisy
    numba = run("popcount", x, w, config, monkeypatch)
    ratio = (first - exact).std() / (numba - exact).std()
    assert 0.97 < ratio.item() < 1.03


def test_the_counts_are_the_same_without_the_gfni_transposes(monkeypatch):
    config = CimConfig(rows=255, adc_bits=6, noise_sigma_pct=1.0)
    x, w = operands((1100, 576, 19), config)
    fast = run("bitsliced", x, w, config, monkeypatch)
    monkeypatch.setenv("CIM_DSE_NO_GFNI", "1")  # masked byte adds instead
    assert torch.equal(run("bitsliced", x, w, config, monkeypatch), fast)


@pytest.mark.skipif(core_bitsliced.isa() != "avx512", reason="compares both builds: needs an AVX-512 CPU")
def test_the_avx2_build_computes_the_same_bits_as_the_avx512_build(monkeypatch):
    monkeypatch.setenv(core_bitsliced.BYTE_ENV, "0")  # the byte-stage noise (VBMI) draws other bits
    config = CimConfig(rows=200, adc_bits=6, noise_sigma_pct=2.0, input_bits_per_cycle=2, hybrid_levels=2)
    x, w = operands((1100, 450, 9), config)
    wide = CimConfig(rows=300, adc_bits=7, noise_sigma_pct=1.0)
    xw, ww = operands((600, 600, 5), wide, seed=3)
    first = [run("bitsliced", x, w, config, monkeypatch), run("bitsliced", xw, ww, wide, monkeypatch)]
    u = np.random.default_rng(0).integers(0, 2**32, 2**16, dtype=np.uint32)
    u[:64] = np.arange(64)  # the gathered octaves
    quantiles, uniforms = core_bitsliced.quantiles(u), core_bitsliced.uniforms(5, 3, 4096)
    monkeypatch.setenv("CIM_DSE_BITSLICED_ISA", "avx2")
    assert core_bitsliced.isa() == "avx2" and core_bitsliced.library().cim_lanes() == 8
    second = [run("bitsliced", x, w, config, monkeypatch), run("bitsliced", xw, ww, wide, monkeypatch)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert np.array_equal(core_bitsliced.quantiles(u), quantiles)
    assert np.array_equal(core_bitsliced.uniforms(5, 3, 4096), uniforms)


def test_a_failing_compiler_leaves_the_numba_kernel(tmp_path, monkeypatch):
    with pytest.raises((OSError, subprocess.SubprocessError)):
        core_bitsliced.build("false", tmp_path, core_bitsliced.isa())
    assert not list(tmp_path.glob("*.so"))  # no half-written library left behind
    monkeypatch.setattr(core_bitsliced, "_compiler", lambda: None)
    core_bitsliced.forget()
    try:
        assert core_bitsliced.library() is None
        monkeypatch.setenv(core_fused.ENV, "auto")
        assert core_fused.kernel_for(torch.device("cpu")) in ("popcount", "gemm")
    finally:
        monkeypatch.undo()
        core_bitsliced.forget()
        assert core_bitsliced.library() is not None


def test_the_build_is_cached_by_source_and_compiler(tmp_path):
    cc = core_bitsliced._compiler()
    assert cc is not None
    target = core_bitsliced.isa()
    first = core_bitsliced.build(cc, tmp_path, target)
    stamp = first.stat().st_mtime_ns
    assert core_bitsliced.build(cc, tmp_path, target) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]
    for k in range(6):  # builds of other versions: only the newest few stay
        (tmp_path / f"core_bitsliced-old{k}.so").write_bytes(b"")
    first.unlink()
    again = core_bitsliced.build(cc, tmp_path, target)
    assert again.exists() and len(list(tmp_path.glob("*.so"))) == core_bitsliced.KEEP_BUILDS


def test_auto_takes_it_for_large_products_only(monkeypatch):
    config = CimConfig(rows=64, adc_bits=6, noise_sigma_pct=1.0)
    for m, expected in ((core_bitsliced.MIN_ROWS - 1, "popcount"), (core_bitsliced.MIN_ROWS, "bitsliced")):
        x, w = operands((m, 100, 5), config, seed=m)
        auto = run("auto", x, w, config, monkeypatch)
        assert torch.equal(auto, run(expected, x, w, config, monkeypatch))
        other = "popcount" if expected == "bitsliced" else "bitsliced"
        assert not torch.equal(auto, run(other, x, w, config, monkeypatch))  # noisy: another stream


def _in_child(x: torch.Tensor, w: torch.Tensor, config: CimConfig) -> torch.Tensor:
    torch.set_num_threads(1)  # torch's own OpenMP pool does not survive a fork either
    return cim_matmul(x, w, config)


def test_a_forked_child_gets_its_own_worker_threads(monkeypatch):
    """A fork inherits the parent's thread-pool object but not its threads: the child must not wait on them."""
    import multiprocessing

    config = CimConfig(rows=64, adc_bits=6)
    x, w = operands((1100, 100, 5), config)
    expected = run("bitsliced", x, w, config, monkeypatch, threads=1)  # the parent's one-thread pool exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_in_child, (x, w, config)).get(timeout=120)
    assert torch.equal(child, expected)
