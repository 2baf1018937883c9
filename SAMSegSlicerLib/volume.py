"""Volumes: a voxel array with its geometry, read from NIfTI/NRRD/MHA/MHD/DICOM, and label maps written back.

The voxel array is never modified after loading (it is made read-only); intensity windowing
(:mod:`.window`) always makes a new array.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import InputError, OutputError
from .geometry import AXES, SliceAxes, apply_affine, check_axis, slice_axes
from .output import write_verified

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
MIN_SLICE_SIDE = 2
DICOM_MODALITY_TAG = "0008|0060"
DICOM_POSITION_TAG = "0020|0032"
DICOM_ORIENTATION_TAG = "0020|0037"


@dataclass(frozen=True, eq=False)
class Volume:
    """A scalar 3-D image: ``voxels_kji`` (read-only) and the 4x4 ``ijk_to_ras`` matrix."""

    voxels_kji: np.ndarray
    ijk_to_ras: np.ndarray
    source: str = ""
    modality: str | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.voxels_kji.ndim != 3:
            raise InputError(f"expected a 3-D voxel array, got {self.voxels_kji.ndim}-D", self.source or None)
        if self.voxels_kji.dtype.kind == "f":
            voxels, note = finite_voxels(self.voxels_kji, self.source)
            object.__setattr__(self, "voxels_kji", voxels)
            object.__setattr__(self, "notes", (*self.notes, note) if note else self.notes)
        self.voxels_kji.setflags(write=False)
        self.ijk_to_ras.setflags(write=False)  # the content hash and the slice axes are computed once

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        k, j, i = self.voxels_kji.shape
        return (i, j, k)

    @property
    def spacing_ijk(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0))

    @cached_property
    def content_hash(self) -> str:
        """Signature of the voxels and geometry: the embedding cache's volume key."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(str((self.voxels_kji.dtype.str, self.voxels_kji.shape)).encode())
        digest.update(np.ascontiguousarray(self.voxels_kji).tobytes())
        digest.update(np.round(np.asarray(self.ijk_to_ras, dtype=float), 6).tobytes())
        return digest.hexdigest()

    @cached_property
    def _slice_axes(self) -> dict[str, SliceAxes]:
        return {axis: slice_axes(self.ijk_to_ras, self.shape_ijk, axis) for axis in AXES}

    def axes(self, axis: str) -> SliceAxes:
        """The :class:`SliceAxes` of ``axis`` (computed once: a session asks for them on every prompt)."""
        check_axis(axis)
        return self._slice_axes[axis]

    def ras_to_ijk(self, point_ras: np.ndarray) -> np.ndarray:
        return apply_affine(np.linalg.inv(self.ijk_to_ras), point_ras)

    def ijk_to_ras_points(self, point_ijk: np.ndarray) -> np.ndarray:
        return apply_affine(self.ijk_to_ras, point_ijk)

    def describe(self) -> dict:
        """What ``samseg info`` prints."""
        axes = {a: self.axes(a) for a in AXES}
        return {
            "source": self.source,
            "modality": self.modality or "unknown",
            "shape_ijk": list(self.shape_ijk),
            "spacing_mm": [round(s, 4) for s in self.spacing_ijk],
            "origin_ras": [round(float(v), 4) for v in self.ijk_to_ras[:3, 3]],
            "dtype": str(self.voxels_kji.dtype),
            "intensity_range": [float(self.voxels_kji.min()), float(self.voxels_kji.max())],
            "slices": {a: {"count": ax.n_slices, "shape_rc": list(ax.slice_shape)} for a, ax in axes.items()},
            "notes": list(self.notes),
        }


def finite_voxels(voxels: np.ndarray, source: str = "") -> tuple[np.ndarray, str | None]:
    """``voxels`` with every NaN or infinite value replaced by the smallest finite one (a new array;
    padding of resampled images is often NaN), and the note that says so; ``voxels`` itself when all
    are finite."""
    finite = np.isfinite(voxels)
    if finite.all():
        return voxels, None
    if not finite.any():
        raise InputError("image holds no finite voxel value (all NaN or infinite)", source or None,
                         "check the file")
    low = voxels[finite].min()
    count = int(finite.size - np.count_nonzero(finite))
    return (np.where(finite, voxels, low),
            f"{count} voxel(s) are NaN or infinite; they are read as the volume's minimum, {low:g}")


