"""Implicit convolution rows (dse.accuracy.conv_rows): the described unfold equals the explicit one, and
cim_matmul on it gives the same bits as on the explicit operand, on every kernel, noise included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dse.accuracy import core_bitsliced, core_fused
from dse.accuracy.conv_rows import ConvRows, Segment
from dse.accuracy.core import CimConfig, cim_matmul

KERNELS = ["torch", "popcount", *(["bitsliced"] if core_bitsliced.library() is not None else []),
           *(["bitsliced-avx2"] if core_bitsliced.isa() == "avx512" else [])]  # the AVX2 build's gather too


def image(batch: int, channels: int, h: int, w: int, pad: int, signed: bool, seed: int = 0) -> torch.Tensor:
    """A zero-padded channels-last image of random 8-bit codes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-128 if signed else 0, 128 if signed else 256, (batch, channels, h, w), generator=g)
    x = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1).contiguous()
    return x.to(torch.int8 if signed else torch.uint8)


@pytest.mark.parametrize("kernel, stride, dilation, groups", [
    ((3, 3), (1, 1), (1, 1), 1), ((3, 3), (2, 1), (1, 2), 1), ((1, 3), (1, 1), (1, 1), 3), ((3, 3), (1, 1), (1, 1), 6),
])
def test_channels_last_rows_equal_f_unfold(kernel, stride, dilation, groups) -> None:
    """materialize() is F.unfold's operand with K reordered (ky, kx, channel) per conv group."""
    img = image(2, 6, 7, 9, 1, signed=False)
    rows = ConvRows.channels_last(img, kernel, stride, dilation, groups)
    g, m, k = rows.shape
    cg = 6 // groups
    ref = F.unfold(img.permute(0, 3, 1, 2).float(), kernel, dilation, 0, stride)  # (B, C kh kw, L), C-major
    ref = ref.reshape(2, groups, cg, kernel[0] * kernel[1], -1).permute(1, 0, 4, 3, 2).reshape(g, m, k)
    assert torch.equal(rows.materialize().float(), ref)
    # whole kernel rows of one group are contiguous in the image and in K: one run per kernel row
    assert len(rows.byte_segments(k)) == (kernel[0] if groups == 1 and dilation[1] == 1 else kernel[0] * kernel[1])
    wider = ConvRows(img, kernel, stride, dilation, groups, rows.segments, k + 5)  # 5 zero columns after them
    assert torch.equal(wider.materialize(), F.pad(rows.materialize(), (0, 5)))


@pytest.mark.parametrize("kernel_path", KERNELS)
@pytest.mark.parametrize("signed, groups, stride, config", [
    (False, 1, 1, CimConfig(rows=64, adc_bits=5, noise_sigma_pct=1.0)),  # byte-stage noise where VBMI
    (True, 1, 2, CimConfig(rows=48, adc_bits=4, input_bits_per_cycle=2, hybrid_levels=2, noise_sigma_pct=0.5)),
    (False, 2, 1, CimConfig(rows=17, adc_bits=6, semantics="asim", kernel_area=9)),  # rows beyond keep dropped
])
def test_cim_matmul_on_conv_rows_equals_the_explicit_operand(kernel_path, signed, groups, stride, config,
                                                             monkeypatch) -> None:
    """The same bits from the implicit and the explicit rows (several 512-row blocks, a partial last one; padded
    conversion groups from a custom layout, or the channels-last one), with a fresh equal generator each time."""
    monkeypatch.setenv(core_fused.ENV, kernel_path.split("-")[0])
    if kernel_path == "bitsliced-avx2":
        monkeypatch.setenv("CIM_DSE_BITSLICED_ISA", "avx2")
        assert core_bitsliced.library().cim_lanes() == 8
    if groups == 1:  # two conversion groups of whole kernels (3 and 5 channels), the first padded to 32 rows
        img = image(3, 8, 22 * stride, 21 * stride, 1, signed, seed=1)
        segments = tuple(Segment(j * 32 + (ky * 3 + kx) * (c1 - c0), ky, kx, c0, c1 - c0)
                         for j, (c0, c1) in enumerate(((0, 3), (3, 8))) for ky in range(3) for kx in range(3))
        rows = ConvRows(img, (3, 3), (stride, stride), (1, 1), groups, segments, 32 + 45)
    else:  # 17 channels per group: K = 153, of which asim's groups of 9 rows keep 81
        rows = ConvRows.channels_last(image(3, 34, 22, 21, 1, signed, seed=1), (3, 3), groups=groups)
    g, m, k = rows.shape
    assert m > 1024 and m % 512
    config = CimConfig(**{**config.to_dict(), "signed_inputs": signed})
    w = torch.randint(-127, 128, (g, k, 5), generator=torch.Generator().manual_seed(2))
    if groups == 1:
        w[:, 27:32] = 0  # the padding rows of the first conversion group hold no weights
    implicit = cim_matmul(rows, w, config, torch.Generator().manual_seed(3))
    assert torch.equal(implicit, cim_matmul(rows.materialize(), w, config, torch.Generator().manual_seed(3)))
    if config.noisy:
        assert not torch.equal(implicit, cim_matmul(rows, w, config, torch.Generator().manual_seed(4)))


def test_conv_rows_errors_name_what_was_expected() -> None:
    img = image(1, 4, 5, 5, 1, signed=False)
    rows = ConvRows.channels_last(img, (3, 3))
    with pytest.raises(ValueError, match=r"expected \(K, N\) or \(G, K, N\) with K = 36"):
        cim_matmul(rows, torch.zeros(35, 2), CimConfig(adc_bits=4))
    with pytest.raises(ValueError, match="expected int8"):
        cim_matmul(rows, torch.zeros(36, 2), CimConfig(adc_bits=4, signed_inputs=True))
    with pytest.raises(ValueError, match="outside"):
        ConvRows(img, (3, 3), (1, 1), (1, 1), 1, (Segment(0, 3, 0, 0, 4),), 36)
    with pytest.raises(ValueError, match="overlap in K"):
        ConvRows(img, (3, 3), (1, 1), (1, 1), 1, (Segment(0, 0, 0, 0, 4), Segment(3, 0, 1, 0, 4)), 36)
    with pytest.raises(ValueError, match="uint8 or int8"):
        ConvRows(img.float(), (3, 3), (1, 1), (1, 1), 1, (), 36)
    with pytest.raises(ValueError, match="input_bits=4"):  # codes beyond the configured input bits
        cim_matmul(rows, torch.zeros(36, 2), CimConfig(adc_bits=4, input_bits=4))
