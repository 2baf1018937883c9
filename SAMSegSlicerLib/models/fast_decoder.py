"""SAM's mask decoder, evaluated with the prompt-independent work done once per slice.

The stock decoder recomputes, for every click, everything it derives from the image
embedding.  Part of that does not depend on the prompt: the image tokens with the "no mask"
embedding added, and in the first two-way attention block the key/value projections of the
image for token-to-image attention and the query projection of the image for
image-to-token attention.  :func:`image_context` computes these once per slice, and
:func:`position_tables` what the positional encoding adds to every projection once per
model; :func:`decode` then runs the rest, and computes only the mask tokens that are asked
for (the stock decoder computes all four and throws three away in single-mask mode).

The weights are the stock modules' own, in whatever dtype the decoder module holds (the
model keeps a bfloat16 copy where the CPU or GPU runs bfloat16 natively: matrix products are
2.5-3x faster there); in float32 the result equals the stock decoder's to float rounding
(checked by the tests).  Attention is written out as matrix products laid out so that no
4096-row tensor is transposed or copied per head (see :func:`_token_to_image` and
:func:`_image_to_tokens`): on the CPU ``scaled_dot_product_attention`` and a softmax over a
short last axis are slow for the 4096 x (a few tokens) shapes here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PositionTables:
    """What the positional encoding adds to the decoder's image-side projections, as columns
    (1, n*c, HW): per block (and the final attention) ``pe W_k + b_k`` of token-to-image
    attention, and per block ``pe W_q + b_q`` of image-to-token attention.  They depend on
    the model only, so a model computes them once."""

    pe: torch.Tensor               # (1, HW, C) positional encoding of the image tokens
    key: tuple[torch.Tensor, ...]    # one per block, then the final attention
    query: tuple[torch.Tensor, ...]  # one per block


@dataclass(frozen=True)
class ImageSide:
    """One block's image-side attention inputs for a batch (or 1, shared) of image tokens."""

    k: torch.Tensor     # (B, n*c, HW) token-to-image keys, as columns
    v: torch.Tensor     # (B, HW, n*c) token-to-image values
    q: torch.Tensor     # (B, n, c, HW) image-to-token queries, per head
    base: torch.Tensor  # (B, HW, C) the image tokens plus image-to-token's output bias (the residual)


@dataclass(frozen=True)
class ImageContext:
    image_tokens: torch.Tensor  # (1, HW, C) the image embedding as tokens
    keys: torch.Tensor          # (1, HW, C) image tokens + no-mask dense embedding
    tables: PositionTables
    first: ImageSide            # the first block's image side for ``keys``
    size_hw: tuple[int, int]


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, t, n*c) -> (B, n, t, c)."""
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, n, t, c) -> (B, t, n*c)."""
    b, n, t, c = x.shape
    return x.transpose(1, 2).reshape(b, t, n * c)