def _sitk():
    import SimpleITK as sitk

    return sitk


def _geometry_from_sitk(image) -> np.ndarray:
    dimension = image.GetDimension()
    direction = np.array(image.GetDirection(), dtype=float).reshape(dimension, dimension)
    spacing = np.array(image.GetSpacing(), dtype=float)
    origin = np.array(image.GetOrigin(), dtype=float)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:dimension, :dimension] = direction * spacing[None, :]
    ijk_to_lps[:dimension, 3] = origin
    return LPS_TO_RAS @ ijk_to_lps


def _to_scalar_3d(image, path: str):
    sitk = _sitk()
    if image.GetNumberOfComponentsPerPixel() > 1:
        if image.GetNumberOfComponentsPerPixel() in (3, 4) and image.GetDimension() == 2:
            channels = [sitk.VectorIndexSelectionCast(image, c, sitk.sitkFloat32) for c in range(3)]
            image = 0.299 * channels[0] + 0.587 * channels[1] + 0.114 * channels[2]
        else:
            raise InputError(
                f"image has {image.GetNumberOfComponentsPerPixel()} components per voxel", path,
                "give a scalar (grey-level) volume",
            )
    if image.GetDimension() == 4 or (image.GetDimension() == 3 and 0 in image.GetSize()):
        raise InputError(f"image is {image.GetDimension()}-D ({image.GetSize()})", path,
                         "give one 3-D volume or 2-D image (split time series first)")
    if image.GetDimension() == 2:
        array = sitk.GetArrayFromImage(image)[None]
        geometry_2d = _geometry_from_sitk(image)
        ijk_to_ras = np.eye(4)
        ijk_to_ras[:2, :2] = geometry_2d[:2, :2]
        ijk_to_ras[:2, 3] = geometry_2d[:2, 3]
        return array, ijk_to_ras
    if image.GetDimension() != 3:
        raise InputError(f"image is {image.GetDimension()}-D", path, "give a 3-D volume or a 2-D image")
    return sitk.GetArrayFromImage(image), _geometry_from_sitk(image)


def _read_dicom_folder(folder: Path):
    sitk = _sitk()
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ()
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
    if not series_ids:
        raise InputError("no DICOM series found in folder", str(folder),
                         "point at a folder holding the DICOM files of one series")
    files_by_series = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids}
    _check_no_dicom_file_dropped(folder, {Path(name).name for names in files_by_series.values() for name in names})
    chosen = max(series_ids, key=lambda sid: len(files_by_series[sid]))
    notes = []
    if len(series_ids) > 1:
        notes.append(
            f"{len(series_ids)} DICOM series in {folder}; using the largest, {chosen} "
            f"({len(files_by_series[chosen])} files)"
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files_by_series[chosen])
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError("DICOM series could not be read", str(folder),
                         f"check the files are one complete series ({_first_line(error)})") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
    headers = [_dicom_header(name) for name in files_by_series[chosen]]
    modality = headers[0].get(DICOM_MODALITY_TAG, "").strip() or None
    gap_note = _uneven_gap_note(headers)
    if gap_note:
        notes.append(gap_note)
    return image, modality, tuple(notes)


def _check_no_dicom_file_dropped(folder: Path, in_series: set[str]) -> None:
    """GDCM leaves a DICOM file it cannot read out of its series without a word: the volume would then
    have a gap.  Any such file (a ``.dcm`` name or the DICOM preamble) is an error naming it."""
    for path in sorted(folder.iterdir()):
        if path.name in in_series or path.name.startswith(".") or path.name.upper() == "DICOMDIR" \
                or not path.is_file():
            continue
        with open(path, "rb") as stream:
            looks_dicom = path.suffix.lower() == ".dcm" or stream.read(132)[128:] == b"DICM"
        if looks_dicom:
            raise InputError("DICOM file in the series folder cannot be read (truncated or damaged), so the series "
                             "would have a gap", str(path), "copy the series again or remove the file")


