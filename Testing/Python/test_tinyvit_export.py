"""The encoder rewritten for graph compilers computes what the stock encoder computes, on the real LiteMedSAM
weights and a real CT slice; the rewrites (``tinyvit_export``) are what ``samseg models prepare`` compiles."""

from __future__ import annotations

import pytest
import torch
from test_compiled_encoder import SMALL_VIT
from test_tinyvit_fast import _relative_error

from SAMSegSlicerLib.models.sam_model import build_sam_from_architecture
from SAMSegSlicerLib.models.tinyvit_export import ChannelsLastBlock, SdpaAttention, exportable_encoder


@pytest.mark.parametrize("rewrites", [("attention",), ("blocks",), ("attention", "blocks")])
def test_each_rewrite_computes_what_the_stock_encoder_computes(stock_encoder, ct_input, rewrites):
    rewritten = exportable_encoder(stock_encoder, rewrites)
    blocks = [m for m in rewritten.modules() if isinstance(m, ChannelsLastBlock)]
    attentions = [m for m in rewritten.modules() if isinstance(m, SdpaAttention)]
    assert (len(blocks), len(attentions)) == (10 if "blocks" in rewrites else 0, 10 if "attention" in rewrites else 0)
    with torch.inference_mode():
        assert _relative_error(rewritten(ct_input), stock_encoder(ct_input)) < 1e-5


def test_the_stock_encoder_is_left_as_it_was(stock_encoder, ct_input):
    with torch.inference_mode():
        before = stock_encoder(ct_input)
        exportable_encoder(stock_encoder)
        assert torch.equal(stock_encoder(ct_input), before)
    assert not any(isinstance(m, (ChannelsLastBlock, SdpaAttention)) for m in stock_encoder.modules())


def test_an_encoder_that_is_not_tinyvit_is_returned_unchanged():
    encoder = build_sam_from_architecture(SMALL_VIT).image_encoder
    assert exportable_encoder(encoder) is encoder


def test_an_unknown_rewrite_name_is_refused_not_skipped(stock_encoder):
    with pytest.raises(ValueError, match="unknown encoder rewrite.*'block'"):
        exportable_encoder(stock_encoder, ("attention", "block"))
