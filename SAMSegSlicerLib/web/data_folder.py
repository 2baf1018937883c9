"""The one folder the web server may read and write (``--data-dir``), and what comes in through it.

Every path the page names is relative to it and must stay inside it after links are followed.  Uploads are
checked as images (size, type, a readable 3-D volume) before they land in ``uploads/``; a bad one changes
nothing.  Segmentations are written with the Lib's verified atomic writer.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..output import check_output
from ..volume import Volume, read_volume, write_labelmap

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
SEGMENTATION_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii")
MAX_UPLOAD_BYTES = 2 * 1024**3
MAX_LISTED = 500
UPLOADS = "uploads"


class DataFolder:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InputError("the data folder does not exist", str(root), "create it or give another --data-dir")

    def resolve(self, relative: str) -> Path:
        """The file or folder ``relative`` names inside the data folder; an error for anything outside it."""
        path = (self.root / relative).resolve()
        if path != self.root and self.root not in path.parents:
            raise InputError("that path is outside the data folder", relative, "choose a file under --data-dir")
        return path

    def images(self) -> list[str]:
        """Image files and DICOM folders under the data folder (relative paths, at most MAX_LISTED)."""
        found = []
        for folder, subfolders, files in os.walk(self.root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            here = Path(folder)
            images = sorted(f for f in files if f.endswith(IMAGE_SUFFIXES) and not f.endswith(".seg.nrrd"))
            found += [str((here / f).relative_to(self.root)) for f in images]
            if not images and files and any(_is_dicom(here / f) for f in sorted(files)[:3]):
                found.append(str(here.relative_to(self.root)) + "/")
            if len(found) >= MAX_LISTED:
                break
        return found[:MAX_LISTED]

    def save_upload(self, name: str, content: bytes) -> Path:
        """Check an uploaded image and keep it under ``uploads/``; nothing is kept when it is not a usable volume."""
        base = Path(name).name
        if not base.endswith(IMAGE_SUFFIXES) or base.endswith(".seg.nrrd"):
            raise InputError("not an image file the app reads", base,
                             f"upload one of {', '.join(IMAGE_SUFFIXES)} (a DICOM series: put it under --data-dir)")
        if len(content) > MAX_UPLOAD_BYTES:
            raise InputError(f"the upload is larger than {MAX_UPLOAD_BYTES // 1024**3} GiB", base,
                             "put large volumes under --data-dir and open them from there")
        if base.endswith((".nhdr", ".mhd")):
            raise InputError("a header without its data file cannot be uploaded", base,
                             "upload a single-file .nrrd, .mha or .nii(.gz)")
        folder = self.root / UPLOADS
        folder.mkdir(exist_ok=True)
        suffix = next(s for s in IMAGE_SUFFIXES if base.endswith(s))
        handle, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=suffix, dir=folder)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            read_volume(tmp)
        except InputError as error:
            tmp.unlink()
            raise InputError(f"the upload is not a usable volume ({error.what})", base,
                             "upload a 3-D CT or MR image") from None
        except BaseException:
            tmp.unlink()
            raise
        target = _free_name(folder / _safe_name(base), suffix)
        tmp.rename(target)
        return target

    def save_segmentation(self, relative: str, labels_kji: np.ndarray, reference: Volume, names: dict[int, str],
                          inputs: tuple = ()) -> Path:
        """Write the label map as ``.seg.nrrd`` (Slicer opens it as a segmentation) or NIfTI, atomically."""
        path = self.resolve(relative)
        check_output(path, inputs, SEGMENTATION_SUFFIXES)
        if labels_kji.max() == 0:
            raise OutputError("the segmentation is empty", relative, "accept a slice first")
        return write_labelmap(path, labels_kji, reference, names)


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _free_name(path: Path, suffix: str) -> Path:
    stem = path.name[: -len(suffix)]
    candidate, number = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{stem}-{number}{suffix}")
        number += 1
    return candidate
