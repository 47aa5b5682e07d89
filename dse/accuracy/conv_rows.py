"""The input rows of a convolution lowered to a matmul, described instead of unfolded (implicit im2col).

A convolution on the macro is a matmul whose row p (an output position) holds the input codes under the kernel
window, laid out along K in some order: ``F.unfold``'s, the (ky, kx, channel) order of a channels-last unfold, or
whole kernels per conversion group with zero padding (``CimConv2d``). :class:`ConvRows` keeps the padded
channels-last image and the K layout as *segments*: runs of contiguous image bytes (channels of one kernel tap,
or whole kernel rows where the channels and taps are contiguous) copied to runs of K columns, the columns that no
segment covers being zero. ``cim_matmul`` accepts it in place of ``x_codes``: the bit-sliced kernel gathers each
block's rows into its scratch (no (M, K) operand in memory, and no pass over it), every other path takes
:meth:`ConvRows.materialize`, the explicit unfold. Both give the same results bit for bit, noise included (the
rows, their order and the blocks are those of the explicit operand).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Segment:
    """``length`` channels from ``c0`` of kernel tap (ky, kx) to the K columns from ``column`` (per conv group)."""

    column: int
    ky: int
    kx: int
    c0: int
    length: int


@dataclass(frozen=True)
class ConvRows:
    """The rows (G, M, K) of a convolution on a padded channels-last image, M = batch x out_h x out_w.

    ``image`` (B, Hp, Wp, C) uint8 (unsigned codes) or int8 (signed), contiguous and already zero-padded;
    ``groups`` conv groups of C / groups channels each (group g's channels from g C / groups); ``segments``
    the K layout shared by all groups; ``k`` the width of K."""

    image: Tensor
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    segments: tuple[Segment, ...]
    k: int

    def __post_init__(self) -> None:
        if self.image.dim() != 4 or self.image.dtype not in (torch.uint8, torch.int8):
            raise ValueError(f"ConvRows: image must be (B, Hp, Wp, C) uint8 or int8, not {tuple(self.image.shape)} "
                             f"{self.image.dtype}")
        if not self.image.is_contiguous():
            raise ValueError("ConvRows: image must be contiguous (channels last)")
        c = self.image.shape[3]
        if c % self.groups:
            raise ValueError(f"ConvRows: {c} channels do not split into {self.groups} groups")
        for s in self.segments:
            if not (0 <= s.ky < self.kernel[0] and 0 <= s.kx < self.kernel[1] and s.length > 0
                    and s.c0 >= 0 and s.c0 + s.length <= self.channels and s.column >= 0
                    and s.column + s.length <= self.k):
                raise ValueError(f"ConvRows: segment {s} outside the kernel {self.kernel}, the group's "
                                 f"{self.channels} channels or K = {self.k}")
        by_column = sorted(self.segments, key=lambda s: s.column)
        for a, b in zip(by_column, by_column[1:], strict=False):
            if a.column + a.length > b.column:  # (the paths would write the shared columns in different orders)
                raise ValueError(f"ConvRows: segments {a} and {b} overlap in K")
        if min(self.out_hw) < 1:
            raise ValueError(f"ConvRows: the kernel {self.kernel} does not fit the padded image "
                             f"{tuple(self.image.shape[1:3])}")

    @classmethod
    def channels_last(cls, image: Tensor, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
                      dilation: tuple[int, int] = (1, 1), groups: int = 1) -> ConvRows:
        """K ordered (ky, kx, channel) per conv group, as a channels-last unfold lays it out."""
        cg = image.shape[3] // groups
        kh, kw = kernel
        segments = tuple(Segment((ky * kw + kx) * cg, ky, kx, 0, cg) for ky in range(kh) for kx in range(kw))
        return cls(image, tuple(kernel), tuple(stride), tuple(dilation), groups, segments, kh * kw * cg)

    @property
    def channels(self) -> int:
        """Channels per conv group."""
        return self.image.shape[3] // self.groups

    @property
    def out_hw(self) -> tuple[int, int]:
        _, hp, wp, _ = self.image.shape
        return tuple((size - d * (k - 1) - 1) // s + 1
                     for size, k, s, d in zip((hp, wp), self.kernel, self.stride, self.dilation, strict=True))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(G, M, K) of the explicit operand."""
        oh, ow = self.out_hw
        return self.groups, self.image.shape[0] * oh * ow, self.k

    @property
    def signed(self) -> bool:
        return self.image.dtype == torch.int8

    @property
    def device(self) -> torch.device:
        return self.image.device

    def materialize(self) -> Tensor:
        """The explicit operand (G, M, K), the image's dtype and device: one strided copy per segment (one in all
        for the channels-last layout)."""
        g, m, k = self.shape
        b, _, _, c = self.image.shape
        oh, ow = self.out_hw
        st = self.image.stride()
        (sh, sw), (dh, dw) = self.stride, self.dilation
        windows = self.image.as_strided((b, oh, ow, self.kernel[0], self.kernel[1], c),
                                        (st[0], st[1] * sh, st[2] * sw, st[1] * dh, st[2] * dw, st[3]))
        by_group = windows.unflatten(-1, (g, self.channels)).permute(5, 0, 1, 2, 3, 4, 6)  # (G, B, oh, ow, kh, kw, Cg)
        plain = ConvRows.channels_last(self.image, self.kernel, groups=g)
        if self.segments == plain.segments and self.k == plain.k:
            return by_group.reshape(g, m, k)  # (ky, kx, channel) in K: one copy
        covered = sum(s.length for s in self.segments) == k  # (no overlaps: they tile K, no column left to zero)
        out = (torch.empty if covered else torch.zeros)((g, b, oh, ow, k), dtype=self.image.dtype,
                                                       device=self.image.device)
        for s in self.segments:
            out[..., s.column : s.column + s.length] = by_group[..., s.ky, s.kx, s.c0 : s.c0 + s.length]
        return out.view(g, m, k)

    def byte_segments(self, keep: int) -> np.ndarray:
        """(S, 3) int64 rows (source byte offset from a row's window origin, first column, length) of the columns
        below ``keep``, runs that continue each other in the image and in K merged (the C kernel's ``Params.seg``)."""
        c = self.image.shape[3]
        wp = self.image.shape[2]
        dh, dw = self.dilation
        runs: list[list[int]] = []
        for s in sorted(self.segments, key=lambda s: s.column):
            length = min(s.length, keep - s.column)
            if length <= 0:
                continue
            src = (s.ky * dh * wp + s.kx * dw) * c + s.c0
            if runs and runs[-1][0] + runs[-1][2] == src and runs[-1][1] + runs[-1][2] == s.column:
                runs[-1][2] += length
            else:
                runs.append([src, s.column, length])
        return np.array(runs, np.int64).reshape(-1, 3)

    def row_strides(self) -> tuple[int, int, int, int, int]:
        """(ow, rows per image, bytes per output row, per output column, per image): row p's window origin is
        p // rpi * ldi + p % rpi // ow * ldy + p % ow * ldw bytes into the image."""
        _, hp, wp, c = self.image.shape
        oh, ow = self.out_hw
        return ow, oh * ow, self.stride[0] * wp * c, self.stride[1] * c, hp * wp * c


def explicit(x: Tensor | ConvRows) -> Tensor:
    """A tensor operand as it is, ConvRows materialised."""
    return x.materialize() if isinstance(x, ConvRows) else x