def _dicom_header(file_name: str) -> dict[str, str]:
    info = _sitk().ImageFileReader()
    info.SetFileName(file_name)
    info.ReadImageInformation()
    return {key: info.GetMetaData(key) for key in (DICOM_MODALITY_TAG, DICOM_POSITION_TAG, DICOM_ORIENTATION_TAG)
            if info.HasMetaDataKey(key)}


def _uneven_gap_note(headers: list[dict[str, str]]) -> str | None:
    """A note when the slice positions of a series are not evenly spaced (slices are kept as they are)."""
    try:
        orientation = np.array([float(v) for v in headers[0][DICOM_ORIENTATION_TAG].split("\\")])
        positions = np.array([[float(v) for v in h[DICOM_POSITION_TAG].split("\\")] for h in headers])
    except (KeyError, ValueError):
        return None
    if len(positions) < 3 or orientation.size != 6:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    gaps = np.diff(np.sort(positions @ normal))
    if gaps.max() - gaps.min() <= 0.01 * max(float(np.median(gaps)), 1e-3):
        return None
    return (f"uneven DICOM slice gaps ({gaps.min():.2f} to {gaps.max():.2f} mm); slices are kept as they are and "
            f"spaced {float(np.mean(gaps)):.2f} mm apart, so distances along the slice axis are approximate")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    for line in text:
        if line.strip() and "Exception thrown" not in line and not line.startswith("/"):
            return line.strip()[:160]
    return text[-1].strip()[:160] if text else type(error).__name__


NIFTI_LAYOUTS = {  # sizeof_hdr: (dim format, its offset, bitpix offset, pixdim format, its offset, vox_offset's)
    348: ("8h", 40, 72, "8f", 76, ("f", 108)),
    540: ("8q", 16, 14, "8d", 104, ("q", 168)),
}
READ_CHUNK = 1 << 22


