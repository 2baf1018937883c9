"""SAM's mask decoder, evaluated with the prompt-independent work done once per slice and the
per-prompt work cut to what the few prompt tokens need.

The stock decoder recomputes, for every click, everything it derives from the image
embedding.  Part of that does not depend on the prompt: the image tokens with the "no mask"
embedding added, and the first two-way attention block's projections of them (the keys and
values of token-to-image attention, the queries of image-to-token attention).
:func:`image_context` computes these once per slice (:class:`ProjectedImage`).  After the
first block the image tokens differ per prompt, and projecting 4096 of them to every
attention's keys, values and queries is most of the stock decoder's work; there
(:class:`RawImage`) each projection is folded into the prompt tokens' side, a few rows,
instead: scores ``q (x W)^T = (q W^T) x^T``, and values projected after the weighted sum.
:func:`decode` computes only the mask tokens that are asked for (the stock decoder computes
all four and throws three away in single-mask mode) and upscales only around the prompt.

The weights are the stock modules' own, in whatever dtype the decoder module holds (the
model keeps a bfloat16 copy where the CPU or GPU runs bfloat16 natively: matrix products are
2.5-3x faster there); in float32 the result equals the stock decoder's to float rounding
(checked by the tests).  Attention is written out as matrix products laid out so that no
4096-row tensor is transposed or copied per head: on the CPU ``scaled_dot_product_attention``
and a softmax over a short last axis are slow for the 4096 x (a few tokens) shapes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ProjectedImage:
    """Image tokens that every prompt of a batch shares (a slice's own, no mask prompt), with one
    block's image-side projections done once per slice."""

    k: torch.Tensor     # (B or 1, n*c, HW) token-to-image keys, as columns
    v: torch.Tensor     # (B or 1, HW, n*c) token-to-image values
    q: torch.Tensor     # (B or 1, n, c, HW) image-to-token queries, per head
    base: torch.Tensor  # (B or 1, HW, C) the image tokens plus image-to-token's output bias (the residual)

    def token_to_image(self, attention, q_tok: torch.Tensor, heads: int) -> torch.Tensor:
        """Token queries (B, t, C) over the projected image.

        The per-head queries are laid out block-diagonally so that all heads' scores are one
        product with the image rows as they come out of their projection; the wanted per-head
        outputs are the diagonal blocks of one (n*t, n*c) product with the values.
        """
        q = _heads(attention.q_proj(q_tok), heads)                            # (B, n, t, c)
        batch, _, tokens, c = q.shape
        weights = _matmul(_block_diagonal(q * c ** -0.5), self.k).softmax(dim=-1)  # (B, n*t, HW)
        out = _matmul(weights, self.v).reshape(batch, heads, tokens, heads, c)
        out = torch.diagonal(out, dim1=1, dim2=3)                              # (B, t, c, n)
        return attention.out_proj(out.permute(0, 1, 3, 2).reshape(batch, tokens, heads * c))

    def image_to_tokens(self, attention, k_tok: torch.Tensor, v_tok: torch.Tensor, heads: int) -> torch.Tensor:
        """The residual plus the projected image's queries attending over the prompt tokens'
        keys and values (B, t, C); see :func:`_attend_tokens`."""
        k = _heads(attention.k_proj(k_tok), heads)                            # (B, n, t, c)
        c = k.shape[-1]
        weights = (k * c ** -0.5 @ self.q).softmax(dim=2)                     # (B, n, t, HW)
        return _attend_tokens(attention, weights, _heads(attention.v_proj(v_tok), heads), self.base)


@dataclass(frozen=True)
class RawImage:
    """Image tokens (B, HW, C) that differ per prompt, with no projection computed: each
    attention's image-side projection is folded into the few prompt tokens' operands instead
    (exact algebra), which halves the decoder's per-prompt matrix work after the first block."""

    tokens: torch.Tensor   # (B, HW, C)
    with_pe: torch.Tensor  # (B, HW, C) the tokens plus the image positional encoding

    @classmethod
    def of(cls, tokens: torch.Tensor, pe: torch.Tensor) -> RawImage:
        return cls(tokens, tokens + pe)

    def token_to_image(self, attention, q_tok: torch.Tensor, heads: int) -> torch.Tensor:
        """Token queries (B, t, C) over the image: head h's scores are ``(q_h W_k,h) (x + pe)^T``
        (the key bias adds a constant to each query's scores, which the softmax over the image
        drops), and the value projection follows the weighted sum of the image tokens (the
        weights sum to 1)."""
        q = _heads(attention.q_proj(q_tok), heads)                            # (B, n, t, c)
        batch, _, tokens, c = q.shape
        folded = _per_head(q * c ** -0.5, attention.k_proj.weight.reshape(heads, c, -1))  # (B, n*t, C)
        weights = torch.bmm(folded, self.with_pe.transpose(1, 2)).softmax(dim=-1)  # (B, n*t, HW)
        summed = torch.bmm(weights, self.tokens).reshape(batch, heads, tokens, -1)
        out = _per_head(summed, attention.v_proj.weight.reshape(heads, c, -1).transpose(1, 2))
        out = out.reshape(batch, heads, tokens, c) + attention.v_proj.bias.reshape(1, heads, 1, c)
        return attention.out_proj(_merge(out))

    def image_to_tokens(self, attention, k_tok: torch.Tensor, v_tok: torch.Tensor, heads: int) -> torch.Tensor:
        """``tokens`` plus the image attending over the prompt tokens: head h's scores are
        ``(x + pe) (k_h W_q,h)^T + k_h . b_q,h``; see :func:`_attend_tokens`."""
        k = _heads(attention.k_proj(k_tok), heads)                            # (B, n, t, c)
        batch, _, tokens, c = k.shape
        k = k * c ** -0.5
        folded = _per_head(k, attention.q_proj.weight.reshape(heads, c, -1))  # (B, n*t, C)
        scores = torch.bmm(folded, self.with_pe.transpose(1, 2)).reshape(batch, heads, tokens, -1)
        bias = (k * attention.q_proj.bias.reshape(1, heads, 1, c)).sum(dim=-1, keepdim=True)
        weights = scores.add_(bias).softmax(dim=2)                            # (B, n, t, HW)
        return _attend_tokens(attention, weights, _heads(attention.v_proj(v_tok), heads),
                              self.tokens, attention.out_proj.bias)


@dataclass(frozen=True)
class ImageContext:
    image_tokens: torch.Tensor  # (1, HW, C) the image embedding as tokens
    pe: torch.Tensor            # (1, HW, C) the image positional encoding
    first: ProjectedImage       # the first block's projections of the image with the no-mask embedding
    size_hw: tuple[int, int]


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, t, n*c) -> (B, n, t, c)."""
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, n, t, c) -> (B, t, n*c)."""
    b, n, t, c = x.shape
    return x.transpose(1, 2).reshape(b, t, n * c)


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, r, k) @ (B or 1, k, m); a shared right factor takes every row of ``a`` in one product."""
    if b.shape[0] == 1:
        return (a.reshape(-1, a.shape[-1]) @ b[0]).reshape(a.shape[0], a.shape[1], -1)
    return torch.bmm(a, b)


def _per_head(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Each head's rows (B, n, t, k) times that head's matrix (n, k, m), as (B, n*t, m)."""
    batch, heads, tokens, k = x.shape
    out = torch.bmm(x.transpose(0, 1).reshape(heads, batch * tokens, k), w)  # (n, B*t, m)
    return out.reshape(heads, batch, tokens, -1).transpose(0, 1).reshape(batch, heads * tokens, -1)


