"""Discovery: which files under the input folders are DICOM instances, grouped by study and series.

Walking is cheap and single-threaded (`candidate_files`); reading headers is the costly part and
runs in the worker pool (`read_header`), one file at a time, returning a small `Instance` or a
`Problem`. Nothing here keeps a dataset: only the identifiers needed to group and pseudonymize.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.filereader import read_partial
from pydicom.tag import Tag

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
# Everything grouping needs sits in groups 0008 to 0020, so a header is read only that far.
LAST_HEADER_TAG = 0x0020000E  # SeriesInstanceUID
# Plain ints, not pydicom Tags: the parser tests every element against them.
HEADER_TAGS = [
    int(Tag(keyword))
    for keyword in (
        "SOPClassUID",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "PatientID",
        "IssuerOfPatientID",
        "AccessionNumber",
        "StudyDate",
        "StudyTime",
    )
]
# Enough for almost every header up to SeriesInstanceUID; a longer one is read from the file.
HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Candidate:
    """A file to look at. `root` is its input folder: refs are made relative to it."""

    path: Path
    root: Path


@dataclass(frozen=True)
class Instance:
    path: Path
    root: Path
    patient_key: str
    item_key: str
    study_uid: str
    series_uid: str
    sop_uid: str
    timestamp: str | None


@dataclass(frozen=True)
class Problem:
    """A file or folder that was not processed, and why. `path` never leaves this machine."""

    path: Path
    root: Path
    reason: str


def is_unfinished(name: str) -> bool:
    """An exporter writes `ST-000001.tmp2343/` and renames it when complete."""
    return any(part.lower().startswith("tmp") for part in name.split(".")[1:])


def candidate_files(roots: Iterable[Path]) -> Iterator[Candidate | Problem]:
    """Every regular file under the roots, in a stable order; problems for what is skipped."""
    for root in roots:
        root = root.resolve()
        if not root.is_dir():
            yield Problem(root, root, "input folder does not exist or is not a folder")
            continue
        if is_unfinished(root.name):
            yield Problem(root, root, "unfinished folder (its name ends in .tmp*): skipped")
            continue
        yield from _walk(root)


def _walk(root: Path) -> Iterator[Candidate | Problem]:
    """Depth first, each folder's entries by name. Only regular files are candidates: opening
    a FIFO or a device would block, or read forever."""
    found = False
    folders = [root]
    while folders:
        here = folders.pop()
        try:
            with os.scandir(here) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            yield Problem(here, root, f"unreadable folder: {exc.strerror or type(exc).__name__}")
            continue
        subfolders = []
        for entry in entries:
            path = here / entry.name
            if entry.is_symlink():
                if not _inside(path, root):
                    yield Problem(path, root, "symlink points outside the input: skipped")
                    continue
                if entry.is_dir():
                    continue  # a link to a folder inside the input: its files are found there
            if entry.is_dir(follow_symlinks=False):
                if is_unfinished(entry.name):
                    yield Problem(path, root, "unfinished folder (its name ends in .tmp*): skipped")
                else:
                    subfolders.append(path)
            elif entry.is_file():
                found = True
                yield Candidate(path, root)
            else:
                yield Problem(path, root, "not a regular file (a FIFO, socket or device): skipped")
        folders.extend(reversed(subfolders))
    if not found:
        yield Problem(root, root, "folder holds no files")


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a loop of links
        return False


def read_header(candidate: Candidate) -> Instance | Problem:
    """Recognise a DICOM instance by its content and read what grouping needs."""
    path, root = candidate.path, candidate.root
    try:
        ds, has_preamble = _read(path)
    except PermissionError:
        return Problem(path, root, "unreadable: permission denied")
    except FileNotFoundError:
        return Problem(path, root, "vanished while reading")
    except OSError as exc:
        return Problem(path, root, f"unreadable: {exc.strerror or type(exc).__name__}")
    except NotDicom as exc:
        return Problem(path, root, str(exc))
    meta = getattr(ds, "file_meta", None) or {}
    if meta.get("MediaStorageSOPClassUID") == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        return Problem(path, root, "DICOMDIR (a media index, not an image): skipped")
    missing = [
        k for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if k not in ds
    ]
    if missing:
        reason = f"DICOM but not an image instance: no {missing[0]}"
        return Problem(path, root, reason if has_preamble else "not a DICOM file")
    study_uid = str(ds.StudyInstanceUID)
    patient = _patient_key(ds, study_uid)
    item = str(ds.get("AccessionNumber", "") or "") or f"study:{study_uid}"
    return Instance(
        path=path,
        root=root,
        patient_key=patient,
        item_key=item,
        study_uid=study_uid,
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        timestamp=_timestamp(ds.get("StudyDate"), ds.get("StudyTime")),
    )


def _patient_key(ds: pydicom.Dataset, study_uid: str) -> str:
    """The patient's own identity: PatientID with its issuer (one MRN from two issuers is two
    patients); without an ID, the study stands for the patient."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if not pid:
        return f"study:{study_uid}"
    issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
    return f"{pid}\0{issuer}" if issuer else pid


class NotDicom(Exception):
    pass


def _read(path: Path) -> tuple[pydicom.Dataset, bool]:
    """The header, and whether the file has the DICM preamble (files without it are read only
    if their content parses as a dataset with instance UIDs).

    The file's head is parsed from memory (pydicom parses a buffer about twice as fast as a
    file); only a header longer than the head is read again from the file."""
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
        if not head:
            raise NotDicom("empty file")
        has_preamble = head[128:132] == b"DICM"
        whole = len(head) < HEAD_BYTES
        buffer = io.BytesIO(head)
        try:
            ds = _parse(buffer, has_preamble)
        except NotDicom:
            if whole:
                raise
        else:
            # Stopped before the head's end: the element after the header was seen whole.
            if whole or buffer.tell() < len(head):
                return ds, has_preamble
        f.seek(0)  # the head ended inside the header: read the file instead
        return _parse(f, has_preamble), has_preamble


def _parse(f: BinaryIO, has_preamble: bool) -> pydicom.Dataset:
    try:
        return read_partial(f, _past_header, force=not has_preamble, specific_tags=HEADER_TAGS)
    except Exception as exc:  # pydicom raises many kinds on garbage; the batch goes on
        if isinstance(exc, OSError) and not isinstance(f, io.BytesIO):
            raise  # the disk failed, not the content
        kind = "truncated or corrupt DICOM" if has_preamble else "not a DICOM file"
        raise NotDicom(f"{kind} ({type(exc).__name__})") from None


def _past_header(tag: int, _vr: str | None, _length: int) -> bool:
    return int(tag) > LAST_HEADER_TAG  # (pydicom's Tag compares in Python, an int in C)


def _timestamp(date: object, time: object) -> str | None:
    d = str(date or "")
    if len(d) != 8 or not d.isdigit():
        return None
    t = "".join(c for c in str(time or "") if c.isdigit())[:6].ljust(6, "0")
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:6]}Z"


def group(instances: Iterable[Instance]) -> dict[str, dict[str, list[Instance]]]:
    """Study > Series > Image, in a stable order."""
    studies: dict[str, dict[str, list[Instance]]] = {}
    for inst in sorted(instances, key=lambda i: (i.study_uid, i.series_uid, i.sop_uid)):
        studies.setdefault(inst.study_uid, {}).setdefault(inst.series_uid, []).append(inst)
    return studies