def check_file_header(path: Path) -> None:
    """What SimpleITK lets through or reports badly: a NIfTI file shorter than its header promises (read
    as garbage or zeros), NIfTI ``pixdim`` or MetaImage ``ElementSpacing`` <= 0 (read as 1 mm or as its
    magnitude), a truncated MetaImage (MetaIO prints to the terminal), NRRD ``space directions`` of
    length zero."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        _check_nifti(path, compressed=name.endswith(".gz"))
    elif name.endswith((".mha", ".mhd")):
        _check_metaimage(path)
    elif name.endswith((".nrrd", ".nhdr")):
        _check_nrrd_directions(path)


def _check_nifti(path: Path, compressed: bool) -> None:
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(540)
            stored = len(header) + sum(len(chunk) for chunk in iter(lambda: stream.read(READ_CHUNK), b""))
    except gzip.BadGzipFile:
        return  # not gzip at all: SimpleITK says what it is not
    except (EOFError, OSError, zlib.error):
        raise InputError("NIfTI file is truncated or damaged (its compressed data ends early)", str(path),
                         "copy or export the file again") from None
    layout = next(((endian, NIFTI_LAYOUTS[size]) for endian in "<>" for size in NIFTI_LAYOUTS
                   if len(header) >= 4 and struct.unpack(endian + "i", header[:4])[0] == size), None)
    if layout is None or len(header) < 348:
        return  # no NIfTI header: SimpleITK says what it is not
    endian, (dim_format, dim_at, bitpix_at, pixdim_format, pixdim_at, (offset_format, offset_at)) = layout
    dim = struct.unpack_from(endian + dim_format, header, dim_at)
    bitpix = struct.unpack_from(endian + "h", header, bitpix_at)[0]
    pixdim = struct.unpack_from(endian + pixdim_format, header, pixdim_at)
    vox_offset = int(struct.unpack_from(endian + offset_format, header, offset_at)[0])
    n_dims = min(max(int(dim[0]), 0), 7)
    for axis in range(1, min(n_dims, 3) + 1):
        if not (math.isfinite(pixdim[axis]) and pixdim[axis] > 0):
            raise InputError(f"NIfTI header field pixdim[{axis}] (voxel size) is {pixdim[axis]:g}", str(path),
                             "fix the voxel size in the file's header (it must be a positive number of mm)")
    expected = math.prod(max(int(n), 1) for n in dim[1:n_dims + 1]) * max(int(bitpix), 0) // 8
    if stored < vox_offset + expected:
        raise InputError(f"NIfTI file is truncated ({stored - vox_offset} of {expected} voxel bytes)", str(path),
                         "copy or export the file again")


METAIMAGE_TYPE_BYTES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
                        "MET_ULONG_LONG": 8, "MET_LONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _check_metaimage(path: Path) -> None:
    """Voxel size > 0 and, for data inside the file (``ElementDataFile = LOCAL``), every byte the header
    promises (MetaIO itself prints to the terminal and stops with an unhelpful message)."""
    with open(path, "rb") as stream:
        head = stream.read(READ_CHUNK)
    header_text, found, _ = head.partition(b"ElementDataFile")
    fields = {}
    for line in header_text.decode("latin-1").splitlines():
        field, _, value = line.partition("=")
        fields[field.strip()] = value.strip()
    for field in ("ElementSpacing", "ElementSize"):
        if field in fields:
            try:
                sizes = [float(v) for v in fields[field].split()]
            except ValueError:
                sizes = [math.nan]
            if not all(math.isfinite(v) and v > 0 for v in sizes):
                raise InputError(f"MetaImage header field {field} is {fields[field]!r}", str(path),
                                 "fix the voxel size in the file's header (positive numbers of mm)")
    data_line = head[len(header_text):].split(b"\n", 1)
    if not found or len(data_line) < 2 or data_line[0].partition(b"=")[2].strip() != b"LOCAL":
        return
    data_start = len(header_text) + len(data_line[0]) + 1
    try:
        if fields.get("CompressedData", "False").lower() == "true":
            expected = int(fields["CompressedDataSize"])
        else:
            expected = (math.prod(int(n) for n in fields["DimSize"].split())
                        * int(fields.get("ElementNumberOfChannels", "1")) * METAIMAGE_TYPE_BYTES[fields["ElementType"]])
    except (KeyError, ValueError):
        return  # SimpleITK says what is wrong with the header
    stored = path.stat().st_size - data_start
    if stored < expected:
        raise InputError(f"MetaImage file is truncated ({stored} of {expected} data bytes)", str(path),
                         "copy or export the file again")


def _header_readable(path: Path) -> bool:
    reader = _sitk().ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return False
    return True


def _check_nrrd_directions(path: Path) -> None:
    with open(path, "rb") as stream:
        header = stream.read(READ_CHUNK).split(b"\n\n", 1)[0].decode("latin-1")
    for line in header.splitlines():
        field, _, value = line.partition(":")
        if field.strip() != "space directions":
            continue
        for vector in re.findall(r"\(([^)]*)\)", value):
            try:
                length = math.hypot(*(float(v) for v in vector.split(",")))
            except ValueError:
                length = math.nan
            if not (math.isfinite(length) and length > 0):
                raise InputError(f"NRRD header field 'space directions' holds ({vector}), a voxel size of "
                                 f"{length:g}", str(path), "fix the voxel size in the file's header")


def read_image(path: str | os.PathLike):
    """Read any supported file or DICOM folder as a SimpleITK image; errors name the file."""
    sitk = _sitk()
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", str(path), "check the path")
    modality, notes = None, ()
    if path.is_dir():
        image, modality, notes = _read_dicom_folder(path)
    else:
        check_file_header(path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError:
            if _header_readable(path):
                raise InputError("image file's header reads but its voxel data does not (truncated or damaged)",
                                 str(path), "copy or export the file again") from None
            raise InputError(
                "not an image file SimpleITK can read", str(path),
                "give a NIfTI (.nii/.nii.gz), NRRD, MHA/MHD file or a DICOM folder",
            ) from None
    return image, modality, notes


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a NIfTI, NRRD, MHA/MHD file or a DICOM series folder as a :class:`Volume`."""
    image, modality, notes = read_image(path)
    array, ijk_to_ras = _to_scalar_3d(image, str(path))
    if array.size == 0:
        raise InputError("image has no voxels", str(path), "give a non-empty image")
    if sum(n >= MIN_SLICE_SIDE for n in array.shape) < 2:
        raise InputError(f"image is {'x'.join(map(str, array.shape[::-1]))} voxels: no slice of it is at least "
                         f"{MIN_SLICE_SIDE}x{MIN_SLICE_SIDE} pixels", str(path), "give a larger image")
    if modality is None:
        modality = _modality_from_header(image)
    return Volume(np.ascontiguousarray(array), ijk_to_ras, source=str(path), modality=modality, notes=notes)


