"""SAM's mask decoder, evaluated with the prompt-independent work done once per slice.

The stock decoder recomputes, for every click, everything it derives from the image
embedding.  Part of that does not depend on the prompt: the image tokens with the "no mask"
embedding added, and in the first two-way attention block the key/value projections of the
image for token-to-image attention and the query projection of the image for
image-to-token attention.  :func:`image_context` computes these once per slice;
:func:`decode` then runs the rest, and computes only the mask tokens that are asked for
(the stock decoder computes all four and throws three away in single-mask mode).

The weights are the stock modules' own; the result equals the stock decoder's to float
rounding (checked by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageContext:
    image_tokens: torch.Tensor  # (1, HW, C) the image embedding as tokens
    keys: torch.Tensor          # (1, HW, C) image tokens + no-mask dense embedding
    pe: torch.Tensor            # (1, HW, C) positional encoding of the image tokens
    token_to_image_k: torch.Tensor  # (1, heads, HW, c) first block, projected keys
    token_to_image_v: torch.Tensor  # (1, heads, HW, c) first block, projected values
    image_to_token_q: torch.Tensor  # (1, heads, HW, c) first block, projected image queries
    size_hw: tuple[int, int]


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, n, t, c = x.shape
    return x.transpose(1, 2).reshape(b, t, n * c)


def _attend(attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Multi-head attention on already projected, head-separated q, k, v; returns out_proj(...)."""
    out = F.scaled_dot_product_attention(q, k, v)
    return attention.out_proj(_merge(out))


def _project(linear, x: torch.Tensor, heads: int) -> torch.Tensor:
    return _heads(linear(x), heads)


def image_context(mask_decoder, prompt_encoder, image_pe: torch.Tensor, embedding: torch.Tensor) -> ImageContext:
    """Prompt-independent tensors of one slice (``embedding``: (1, C, h, w))."""
    block = mask_decoder.transformer.layers[0]
    heads = mask_decoder.transformer.num_heads
    _, c, h, w = embedding.shape
    dense = prompt_encoder.no_mask_embed.weight.reshape(1, c, 1, 1)
    image_tokens = embedding.flatten(2).transpose(1, 2)
    keys = image_tokens + dense.flatten(2).transpose(1, 2)
    pe = image_pe.flatten(2).transpose(1, 2)
    keys_pe = keys + pe
    t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
    return ImageContext(
        image_tokens=image_tokens, keys=keys, pe=pe,
        token_to_image_k=_project(t2i.k_proj, keys_pe, heads),
        token_to_image_v=_project(t2i.v_proj, keys, heads),
        image_to_token_q=_project(i2t.q_proj, keys_pe, heads),
        size_hw=(h, w),
    )


def _block(block, heads, queries, keys, query_pe, key_pe, context: ImageContext | None):
    if block.skip_first_layer_pe:
        queries = _attend(block.self_attn, *(_project(p, queries, heads) for p in
                                               (block.self_attn.q_proj, block.self_attn.k_proj,
                                                block.self_attn.v_proj)))
    else:
        q = queries + query_pe
        queries = queries + _attend(block.self_attn, _project(block.self_attn.q_proj, q, heads),
                                    _project(block.self_attn.k_proj, q, heads),
                                    _project(block.self_attn.v_proj, queries, heads))
    queries = block.norm1(queries)

    t2i = block.cross_attn_token_to_image
    if context is not None:
        k_img, v_img = context.token_to_image_k, context.token_to_image_v
    else:
        k_img, v_img = _project(t2i.k_proj, keys + key_pe, heads), _project(t2i.v_proj, keys, heads)
    q_tok = _project(t2i.q_proj, queries + query_pe, heads)
    if k_img.shape[0] != q_tok.shape[0]:
        k_img, v_img = k_img.expand(q_tok.shape[0], -1, -1, -1), v_img.expand(q_tok.shape[0], -1, -1, -1)
    queries = block.norm2(queries + _attend(t2i, q_tok, k_img, v_img))
    queries = block.norm3(queries + block.mlp(queries))

    i2t = block.cross_attn_image_to_token
    q_img = context.image_to_token_q if context is not None else _project(i2t.q_proj, keys + key_pe, heads)
    tokens = queries + query_pe
    k_tok, v_tok = _project(i2t.k_proj, tokens, heads), _project(i2t.v_proj, queries, heads)
    if q_img.shape[0] != k_tok.shape[0]:
        q_img = q_img.expand(k_tok.shape[0], -1, -1, -1)
    keys = block.norm4(keys + _attend(i2t, q_img, k_tok, v_tok))
    return queries, keys


def decode(mask_decoder, context: ImageContext, sparse: torch.Tensor, dense: torch.Tensor | None = None,
           multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks (B, M, 4h, 4w) and IoU estimates (B, M), as the stock ``MaskDecoder.forward``.

    ``dense`` is the mask-prompt embedding (B, C, h, w) or None for "no mask"; with a mask
    prompt the first block's image projections depend on it and are recomputed.
    """
    transformer = mask_decoder.transformer
    heads = transformer.num_heads
    batch = sparse.shape[0]
    output_tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse], dim=1)
    if dense is None:
        keys, first_context = context.keys, context
    else:
        keys, first_context = context.image_tokens + dense.flatten(2).transpose(1, 2), None
    queries = tokens
    for n, block in enumerate(transformer.layers):
        queries, keys = _block(block, heads, queries, keys, tokens, context.pe, first_context if n == 0 else None)
    final = transformer.final_attn_token_to_image
    k_img = _project(final.k_proj, keys + context.pe, heads)
    v_img = _project(final.v_proj, keys, heads)
    q_tok = _project(final.q_proj, queries + tokens, heads)
    if k_img.shape[0] != q_tok.shape[0]:
        k_img, v_img = k_img.expand(batch, -1, -1, -1), v_img.expand(batch, -1, -1, -1)
    queries = transformer.norm_final_attn(queries + _attend(final, q_tok, k_img, v_img))

    wanted = range(1, mask_decoder.num_mask_tokens) if multimask else range(0, 1)
    hyper = torch.stack([mask_decoder.output_hypernetworks_mlps[i](queries[:, 1 + i, :]) for i in wanted], dim=1)
    masks = _upscale_and_project(mask_decoder.output_upscaling, keys, hyper, context.size_hw)
    iou = mask_decoder.iou_prediction_head(queries[:, 0, :])[:, list(wanted)]
    return masks, iou


def _transposed_conv_as_matmul(conv) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x2 stride-2 ConvTranspose2d as one (C_in, 4*C_out) matrix, outputs ordered (dy, dx, C_out)."""
    c_in, c_out = conv.weight.shape[:2]
    return conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out), conv.bias.repeat(4)


def _upscale_and_project(upscaling, keys: torch.Tensor, hyper: torch.Tensor, size_hw) -> torch.Tensor:
    """``hyper @ output_upscaling(keys)`` without materialising the channel-first upscaled image.

    The stock path runs two transposed convolutions (slow on CPU) and reshapes a
    (B, 32, 4h, 4w) tensor; here both are token-wise matrix products in channels-last
    layout, the mask-token projection happens per token, and only the (B, M, 4h, 4w) masks
    are rearranged into pixels.
    """
    conv1, norm, act1, conv2, act2 = upscaling
    h, w = size_hw
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
    return out.reshape(-1, masks, 4 * h, 4 * w)