def _block_diagonal(x: torch.Tensor) -> torch.Tensor:
    """Per-head rows (B, n, t, c) laid out block-diagonally, (B, n*t, n*c): head h's rows hold
    its c channels at columns h*c.., zeros elsewhere."""
    batch, heads, tokens, c = x.shape
    eye = torch.eye(heads, dtype=x.dtype, device=x.device).reshape(1, heads, 1, heads, 1)
    return (x.unsqueeze(3) * eye).reshape(batch, heads * tokens, heads * c)


def _tokens_to_tokens(attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Self-attention of the few prompt tokens (B, t, C) -> out_proj(...)."""
    q, k, v = _heads(attention.q_proj(q), heads), _heads(attention.k_proj(k), heads), _heads(attention.v_proj(v), heads)
    weights = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(dim=-1)
    return attention.out_proj(_merge(weights @ v))


def _attend_tokens(attention, weights: torch.Tensor, v: torch.Tensor, residual: torch.Tensor,
                   out_bias: torch.Tensor | None = None) -> torch.Tensor:
    """``residual`` + out_proj of the image's attention over the prompt tokens, from the weights
    (B, n, t, HW) (a softmax over the token axis, the image axis contiguous) and the token
    values (B, n, t, c); ``out_bias`` None: ``residual`` already holds the output bias.

    With fewer tokens than head channels the output projection is applied per head to the
    token values first (exact), which replaces the (HW, n*c) x (n*c, C) projection by a
    (HW, n*t) x (n*t, C) one; the bias is then shared out over the heads (each head's weights
    sum to 1).
    """
    batch, heads, tokens, c = v.shape
    if tokens >= c:
        out = F.linear(_merge(weights.transpose(-1, -2) @ v), attention.out_proj.weight, out_bias)
        return residual + out
    values = _per_head(v, attention.out_proj.weight.t().reshape(heads, c, -1))  # (B, n*t, C)
    if out_bias is not None:
        values = values + out_bias / heads
    return torch.baddbmm(residual.expand(batch, -1, -1), weights.reshape(batch, heads * tokens, -1).transpose(1, 2),
                         values)


def project_image(block, heads: int, tokens: torch.Tensor, pe: torch.Tensor) -> ProjectedImage:
    """A block's :class:`ProjectedImage` of image tokens (B, HW, C) with positional encoding ``pe``."""
    t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
    with_pe = tokens + pe
    q = i2t.q_proj(with_pe).transpose(1, 2)                                    # (B, n*c, HW)
    return ProjectedImage(t2i.k_proj(with_pe).transpose(1, 2).contiguous(), t2i.v_proj(tokens),
                          q.reshape(q.shape[0], heads, -1, q.shape[-1]).contiguous(), tokens + i2t.out_proj.bias)


def image_context(mask_decoder, prompt_encoder, image_pe: torch.Tensor, embedding: torch.Tensor) -> ImageContext:
    """Prompt-independent tensors of one slice (``embedding``: (1, C, h, w)) in the decoder's dtype."""
    transformer = mask_decoder.transformer
    dtype = transformer.layers[0].mlp.lin1.weight.dtype
    _, c, h, w = embedding.shape
    pe = image_pe.to(dtype).flatten(2).transpose(1, 2).contiguous()
    dense = prompt_encoder.no_mask_embed.weight.reshape(1, 1, c).to(dtype)
    image_tokens = embedding.to(dtype).flatten(2).transpose(1, 2).contiguous()
    first = project_image(transformer.layers[0], transformer.num_heads, image_tokens + dense, pe)
    return ImageContext(image_tokens=image_tokens, pe=pe, first=first, size_hw=(h, w))


def _block(block, heads, queries, query_pe, image):
    attention = block.self_attn
    if block.skip_first_layer_pe:
        queries = _tokens_to_tokens(attention, queries, queries, queries, heads)
    else:
        q = queries + query_pe
        queries = queries + _tokens_to_tokens(attention, q, q, queries, heads)
    queries = block.norm1(queries)
    t2i = block.cross_attn_token_to_image
    queries = block.norm2(queries + image.token_to_image(t2i, queries + query_pe, heads))
    queries = block.norm3(queries + block.mlp(queries))
    i2t = block.cross_attn_image_to_token
    keys = block.norm4(image.image_to_tokens(i2t, queries + query_pe, queries, heads))
    return queries, keys


def decode(mask_decoder, context: ImageContext, sparse: torch.Tensor, dense: torch.Tensor | None = None,
           multimask: bool = False,
           regions: Sequence[tuple[int, int, int, int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks (B, M, 4h, 4w) and IoU estimates (B, M) in float32, as the stock ``MaskDecoder.forward``.

    ``dense`` is the mask-prompt embedding (B, C, h, w) or None for "no mask"; with a mask
    prompt the first block's image projections depend on it and are recomputed.

    ``regions``: one (row0, row1, col0, col1) of the token grid per prompt: its masks are
    upscaled there only (the upscaling is token-wise, so the values there are exactly the
    stock ones) and hold that area's lowest logit elsewhere.  Upscaling the whole grid costs
    more than the rest of the decoder, and a box-prompted mask does not reach a token beyond
    the box (measured: see the README, *Latency*).
    """
    transformer = mask_decoder.transformer
    heads = transformer.num_heads
    dtype = context.image_tokens.dtype
    sparse = sparse.to(dtype)
    batch = sparse.shape[0]
    output_tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse], dim=1)
    if dense is None:
        image = context.first
    else:
        image = RawImage.of(context.image_tokens + dense.to(dtype).flatten(2).transpose(1, 2), context.pe)
    queries, keys = _block(transformer.layers[0], heads, tokens, tokens, image)
    for block in transformer.layers[1:]:
        queries, keys = _block(block, heads, queries, tokens, RawImage.of(keys, context.pe))
    final = RawImage.of(keys, context.pe).token_to_image(transformer.final_attn_token_to_image,
                                                          queries + tokens, heads)
    queries = transformer.norm_final_attn(queries + final)

    wanted = range(1, mask_decoder.num_mask_tokens) if multimask else range(0, 1)
    hyper = torch.stack([mask_decoder.output_hypernetworks_mlps[i](queries[:, 1 + i, :]) for i in wanted], dim=1)
    masks = _upscale_and_project(mask_decoder.output_upscaling, keys, hyper, context.size_hw, regions)
    iou = mask_decoder.iou_prediction_head(queries[:, 0, :])[:, list(wanted)]
    return masks.float(), iou.float()


def _transposed_conv_as_matmul(conv) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x2 stride-2 ConvTranspose2d as one (C_in, 4*C_out) matrix, outputs ordered (dy, dx, C_out)."""
    c_in, c_out = conv.weight.shape[:2]
    return conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out), conv.bias.repeat(4)


def _upscale_and_project(upscaling, keys: torch.Tensor, hyper: torch.Tensor, size_hw,
                         regions: Sequence[tuple[int, int, int, int]] | None) -> torch.Tensor:
    """``hyper @ output_upscaling(keys)`` (B, M, 4h, 4w) without materialising the channel-first
    upscaled image, computed only in each prompt's own token region (all of the grid without).

    The stock path runs two transposed convolutions (slow on CPU) and reshapes a
    (B, 32, 4h, 4w) tensor; here both are token-wise matrix products in channels-last layout
    over the regions' tokens of all prompts at once, the mask-token projection happens per
    token, and only the masks are rearranged into pixels.
    """
    conv1, norm, act1, conv2, act2 = upscaling
    full_h, full_w = size_hw
    batch, masks = hyper.shape[:2]
    regions = regions if regions is not None else [(0, full_h, 0, full_w)] * batch
    grid = keys.reshape(batch, full_h, full_w, -1)
    tokens = torch.cat([grid[b, r0:r1, c0:c1].reshape(-1, grid.shape[-1])
                        for b, (r0, r1, c0, c1) in enumerate(regions)])
    w1, b1 = _transposed_conv_as_matmul(conv1)
    w2, b2 = _transposed_conv_as_matmul(conv2)
    c1, c2 = conv1.weight.shape[1], conv2.weight.shape[1]
    x = torch.addmm(b1, tokens, w1)                                         # (N, 4*c1)
    x = act1(F.layer_norm(x.reshape(-1, c1), (c1,), norm.weight, norm.bias, norm.eps))
    x = act2(torch.addmm(b2, x, w2)).reshape(-1, c2)                        # (N*16, c2)
    full = torch.empty((batch, masks, 4 * full_h, 4 * full_w), dtype=x.dtype, device=x.device)
    start = 0
    for b, (r0, r1, c0, c1) in enumerate(regions):
        h, w = r1 - r0, c1 - c0
        out = x[start:start + h * w * 16] @ hyper[b].t()                   # (h*w*16, M)
        start += h * w * 16
        out = out.reshape(h, w, 2, 2, 2, 2, masks)                         # y, x, dy, dx, ey, ex, M
        out = out.permute(6, 0, 2, 4, 1, 3, 5).reshape(masks, 4 * h, 4 * w)  # M, y, dy, ey, x, dx, ex
        if (h, w) != (full_h, full_w):
            full[b] = out.amin(dim=(1, 2), keepdim=True)
        full[b, :, 4 * r0:4 * r1, 4 * c0:4 * c1] = out
    return full
