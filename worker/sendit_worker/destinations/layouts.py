"""What a series becomes in the bucket: object names from pseudonymous identifiers only, and
the artifacts (files) to upload for each layout: dicom, tar.gz, nifti.

Naming is pure; building a tar.gz or NIfTI writes one series' artifact into a work folder.
Artifacts are byte-for-byte reproducible, so a rerun finds them already delivered by checksum.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeliveryError
from .image import DeidentifiedImage, ImageMetadata

# Pseudonyms and UIDs only: anything else in a name (a space, a slash, a name) is refused.
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Artifact:
    """One object to upload: its name in the bucket, its local file, the images inside it."""

    name: str
    path: Path
    content_type: str
    sops: tuple[str, ...] = ()
    members: dict[str, str] = field(default_factory=dict)  # sop -> member name in an archive


def safe(component: Any, what: str) -> str:
    text = str(component) if component is not None else ""
    if not _SAFE.match(text):
        raise DeliveryError(f"refusing an object name: the {what} is not a pseudonymous id")
    return text


def series_prefix(prefix: str, metadata: ImageMetadata) -> str:
    parts = [
        safe(metadata.patient, "patient"),
        safe(metadata.study, "study"),
        safe(metadata.series, "series"),
    ]
    return "/".join(([prefix.strip("/")] if prefix.strip("/") else []) + parts)


def dicom(prefix: str, images: list[DeidentifiedImage]) -> list[Artifact]:
    return [
        Artifact(
            name=f"{series_prefix(prefix, i.metadata)}/{safe(i.sop, 'SOP')}.dcm",
            path=i.path,
            content_type="application/dicom",
            sops=(i.sop,),
        )
        for i in images
    ]


def tar_gz(prefix: str, images: list[DeidentifiedImage], workdir: Path) -> list[Artifact]:
    """One reproducible archive per series: sorted members, fixed times and owners."""
    name = f"{series_prefix(prefix, images[0].metadata)}.tar.gz"
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"{safe(images[0].metadata.series, 'series')}.tar.gz"
    members: dict[str, str] = {}
    partial = out.with_name(out.name + ".partial")
    with (
        open(partial, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for image in sorted(images, key=lambda i: i.sop):
            member = f"{safe(image.sop, 'SOP')}.dcm"
            info = tarfile.TarInfo(member)
            info.size = image.path.stat().st_size
            info.mtime, info.mode, info.uid, info.gid = 0, 0o644, 0, 0
            with open(image.path, "rb") as f:
                tar.addfile(info, f)
            members[image.sop] = member
    partial.replace(out)
    return [
        Artifact(name, out, "application/gzip", tuple(sorted(members)), members),
    ]


# Sidecar fields kept: acquisition physics and the conversion; everything else is dropped
# (dates, times, institution, station, device serial, descriptions, UIDs, patient fields).
SIDECAR_KEEP = frozenset(
    {
        "Modality",
        "MagneticFieldStrength",
        "ImagingFrequency",
        "Manufacturer",
        "ManufacturersModelName",
        "BodyPartExamined",
        "PatientPosition",
        "MRAcquisitionType",
        "ScanningSequence",
        "SequenceVariant",
        "ScanOptions",
        "SequenceName",
        "PulseSequenceType",
        "ImageType",
        "SliceThickness",
        "SpacingBetweenSlices",
        "EchoTime",
        "EchoTime1",
        "EchoTime2",
        "RepetitionTime",
        "InversionTime",
        "FlipAngle",
        "PartialFourier",
        "BaseResolution",
        "PhaseEncodingDirection",
        "PhaseEncodingSteps",
        "AcquisitionMatrixPE",
        "ReconMatrixPE",
        "PixelBandwidth",
        "EffectiveEchoSpacing",
        "TotalReadoutTime",
        "SliceTiming",
        "MultibandAccelerationFactor",
        "ParallelReductionFactorInPlane",
        "XRayExposure",
        "ExposureTime",
        "KVp",
        "XRayTubeCurrent",
        "ConvolutionKernel",
        "ReconstructionDiameter",
        "ImageOrientationPatientDICOM",
        "InPlanePhaseEncodingDirectionDICOM",
        "ConversionSoftware",
        "ConversionSoftwareVersion",
    }
)


def strip_sidecar(sidecar: dict[str, Any]) -> dict[str, Any]:
    """Only the allow-listed acquisition fields of a dcm2niix JSON sidecar, sorted."""
    return {k: sidecar[k] for k in sorted(sidecar) if k in SIDECAR_KEEP}


DCM2NIIX_ARGS = ("-z", "y", "-b", "y", "-ba", "y", "-f", "series")


def nifti(prefix: str, images: list[DeidentifiedImage], workdir: Path) -> list[Artifact]:
    """Compressed NIfTI per series via dcm2niix, with its sidecar reduced to SIDECAR_KEEP."""
    series = safe(images[0].metadata.series, "series")
    base = series_prefix(prefix, images[0].metadata)
    inputs = workdir / f"{series}.in"
    outputs = workdir / f"{series}.nii"
    for d in (inputs, outputs):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for image in images:  # dcm2niix reads a folder: link the series' files into one
        (inputs / f"{image.sop}.dcm").symlink_to(image.path.resolve())
    try:
        result = subprocess.run(
            [dcm2niix_binary(), *DCM2NIIX_ARGS, "-o", str(outputs), str(inputs)],
            capture_output=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeliveryError(f"dcm2niix could not run ({type(exc).__name__})") from None
    finally:
        shutil.rmtree(inputs, ignore_errors=True)
    volumes = sorted(outputs.glob("*.nii.gz"))
    if result.returncode != 0 or not volumes:
        raise DeliveryError(f"dcm2niix made no NIfTI for a series (exit {result.returncode})")
    sops = tuple(sorted(i.sop for i in images))
    artifacts: list[Artifact] = []
    for volume in volumes:
        stem = volume.name.removesuffix(".nii.gz")
        artifacts.append(Artifact(f"{base}/{stem}.nii.gz", volume, "application/gzip", sops))
        sidecar = volume.with_name(f"{stem}.json")
        if sidecar.exists():
            kept = strip_sidecar(json.loads(sidecar.read_text()))
            sidecar.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
            artifacts.append(Artifact(f"{base}/{stem}.json", sidecar, "application/json", sops))
    return artifacts


def dcm2niix_binary() -> str:
    # On PATH, or beside this interpreter: pip installs it there, and a venv is often used
    # without being activated.
    found = shutil.which("dcm2niix") or shutil.which(
        "dcm2niix", path=str(Path(sys.executable).parent)
    )
    if found is None:
        raise DeliveryError("layout nifti needs dcm2niix (pip install dcm2niix)")
    return found


def build(
    layout: str, prefix: str, images: list[DeidentifiedImage], workdir: Path
) -> list[Artifact]:
    if layout == "dicom":
        return dicom(prefix, images)
    if layout == "tar.gz":
        return tar_gz(prefix, images, workdir)
    if layout == "nifti":
        return nifti(prefix, images, workdir)
    raise DeliveryError(f"unknown layout {layout!r}")


def locations(bucket: str, artifacts: Iterable[Artifact]) -> dict[str, tuple[str, str | None]]:
    """Each image's GCS URI and, inside an archive, its member name."""
    where: dict[str, tuple[str, str | None]] = {}
    for a in artifacts:
        if a.content_type == "application/json":
            continue
        for sop in a.sops:
            where.setdefault(sop, (f"gs://{bucket}/{a.name}", a.members.get(sop)))
    return where
