"""ViT-B/32 (Dosovitskiy et al., 2021) in plain torch, with attention written out by hand.

The attention products Q @ K^T and softmax(.) @ V are ``ActivationMatMul`` modules, so that (1) the
ONNX export has them as ``MatMul`` nodes between two activations (nn.MultiheadAttention and
scaled_dot_product_attention would hide them in fused or decomposed forms) and (2) forward hooks can
count their MACs like any Conv2d or Linear. Q, K, V are separate linears for the same reason:
each becomes its own weight-stationary MatMul in the workload.

Reshapes use sizes fixed at construction (batch as -1) rather than ``x.shape``, so the traced ONNX
export has constant Reshape targets instead of Shape/Slice/Concat chains around every block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ActivationMatMul(nn.Module):
    """``a @ b`` of two activations, as a module so it gets a name in the export and a hook for MACs."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class Attention(nn.Module):
    """Multi-head self-attention: separate Q/K/V linears, explicit QK^T, softmax, AV, output projection."""

    def __init__(self, dim: int, heads: int, tokens: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.dim = dim
        self.tokens = tokens
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.qk = ActivationMatMul()
        self.av = ActivationMatMul()
        self.proj = nn.Linear(dim, dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # (B, N, D) -> (B, heads, N, head_dim)
        return x.reshape(-1, self.tokens, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self._split_heads(self.q(x))
        k = self._split_heads(self.k(x))
        v = self._split_heads(self.v(x))
        scores = self.qk(q, k.transpose(-2, -1)) * self.scale
        out = self.av(scores.softmax(dim=-1), v)
        return self.proj(out.transpose(1, 2).reshape(-1, self.tokens, self.dim))


class MLP(nn.Module):
    """The encoder's feed-forward block: Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, tokens: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, tokens)
        self.ln2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class VisionTransformer(nn.Module):
    """ViT: patch-embedding conv, class token, learned position embedding, encoder blocks, LayerNorm, head."""

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 32,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_dim: int = 3072,
        num_classes: int = 1000,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of patch size {patch_size}")
        self.dim = dim
        self.num_patches = num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, num_patches + 1, dim).normal_(std=0.02))
        self.blocks = nn.Sequential(
            *(EncoderBlock(dim, heads, mlp_dim, num_patches + 1) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).reshape(-1, self.dim, self.num_patches).transpose(1, 2)  # (B, patches, dim)
        # Prepend the class token and add the position embedding. cat([cls, x]) + pos equals
        # pad(x) + (pos + [cls; 0]); the padded form needs no batch-sized Expand, and the bracket
        # folds into one constant at export, so the ONNX graph is Pad -> Add.
        x = F.pad(x, (0, 0, 1, 0)) + (self.pos_embed + F.pad(self.cls_token, (0, 0, 0, self.num_patches)))
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit_b32() -> VisionTransformer:
    """ViT-B/32 for 224x224 inputs (12 blocks, 12 heads of 64, MLP 3072, 1000 classes, 4.409 GMAC)."""
    return VisionTransformer()
