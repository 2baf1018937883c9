"""TinyViT's attention and blocks rewritten for graph compilers (used only when building a compiled encoder).

TinyViT computes queries, keys and values with one linear layer whose output interleaves them per
head, splits that output, and spells attention out as matmul, bias add, softmax and matmul.
OpenVINO runs the split with a reference (scalar) kernel and the attention as separate nodes;
measured on a 2-core Zen 4 in bf16, 5.5 % of the encoder's time went to the split alone.  Here the
same weights become three linear layers (rows regrouped, nothing recomputed) and one
``scaled_dot_product_attention`` with the relative-position bias as its mask, which OpenVINO fuses:
the whole encoder ran about 1.2x faster than the stock module converted the same way when first measured; on
2026-12-07 (OpenVINO 2026.4, ``bench_export.py``) 0.93-1.0x the stock modules' time.

Each TinyViT block also becomes a :class:`ChannelsLastBlock`: the stock block moves its (batch, tokens, channels)
activations to (batch, channels, H, W) and back around its depthwise convolution with a transpose and a reshape,
and OpenVINO, which runs that convolution channels-last, then adds a layout reorder on each side -- four copies of
the activation per block, 7.6 ms of one 128x128 block's 8.4 ms around a 0.8 ms convolution (OpenVINO's per-node
counters).  Spelled as one 4-D permute each way, OpenVINO runs the copies with cheaper kernels (5.1 ms of 5.9 ms);
on a 2-core Zen 4 in bf16 the encoder takes 0.86-0.98x the time it takes with the stock blocks (1 thread:
0.95x; ``Testing/benchmarks/bench_export.py`` measures the rewrites, alternating in one run).

The arithmetic is the same: in float32 the rewritten encoder matches the stock one to ~4e-6.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F


class SdpaAttention(torch.nn.Module):
    """``tiny_vit_sam.Attention.forward`` (eval mode) as three projections and one fused attention."""

    def __init__(self, attention):
        super().__init__()
        heads, key_dim, value_dim = attention.num_heads, attention.key_dim, attention.d
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim
        self.scale = float(attention.scale)
        self.norm = attention.norm
        self.proj = attention.proj
        # qkv's output is (head, [q | k | v]) per token: regroup its rows into q, k and v.
        weight = attention.qkv.weight.detach().view(heads, 2 * key_dim + value_dim, -1)
        bias = attention.qkv.bias.detach().view(heads, 2 * key_dim + value_dim)
        parts = {"q": slice(0, key_dim), "k": slice(key_dim, 2 * key_dim), "v": slice(2 * key_dim, None)}
        for name, rows in parts.items():
            linear = torch.nn.Linear(weight.shape[-1], heads * weight[:, rows].shape[1])
            with torch.no_grad():
                linear.weight.copy_(weight[:, rows].reshape(linear.out_features, -1))
                linear.bias.copy_(bias[:, rows].reshape(-1))
            setattr(self, name, linear)
        self.register_buffer("bias", attention.attention_biases.detach()[:, attention.attention_bias_idxs].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        x = self.norm(x)
        q = self.q(x).view(batch, tokens, self.heads, self.key_dim).transpose(1, 2)
        k = self.k(x).view(batch, tokens, self.heads, self.key_dim).transpose(1, 2)
        v = self.v(x).view(batch, tokens, self.heads, self.value_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias.to(q.dtype), scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, self.heads * self.value_dim))


class ChannelsLastBlock(torch.nn.Module):
    """``tiny_vit_sam.TinyViTBlock.forward`` (eval mode) with 4-D permutes around its depthwise convolution."""

    def __init__(self, block):
        super().__init__()
        self.height, self.width = block.input_resolution
        self.window = block.window_size
        self.attn, self.local_conv, self.mlp = block.attn, block.local_conv, block.mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width, window = self.height, self.width, self.window
        batch, tokens, channels = x.shape
        shortcut = x
        if height == window and width == window:
            x = self.attn(x)
        else:
            pad_bottom, pad_right = (window - height % window) % window, (window - width % window) % window
            x = x.view(batch, height, width, channels)
            if pad_bottom or pad_right:
                x = F.pad(x, (0, 0, 0, pad_right, 0, pad_bottom))
            rows, cols = (height + pad_bottom) // window, (width + pad_right) // window
            x = x.view(batch, rows, window, cols, window, channels).transpose(2, 3)
            x = self.attn(x.reshape(batch * rows * cols, window * window, channels))
            x = x.view(batch, rows, cols, window, window, channels).transpose(2, 3)
            x = x.reshape(batch, rows * window, cols * window, channels)[:, :height, :width]
            x = x.reshape(batch, tokens, channels)
        x = shortcut + x
        x = self.local_conv(x.view(batch, height, width, channels).permute(0, 3, 1, 2))
        x = x.permute(0, 2, 3, 1).reshape(batch, tokens, channels)
        return x + self.mlp(x)


def _is_tinyvit_block(module) -> bool:
    return type(module).__name__ == "TinyViTBlock" and hasattr(module, "local_conv")


def _is_tinyvit_attention(module) -> bool:
    return type(module).__name__ == "Attention" and hasattr(module, "attention_bias_idxs")


REWRITES = ("attention", "blocks")


def exportable_encoder(encoder: torch.nn.Module, rewrites: tuple[str, ...] = REWRITES) -> torch.nn.Module:
    """A copy of a TinyViT ``encoder`` (BatchNorms folded, stock blocks) with every attention rewritten as
    :class:`SdpaAttention` and every block as :class:`ChannelsLastBlock` (``rewrites``: which of the two; the
    benchmark compares them); other encoders are returned unchanged.  An unknown rewrite name is a
    programming error (only the benchmark passes names), so it raises instead of being skipped."""
    unknown = set(rewrites) - set(REWRITES)
    if unknown:
        raise ValueError(f"unknown encoder rewrite(s) {sorted(unknown)}; known: {', '.join(REWRITES)}")
    if not any(_is_tinyvit_attention(module) for module in encoder.modules()):
        return encoder
    encoder = copy.deepcopy(encoder).eval()
    chosen = {"attention": (SdpaAttention, _is_tinyvit_attention), "blocks": (ChannelsLastBlock, _is_tinyvit_block)}
    for rewrite, matches in (chosen[name] for name in REWRITES if name in rewrites):
        for name in [name for name, module in encoder.named_modules() if matches(module)]:
            parent_name, _, child = name.rpartition(".")
            parent = encoder.get_submodule(parent_name) if parent_name else encoder
            setattr(parent, child, rewrite(getattr(parent, child)))
    return encoder.requires_grad_(False)