def _modality_from_header(image) -> str | None:
    if image.HasMetaDataKey(DICOM_MODALITY_TAG):
        return image.GetMetaData(DICOM_MODALITY_TAG).strip() or None
    return None


def same_grid(ijk_to_ras_a: np.ndarray, shape_a, ijk_to_ras_b: np.ndarray, shape_b, tolerance_mm=1e-3) -> bool:
    return tuple(shape_a) == tuple(shape_b) and np.allclose(ijk_to_ras_a, ijk_to_ras_b, atol=tolerance_mm)


def read_labelmap(path: str | os.PathLike, reference: Volume) -> np.ndarray:
    """Read a label map and bring it onto ``reference``'s grid (nearest neighbour).

    Returns an integer (k, j, i) array.  Raises :class:`InputError` when the label map does not
    overlap the image at all.
    """
    image, _, _ = read_image(path)
    if image.GetNumberOfComponentsPerPixel() > 1:
        raise InputError("label map has several components per voxel", str(path),
                         "give a single-layer label map (one integer label per voxel)")
    array, ijk_to_ras = _to_scalar_3d(image, str(path))
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.mod(array, 1) == 0):
            raise InputError("label map holds non-integer values", str(path), "give an integer label map")
        array = array.astype(np.int32)
    shape_ijk = (array.shape[2], array.shape[1], array.shape[0])
    if same_grid(ijk_to_ras, shape_ijk, reference.ijk_to_ras, reference.shape_ijk):
        return array
    resampled = resample_nearest(array, ijk_to_ras, reference)
    if not resampled.any() and array.any():
        raise InputError("label map does not overlap the image", str(path),
                         "check that both files belong to the same scan")
    return resampled


def resample_nearest(array_kji: np.ndarray, ijk_to_ras: np.ndarray, reference: Volume) -> np.ndarray:
    """Nearest-neighbour resampling of a (k, j, i) label array onto ``reference``'s grid."""
    ras_to_src_ijk = np.linalg.inv(ijk_to_ras) @ reference.ijk_to_ras
    k, j, i = np.meshgrid(*(np.arange(n) for n in reference.voxels_kji.shape), indexing="ij")
    ref_ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    src_ijk = np.rint(apply_affine(ras_to_src_ijk, ref_ijk)).astype(np.int64)
    src_shape_ijk = (array_kji.shape[2], array_kji.shape[1], array_kji.shape[0])
    inside = np.all((src_ijk >= 0) & (src_ijk < np.array(src_shape_ijk)), axis=1)
    out = np.zeros(ref_ijk.shape[0], dtype=array_kji.dtype)
    src = src_ijk[inside]
    out[inside] = array_kji[src[:, 2], src[:, 1], src[:, 0]]
    return out.reshape(reference.voxels_kji.shape)


def labelmap_dtype(labels_kji: np.ndarray) -> np.dtype:
    """The smallest integer type that holds every label value (never one that would wrap them)."""
    low, high = (int(labels_kji.min()), int(labels_kji.max())) if labels_kji.size else (0, 0)
    return np.result_type(np.min_scalar_type(low), np.min_scalar_type(high))


