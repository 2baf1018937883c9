"""The fused TinyViT convolution blocks compute what the stock blocks compute, on the real LiteMedSAM weights."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from SAMSegSlicerLib.models import load_model, resolve_spec
from SAMSegSlicerLib.models.download import checkpoint_path
from SAMSegSlicerLib.models.sam_model import _build_network, _fuse_conv_bn, _load_state
from SAMSegSlicerLib.models.tinyvit_fast import FusedMBConv, fuse_mbconv_blocks
from SAMSegSlicerLib.window import resolve_window

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN on the CPU")


@pytest.fixture(scope="module")
def stock_encoder():
    """LiteMedSAM's encoder with BatchNorms folded but the stock MBConv blocks, fp32, on the CPU."""
    spec = resolve_spec("litemedsam")
    path = checkpoint_path(spec)
    network, _ = _build_network(spec, _load_state(path, spec), path)
    _fuse_conv_bn(network.image_encoder)
    return network.image_encoder.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def ct_input(ct3mm):
    """A real abdominal CT slice as the encoder's (1, 3, 256, 256) input."""
    window = resolve_window("auto", ct3mm.voxels_kji, ct3mm.modality)
    image = window.apply(ct3mm.axes("axial").take(ct3mm.voxels_kji, 60))
    tensor = torch.nn.functional.interpolate(torch.from_numpy(image)[None, None], size=(256, 256), mode="bilinear",
                                             align_corners=False)
    return tensor.expand(1, 3, 256, 256).contiguous(memory_format=torch.channels_last)


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
