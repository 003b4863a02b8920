"""Unpack fetch_manifest ZIP bundles into an update server's root, safely, and verify the result."""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from segtui.updates.manifest import ManifestError, read_manifest


class BundleError(Exception):
    """An archive is damaged or tries to write outside the server root."""


@dataclass
class UnpackResult:
    files: list[Path] = field(default_factory=list)
    manifests: list[Path] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)


def _safe_target(root: Path, member: zipfile.ZipInfo, archive: Path) -> Path:
    name = member.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    mode = member.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise BundleError(f"{archive}: {name!r} is a symbolic link: refused")
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and pure.parts[0].endswith(":")):
        raise BundleError(f"{archive}: {name!r} would be written outside {root}: refused")
    target = (root / Path(*pure.parts)).resolve()
    if root.resolve() not in target.parents and target != root.resolve():
        raise BundleError(f"{archive}: {name!r} would be written outside {root}: refused")
    return target


def unpack(archive: Path, root: Path) -> UnpackResult:
    """Check every member first (CRC, paths), then extract; nothing is written if any member is bad."""
    result = UnpackResult()
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{archive}: not a readable ZIP archive: {exc}") from None
    with zf:
        bad = zf.testzip()
        if bad is not None:
            raise BundleError(f"{archive}: {bad!r} is damaged (CRC mismatch)")
        plan = [(m, _safe_target(root, m, archive)) for m in zf.infolist()]
        root.mkdir(parents=True, exist_ok=True)
        for member, target in plan:
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as dst:
                while chunk := src.read(1024 * 1024):
                    dst.write(chunk)
            if target.stat().st_size != member.file_size:
                raise BundleError(f"{archive}: {member.filename!r} unpacked to the wrong size")
            result.files.append(target)
    for path in result.files:
        if path.suffix == ".xml" and path.parent.name == "asyncos":
            result.manifests.append(path)
            try:
                reading = read_manifest(str(path), path.read_bytes())
            except ManifestError as exc:
                raise BundleError(str(exc)) from None
            for image in reading.images:
                if "://" not in image and not (root / image.removeprefix("./").lstrip("/")).is_file():
                    result.missing_images.append(image)
    return result