def _image_on_grid(array_kji: np.ndarray, reference: Volume):
    sitk = _sitk()
    image = sitk.GetImageFromArray(array_kji)
    ijk_to_lps = LPS_TO_RAS @ reference.ijk_to_ras
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in ijk_to_lps[:3, 3]])
    image.SetDirection([float(v) for v in (ijk_to_lps[:3, :3] / spacing[None, :]).ravel()])
    return image


LABELMAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha")
GEOMETRY_TOLERANCE_MM = 1e-3


def write_labelmap(path: str | os.PathLike, labels_kji: np.ndarray, reference: Volume,
                   segment_names: dict[int, str] | None = None) -> Path:
    """Write a label map on ``reference``'s exact grid, atomically.

    ``.seg.nrrd`` files get Slicer's segmentation header fields (one segment per label value)
    so that Slicer opens them as a segmentation.
    """
    sitk = _sitk()
    path = Path(path)
    if not path.name.endswith(LABELMAP_SUFFIXES):
        raise OutputError("unsupported label map file type", str(path), f"use {', '.join(LABELMAP_SUFFIXES)}")
    if labels_kji.shape != reference.voxels_kji.shape:
        raise ValueError(f"label array {labels_kji.shape} does not match the image {reference.voxels_kji.shape}")
    labels_kji = labels_kji.astype(labelmap_dtype(labels_kji))
    image = _image_on_grid(labels_kji, reference)
    if path.name.endswith(".seg.nrrd"):
        for key, value in segmentation_header(labels_kji, segment_names or {}).items():
            image.SetMetaData(key, value)

    def write_to(tmp_path: Path):
        sitk.WriteImage(image, str(tmp_path), useCompression=True)

    return write_verified(path, write_to, lambda tmp_path: _labelmap_problem(tmp_path, labels_kji, reference))


def _labelmap_problem(path: Path, labels_kji: np.ndarray, reference: Volume) -> str | None:
    """What differs between the label map file at ``path`` and what was meant to be written, or None."""
    try:
        check_file_header(path)
        image = _sitk().ReadImage(str(path))
    except (RuntimeError, InputError):
        return "the written file does not read back"
    written = _sitk().GetArrayFromImage(image)
    if written.shape != labels_kji.shape or not np.array_equal(written, labels_kji):
        return "the voxels read back differ"
    if not np.allclose(_geometry_from_sitk(image), reference.ijk_to_ras, atol=GEOMETRY_TOLERANCE_MM):
        return "the geometry read back differs"
    return None


def segmentation_header(labels_kji: np.ndarray, segment_names: dict[int, str]) -> dict[str, str]:
    """Slicer ``.seg.nrrd`` metadata: one segment per non-zero label value, all in layer 0."""
    palette = [(0.5, 0.68, 0.5), (0.95, 0.84, 0.57), (0.69, 0.48, 0.4), (0.84, 0.52, 0.43),
               (0.56, 0.79, 0.89), (0.89, 0.55, 0.62), (0.44, 0.51, 0.75), (0.86, 0.75, 0.35)]
    header = {"Segmentation_MasterRepresentation": "Binary labelmap",
              "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
              "Segmentation_ReferenceImageExtentOffset": "0 0 0"}
    values = [int(v) for v in np.unique(labels_kji) if v != 0]
    extent = " ".join(f"0 {n - 1}" for n in labels_kji.shape[::-1])
    for number, value in enumerate(values):
        color = palette[number % len(palette)]
        name = segment_names.get(value, f"Segment_{value}")
        prefix = f"Segment{number}_"
        header.update({
            prefix + "ID": f"Segment_{value}",
            prefix + "Name": name,
            prefix + "NameAutoGenerated": "0" if value in segment_names else "1",
            prefix + "LabelValue": str(value),
            prefix + "Layer": "0",
            prefix + "Color": " ".join(f"{c:.4f}" for c in color),
            prefix + "ColorAutoGenerated": "1",
            prefix + "Extent": extent,
            prefix + "Tags": "Segmentation.Status:inprogress|",
        })
    return header