def _tokens_to_tokens(attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Self-attention of the few prompt tokens (B, t, C) -> out_proj(...)."""
    q, k, v = _heads(attention.q_proj(q), heads), _heads(attention.k_proj(k), heads), _heads(attention.v_proj(v), heads)
    weights = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(dim=-1)
    return attention.out_proj(_merge(weights @ v))


def _token_to_image(attention, q_tok: torch.Tensor, k_img: torch.Tensor, v_img: torch.Tensor,
                    heads: int) -> torch.Tensor:
    """Token queries (B, t, C) over projected image keys (B or 1, n*c, HW) and values (B or 1, HW, n*c).

    The per-head queries are laid out block-diagonally, (B, n*t, n*c), so that all heads'
    scores are one product with the image rows as they come out of their projection; the
    wanted per-head outputs are the diagonal blocks of one (n*t, n*c) product with the values.
    """
    q = _heads(attention.q_proj(q_tok), heads)                                # (B, n, t, c)
    batch, _, tokens, c = q.shape
    eye = torch.eye(heads, dtype=q.dtype, device=q.device).reshape(1, heads, 1, heads, 1)
    q_blocks = (q.unsqueeze(3) * eye).reshape(batch, heads * tokens, heads * c)
    weights = (q_blocks @ k_img * c ** -0.5).softmax(dim=-1)                  # (B, n*t, HW)
    out = (weights @ v_img).reshape(batch, heads, tokens, heads, c)
    out = torch.diagonal(out, dim1=1, dim2=3)                                  # (B, t, c, n)
    return attention.out_proj(out.permute(0, 1, 3, 2).reshape(batch, tokens, heads * c))


def _image_to_tokens(attention, q_img: torch.Tensor, k_tok: torch.Tensor, v_tok: torch.Tensor, heads: int,
                     base: torch.Tensor) -> torch.Tensor:
    """``base`` + image queries (B or 1, n, c, HW) attending over the prompt tokens' keys and
    values (B, t, C), ``base`` holding the residual and the output projection's bias.

    Scores are laid out (B, n, t, HW) so the softmax runs over the token axis with the image
    axis contiguous; with fewer tokens than head channels the output projection is applied
    per head to the token values first (exact), which replaces the (HW, n*c) x (n*c, C)
    projection by a (HW, n*t) x (n*t, C) one.
    """
    k, v = _heads(attention.k_proj(k_tok), heads), _heads(attention.v_proj(v_tok), heads)  # (B, n, t, c)
    batch, _, tokens, c = k.shape
    weights = (k @ q_img * c ** -0.5).softmax(dim=2)                          # (B, n, t, HW)
    if tokens >= c:
        return base + F.linear(_merge(weights.transpose(-1, -2) @ v), attention.out_proj.weight)
    w_out = attention.out_proj.weight.t().reshape(heads, c, -1)              # (n, c, C)
    values = (v @ w_out).reshape(batch, heads * tokens, -1)                  # (B, n*t, C)
    return torch.baddbmm(base, weights.reshape(batch, heads * tokens, -1).transpose(1, 2), values)


def _columns(linear, keys: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``linear(keys + pe)`` as columns (B, out, HW), ``table`` holding ``linear(pe)`` as columns."""
    return torch.matmul(linear.weight, keys.transpose(1, 2)).add_(table)


def _image_side(block, heads: int, keys: torch.Tensor, key_table: torch.Tensor,
                query_table: torch.Tensor) -> ImageSide:
    """A block's image-side inputs for image tokens ``keys`` (B, HW, C)."""
    t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
    q = _columns(i2t.q_proj, keys, query_table)
    return ImageSide(_columns(t2i.k_proj, keys, key_table), t2i.v_proj(keys),
                     q.reshape(q.shape[0], heads, -1, q.shape[-1]), keys + i2t.out_proj.bias)


def position_tables(mask_decoder, image_pe: torch.Tensor) -> PositionTables:
    """The decoder's :class:`PositionTables` for ``image_pe`` (1, C, h, w), in the decoder's dtype."""
    transformer = mask_decoder.transformer
    dtype = transformer.layers[0].mlp.lin1.weight.dtype
    pe = image_pe.to(dtype).flatten(2).transpose(1, 2).contiguous()

    def columns(linear) -> torch.Tensor:
        return linear(pe).transpose(1, 2).contiguous()

    keys = [block.cross_attn_token_to_image.k_proj for block in transformer.layers]
    keys.append(transformer.final_attn_token_to_image.k_proj)
    queries = [block.cross_attn_image_to_token.q_proj for block in transformer.layers]
    return PositionTables(pe, tuple(columns(k) for k in keys), tuple(columns(q) for q in queries))


def image_context(mask_decoder, prompt_encoder, image_pe: torch.Tensor, embedding: torch.Tensor,
                  tables: PositionTables | None = None) -> ImageContext:
    """Prompt-independent tensors of one slice (``embedding``: (1, C, h, w)); ``tables`` from
    :func:`position_tables` (computed here when not given)."""
    transformer = mask_decoder.transformer
    dtype = transformer.layers[0].mlp.lin1.weight.dtype
    tables = tables if tables is not None else position_tables(mask_decoder, image_pe)
    _, c, h, w = embedding.shape
    dense = prompt_encoder.no_mask_embed.weight.reshape(1, 1, c).to(dtype)
    image_tokens = embedding.to(dtype).flatten(2).transpose(1, 2).contiguous()
    keys = image_tokens + dense
    first = _image_side(transformer.layers[0], transformer.num_heads, keys, tables.key[0], tables.query[0])
    return ImageContext(image_tokens=image_tokens, keys=keys, tables=tables, first=first, size_hw=(h, w))


def _block(block, heads, queries, query_pe, image: ImageSide):
    attention = block.self_attn
    if block.skip_first_layer_pe:
        queries = _tokens_to_tokens(attention, queries, queries, queries, heads)
    else:
        q = queries + query_pe
        queries = queries + _tokens_to_tokens(attention, q, q, queries, heads)
    queries = block.norm1(queries)
    t2i = block.cross_attn_token_to_image
    queries = block.norm2(queries + _token_to_image(t2i, queries + query_pe, image.k, image.v, heads))
    queries = block.norm3(queries + block.mlp(queries))
    i2t = block.cross_attn_image_to_token
    keys = block.norm4(_image_to_tokens(i2t, image.q, queries + query_pe, queries, heads, image.base))
    return queries, keys


def decode(mask_decoder, context: ImageContext, sparse: torch.Tensor, dense: torch.Tensor | None = None,
           multimask: bool = False,
           region: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks (B, M, 4h, 4w) and IoU estimates (B, M) in float32, as the stock ``MaskDecoder.forward``.

    ``dense`` is the mask-prompt embedding (B, C, h, w) or None for "no mask"; with a mask
    prompt the first block's image projections depend on it and are recomputed.

    ``region`` (row0, row1, col0, col1) of the token grid: the masks are upscaled there only
    (the upscaling is token-wise, so the values there are exactly the stock ones) and hold
    that area's lowest logit elsewhere.  Upscaling is a third of the decoder's work, and a
    box-prompted mask does not reach a token beyond the box (see the models README).
    """
    transformer = mask_decoder.transformer
    heads = transformer.num_heads
    dtype = context.keys.dtype
    sparse = sparse.to(dtype)
    batch = sparse.shape[0]
    output_tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse], dim=1)
    tables = context.tables
    if dense is None:
        image = context.first
    else:
        keys = context.image_tokens + dense.to(dtype).flatten(2).transpose(1, 2)
        image = _image_side(transformer.layers[0], heads, keys, tables.key[0], tables.query[0])
    queries = tokens
    for n, block in enumerate(transformer.layers):
        if n:
            image = _image_side(block, heads, keys, tables.key[n], tables.query[n])
        queries, keys = _block(block, heads, queries, tokens, image)
    final = transformer.final_attn_token_to_image
    k_img, v_img = _columns(final.k_proj, keys, tables.key[-1]), final.v_proj(keys)
    queries = transformer.norm_final_attn(queries + _token_to_image(final, queries + tokens, k_img, v_img, heads))

    wanted = range(1, mask_decoder.num_mask_tokens) if multimask else range(0, 1)
    hyper = torch.stack([mask_decoder.output_hypernetworks_mlps[i](queries[:, 1 + i, :]) for i in wanted], dim=1)
    masks = _upscale_and_project(mask_decoder.output_upscaling, keys, hyper, context.size_hw, region)
    iou = mask_decoder.iou_prediction_head(queries[:, 0, :])[:, list(wanted)]
    return masks.float(), iou.float()


def _transposed_conv_as_matmul(conv) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x2 stride-2 ConvTranspose2d as one (C_in, 4*C_out) matrix, outputs ordered (dy, dx, C_out)."""
    c_in, c_out = conv.weight.shape[:2]
    return conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out), conv.bias.repeat(4)


def _upscale_and_project(upscaling, keys: torch.Tensor, hyper: torch.Tensor, size_hw,
                         region: tuple[int, int, int, int] | None) -> torch.Tensor:
    """``hyper @ output_upscaling(keys)`` without materialising the channel-first upscaled image.

    The stock path runs two transposed convolutions (slow on CPU) and reshapes a
    (B, 32, 4h, 4w) tensor; here both are token-wise matrix products in channels-last
    layout, the mask-token projection happens per token, and only the (B, M, 4h, 4w) masks
    are rearranged into pixels.
    """
    conv1, norm, act1, conv2, act2 = upscaling
    full_h, full_w = size_hw
    row0, row1, col0, col1 = region if region is not None else (0, full_h, 0, full_w)
    h, w = row1 - row0, col1 - col0
    if (h, w) != (full_h, full_w):
        keys = keys.reshape(keys.shape[0], full_h, full_w, -1)[:, row0:row1, col0:col1]
    w1, b1 = _transposed_conv_as_matmul(conv1)
    w2, b2 = _transposed_conv_as_matmul(conv2)
    c1, c2 = conv1.weight.shape[1], conv2.weight.shape[1]
    x = torch.addmm(b1, keys.reshape(-1, keys.shape[-1]), w1)               # (B*h*w, 4*c1)
    x = F.layer_norm(x.reshape(-1, c1), (c1,), norm.weight, norm.bias, norm.eps)
    x = act1(x)
    x = act2(torch.addmm(b2, x, w2))                                        # (B*h*w*4, 4*c2)
    batch, masks = keys.shape[0], hyper.shape[1]
    x = x.reshape(batch, h * w * 16, c2)
    if batch != hyper.shape[0]:
        x = x.expand(hyper.shape[0], -1, -1)
    out = torch.bmm(x, hyper.transpose(1, 2))                              # (B, h*w*16, M)
    out = out.reshape(-1, h, w, 2, 2, 2, 2, masks)                         # y, x, dy, dx, ey, ex, M
    out = out.permute(0, 7, 1, 3, 5, 2, 4, 6)                              # B, M, y, dy, ey, x, dx, ex
    out = out.reshape(-1, masks, 4 * h, 4 * w)
    if (h, w) == (full_h, full_w):
        return out
    full = out.amin(dim=(2, 3), keepdim=True).expand(-1, -1, 4 * full_h, 4 * full_w).clone()
    full[..., 4 * row0:4 * row1, 4 * col0:4 * col1] = out
    return full
