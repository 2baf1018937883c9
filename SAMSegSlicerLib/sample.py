"""The demo's sample volume: a public CT downloaded once (checksum-verified), or a phantom made by code.

The sample is TotalSegmentator's example CT (Apache-2.0): a 3 mm whole-trunk scan.  Offline,
or when the download does not match its checksum, :func:`phantom_ct` makes a CT-like volume
with a bright ellipsoid "organ" instead, and the caller says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DownloadError, OutputError
from .models.download import CHUNK, checksum_matches
from .output import write_verified
from .paths import sample_data_dir
from .volume import Volume

SAMPLE_URL = "https://github.com/wasserth/TotalSegmentator/raw/master/tests/reference_files/example_ct.nii.gz"
SAMPLE_FILE = "totalsegmentator_example_ct.nii.gz"
SAMPLE_CHECKSUM = "sha256:dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1"
# The liver on its largest axial slice of the sample, as two box corners in RAS millimetres.
SAMPLE_BOX_RAS = ((134.0, 254.3, 412.3), (-52.0, 92.3, 412.3))


@dataclass(frozen=True)
class DemoCase:
    volume: Volume | None
    path: Path | None
    box_ras: tuple[tuple[float, float, float], tuple[float, float, float]]
    what: str


def download_sample(timeout_s: float = 30.0) -> Path:
    """The sample CT's local path, downloading it once; raises :class:`DownloadError` offline."""
    import urllib.error
    import urllib.request

    target = sample_data_dir() / SAMPLE_FILE
    if target.is_file() and checksum_matches(target, SAMPLE_CHECKSUM):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    def write_to(tmp_path: Path) -> None:
        try:
            with urllib.request.urlopen(SAMPLE_URL, timeout=timeout_s) as response, open(tmp_path, "wb") as out:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
        except (urllib.error.URLError, TimeoutError) as error:
            raise DownloadError(f"could not download the sample CT ({getattr(error, 'reason', error)})", SAMPLE_URL,
                                "check the network") from None

    def problem_with(tmp_path: Path) -> str | None:
        return None if checksum_matches(tmp_path, SAMPLE_CHECKSUM) else "the sample CT does not match its checksum"

    try:
        return write_verified(target, write_to, problem_with)
    except OutputError as error:
        raise DownloadError(f"could not store the sample CT ({error.what})", str(target), "try again later") from None


def phantom_ct(shape_kji: tuple[int, int, int] = (48, 128, 128), spacing_mm: float = 3.0,
               seed: int = 0) -> tuple[Volume, np.ndarray]:
    """A CT-like phantom (air, body, spine, one bright ellipsoid organ) and the organ's mask."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape_kji), indexing="ij")
    nk, nj, ni = shape_kji
    body = ((i - ni / 2) / (0.42 * ni)) ** 2 + ((j - nj / 2) / (0.34 * nj)) ** 2 <= 1
    organ = ((i - 0.38 * ni) / (0.13 * ni)) ** 2 + ((j - 0.45 * nj) / (0.11 * nj)) ** 2 + \
            ((k - nk / 2) / (0.3 * nk)) ** 2 <= 1
    spine = ((i - ni / 2) / (0.06 * ni)) ** 2 + ((j - 0.72 * nj) / (0.06 * nj)) ** 2 <= 1
    voxels = np.full(shape_kji, -1000.0, dtype=np.float32)
    voxels[body] = 30.0
    voxels[organ] = 130.0
    voxels[spine] = 700.0
    voxels += rng.normal(0.0, 12.0, size=shape_kji).astype(np.float32)
    ijk_to_ras = np.diag([-spacing_mm, -spacing_mm, spacing_mm, 1.0])
    return Volume(voxels.astype(np.int16), ijk_to_ras, source="phantom", modality="CT"), organ


def phantom_case() -> DemoCase:
    volume, organ = phantom_ct()
    index = organ.shape[0] // 2
    _, rows, cols = np.nonzero(organ[index:index + 1])
    corners_ijk = np.array([[cols.min(), rows.min(), index], [cols.max(), rows.max(), index]], dtype=float)
    corners_ras = volume.ijk_to_ras_points(corners_ijk)
    return DemoCase(volume, None, (tuple(corners_ras[0]), tuple(corners_ras[1])), "a phantom CT made by code")
