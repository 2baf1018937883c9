"""The fused TinyViT convolution blocks compute what the stock blocks compute, on the real LiteMedSAM weights."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from SAMSegSlicerLib.models import load_model, resolve_spec
from SAMSegSlicerLib.models.tinyvit_fast import FusedMBConv, fuse_mbconv_blocks

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN on the CPU")


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.float() - expected).norm() / expected.norm())


def test_fused_fp32_equals_stock(stock_encoder, ct_input):
    fused = copy.deepcopy(stock_encoder)
    assert fuse_mbconv_blocks(fused, "fp32") == 2
    with torch.inference_mode():
        assert _relative_error(fused(ct_input), stock_encoder(ct_input)) < 1e-4


def test_fused_bf16_is_as_close_to_fp32_as_stock_bf16(stock_encoder, ct_input):
    fused = copy.deepcopy(stock_encoder)
    assert fuse_mbconv_blocks(fused, "bf16") == 2
    with torch.inference_mode():
        exact = stock_encoder(ct_input)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            stock_error = _relative_error(stock_encoder(ct_input), exact)
            fused_error = _relative_error(fused(ct_input), exact)
    assert fused_error < 0.08
    assert abs(fused_error - stock_error) < 0.01


def test_unsupported_precision_keeps_stock_blocks(stock_encoder):
    encoder = copy.deepcopy(stock_encoder)
    assert fuse_mbconv_blocks(encoder, "fp16") == 0
    assert not any(isinstance(m, FusedMBConv) for m in encoder.modules())


def test_load_model_fuses_on_cpu():
    model = load_model(resolve_spec("litemedsam"), device="cpu", precision="fp32")
    assert sum(isinstance(m, FusedMBConv) for m in model.image_encoder.modules()) == 2
    embedding = model.encode([np.linspace(0, 1, 300 * 200, dtype=np.float32).reshape(300, 200)])
    assert embedding.shape == (1, 256, 64, 64) and np.isfinite(embedding).all()
