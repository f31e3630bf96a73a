"""One instance, in a pool process: read, pixels, header, verify, write (`process_instance`),
or, withheld, kept in the batch's quarantine with a preview; the pool's task is a series of
them (`process_series`).

Each pool process builds its `Context` once (the compiled profile, the pixel filters, the user's
recipe); tasks carry only paths and the patient's identifiers. No dataset outlives its file.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom import Dataset, FileMetaDataset
from pydicom._uid_dict import UID_dictionary
from pydicom.dataelem import RawDataElement
from pydicom.encaps import generate_fragments
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
from pydicom.uid import DeflatedExplicitVRLittleEndian as DEFLATED

from ..destinations.image import KEYWORDS, ImageMetadata
from ..dicom import PIXEL_DATA, PIXEL_TAGS, frame_count
from ..files import write_atomically
from ..header.deidentify import HeaderError, Replacements, deidentify, record_clean_pixels
from ..header.profile import Options, Profile, default_profile, profile_for
from ..header.recipe import UserRecipe
from ..identifiers.pseudonyms import Pseudonymizer
from ..identifiers.replacements import PatientIdentifiers
from ..intake.discovery import Instance
from ..logs import quiet_libraries
from ..pixels import DEFAULT_PIXELS, PixelCleaner, PixelOutcome, PixelPolicy
from ..pixels.codec import TooLarge
from ..pixels.preview import preview
from ..quarantine.store import Item, Quarantine
from .verify import PixelRecord, VerificationError, verify


@dataclass(frozen=True)
class Settings:
    """What every pool process needs; picklable, sent once per process."""

    key: bytes
    output: Path
    recipe: Path | None = None
    filters: tuple[Path, ...] = ()
    header_json: bool = False  # also return each output's header as DICOM JSON (for BigQuery)
    options: Options | None = None  # the batch's profile options; None: the default profile
    pixels: PixelPolicy = DEFAULT_PIXELS
    quarantine: Quarantine | None = None  # where withheld images are kept; None: not kept


@dataclass(frozen=True)
class Outcome:
    ref: str
    status: str  # anonymized | withheld | failed
    reason: str = ""
    output: str = ""  # path relative to the output folder, from new UIDs only
    size: int = 0
    metadata: ImageMetadata | None = None  # of the de-identified output
    pixels_cleaned: bool = False  # burned-in text was blanked
    quarantined: bool = False  # withheld, and kept in the quarantine for review


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        options = settings.options
        self.profile: Profile = profile_for(options) if options else default_profile()
        self.pseudonymizer = Pseudonymizer(settings.key)
        self.pixels = PixelCleaner(settings.pixels, settings.filters)
        self.recipe = UserRecipe.load(settings.recipe) if settings.recipe else None

    def map_uid(self, uid: str) -> str:
        return uid if uid in UID_dictionary else self.pseudonymizer.uid(uid)


_context: Context | None = None


def init_process(settings: Settings) -> None:
    global _context
    quiet_libraries()
    _context = Context(settings)


def process_series(task: list[tuple[str, Instance, PatientIdentifiers]]) -> list[Outcome]:
    """One series: each file with its reference and its own patient's identifiers."""
    assert _context is not None, "init_process first"
    return [process_instance(_context, ref, inst, ids) for ref, inst, ids in task]


def process_instance(ctx: Context, ref: str, inst: Instance, ids: PatientIdentifiers) -> Outcome:
    try:
        stored = inst.path.read_bytes()
        ds = pydicom.dcmread(io.BytesIO(stored), force=True)
        ds.buffer = None  # pydicom keeps what it read from (for reads it defers: none here)
        problem = _integrity_problem(ds, stored)
        if ctx.settings.quarantine is None:
            del stored  # kept only for a quarantine's copy: a radiograph is not held twice
        if problem:
            return Outcome(ref, "failed", problem)
        if getattr(ds, "file_meta", None) is None or "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = _transfer_syntax(ds)  # what the body was read as
        _give_vrs(ds)
        pixels = ctx.pixels.apply(ds)
        if pixels.withheld:
            held = _held(ctx, ref, ds, pixels)
        else:
            data, relative, metadata = _deidentified(ctx, ds, inst, ids, pixels)
    except TooLarge as exc:
        return Outcome(ref, "failed", f"could not decode the pixels: {exc}")
    except VerificationError as exc:
        return Outcome(ref, "failed", f"verification: {exc}")
    except HeaderError as exc:
        return Outcome(ref, "failed", f"could not de-identify {exc}")
    except RecursionError:
        return Outcome(ref, "failed", "could not de-identify: sequences nested too deep to walk")
    except OSError as exc:
        return Outcome(ref, "failed", f"unreadable: {exc.strerror or type(exc).__name__}")
    except Exception as exc:  # one bad file never stops the batch
        step = "write" if isinstance(exc, OverflowError | struct.error) else "read or rewrite"
        return Outcome(ref, "failed", f"could not {step} the file ({type(exc).__name__})")
    if pixels.withheld:  # kept as written files are: a full disk stops the run, loses nothing
        kept = held is not None and ctx.settings.quarantine.keep(held[0], stored, held[1])
        return Outcome(ref, "withheld", pixels.withheld, quarantined=kept)
    write_atomically(ctx.settings.output / relative, data)
    return Outcome(
        ref, "anonymized", output=relative, size=len(data), metadata=metadata,
        pixels_cleaned=pixels.changed,
    )  # fmt: skip


def _held(
    ctx: Context, ref: str, ds: Dataset, pixels: PixelOutcome
) -> tuple[Item, bytes | None] | None:
    """A withheld image's item and preview, for the quarantine (None when there is none)."""
    if ctx.settings.quarantine is None:
        return None
    ruled = ctx.pixels.screen.verdict(ds).regions
    found = tuple((r.x0, r.y0, r.x1, r.y1) for r in pixels.blanked)
    try:
        picture = preview(ds, found, ruled)
    except Exception:  # an aid to the reviewer: pixels that do not render leave it without one
        picture = None
    return Item.withheld(ref, pixels.withheld, ds, found, ruled), picture


def _deidentified(
    ctx: Context, ds: Dataset, inst: Instance, ids: PatientIdentifiers, pixels: PixelOutcome
) -> tuple[bytes, str, ImageMetadata]:
    """The de-identified file's bytes, verified, its path and its metadata. The dataset's
    pixels are let go once written: verification decodes the written ones (a radiograph's
    pixels are not held three times at once)."""
    transfer_syntax = _transfer_syntax(ds)  # the source's, or the one cleaned pixels went in
    record = PixelRecord.of(ds, pixels.digests)
    scanner = deidentify(ds, ctx.profile, Replacements(ids, inst.item_key, ctx.map_uid))
    if pixels.checked:  # every frame examined (not only a trusted header's regions blanked)
        record_clean_pixels(ds)
    if ctx.recipe is not None:
        ctx.recipe.apply(ds)
    ds.file_meta = _file_meta(ds, transfer_syntax)
    ds.preamble = bytes(128)  # the source's preamble is free for any text: never carried over
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    metadata, relative = _metadata(ds, ctx.settings.header_json), output_path(ds)
    ds.pop(PIXEL_DATA, None)
    verify(data, transfer_syntax=transfer_syntax, pixels=record, scanner=scanner)
    return data, relative, metadata


def _give_vrs(ds: Dataset) -> None:
    """A body written in implicit VR under a file meta that says explicit (pydicom reads it as
    it is): every element takes its VR from the dictionary now, so it can be written in the
    syntax the file meta names."""
    if ds.file_meta.TransferSyntaxUID.is_implicit_VR:
        return
    if any(ds.get_item(tag).VR is None for tag in ds.keys()):  # noqa: SIM118
        for _ in ds.iterall():
            pass  # reading an element converts it in place


def output_path(ds: Dataset) -> str:
    """study/series/sop.dcm from the new UIDs only: each part must be a UID Sendit made, so
    the path cannot be empty, absolute, or leave the output folder."""
    parts = [str(ds.get(k) or "") for k in ("StudyInstanceUID", "SeriesInstanceUID")]
    parts.append(f"{ds.get('SOPInstanceUID') or ''}.dcm")
    if not all(_GENERATED_UID.match(p.removesuffix(".dcm")) for p in parts):
        raise VerificationError("a study, series or SOP Instance UID is missing or not generated")
    return "/".join(parts)


_GENERATED_UID = re.compile(r"^2\.25\.\d{1,39}$")  # Pseudonymizer.uid: 2.25 and 128 bits


def _file_meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    """Sendit's own file meta, built fresh: nothing of the source's (its AE title, address,
    implementation name or private information) is carried over."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "SENDIT"
    return meta


def _metadata(ds: Dataset, header_json: bool) -> ImageMetadata:
    """Read from the de-identified dataset only: nothing here can identify anyone."""
    values = {}
    for name, keyword in KEYWORDS.items():
        value = ds.get(keyword)
        values[name] = (
            None if value in (None, "") else (value if isinstance(value, int) else str(value))
        )
    if header_json:
        values["header"] = ds.to_json(bulk_data_threshold=1024, bulk_data_element_handler=_no_bulk)
    return ImageMetadata(**values)


def _no_bulk(_elem: object) -> str:
    return ""  # bulk values (pixel data, large binaries) are not metadata


def _transfer_syntax(ds: Dataset) -> pydicom.uid.UID:
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return meta.TransferSyntaxUID
    # No file meta: say what the body was read as.
    if ds.original_encoding[1]:
        return pydicom.uid.ImplicitVRLittleEndian
    if ds.original_encoding[0]:
        return pydicom.uid.ExplicitVRLittleEndian
    return pydicom.uid.ExplicitVRBigEndian


def _integrity_problem(ds: Dataset, stored: bytes) -> str | None:
    """A file cut short: pydicom reads one without complaint, up to where it ends."""
    if _ends_inside_an_element(ds, stored):
        return "truncated: the file ends inside an element"
    if not any(t in ds for t in PIXEL_TAGS):
        if _is_image_class(ds.get("SOPClassUID")):
            return "truncated: an image without pixel data (the file may end before it)"
        return None
    if PIXEL_DATA not in ds:
        return None
    raw = ds.get_item(PIXEL_DATA)
    value = raw.value or b""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID") and meta.TransferSyntaxUID.is_compressed:
        try:
            for _ in generate_fragments(value):
                pass
        except (ValueError, EOFError):
            return "truncated pixel data"
        return None
    try:
        frame_count(ds)  # a declared frame count that is not a count
        expected = get_expected_length(ds, unit="bytes")  # 4:2:2 and 1-bit pixels included
    except (AttributeError, TypeError, ValueError, KeyError):
        return "pixel data without a usable image description"
    return "truncated pixel data" if len(value) < expected else None


UNDEFINED_LENGTH = 0xFFFFFFFF


def _is_image_class(uid: object) -> bool:
    """An Image Storage SOP class, which must carry pixels (SR, RT structure sets, presentation
    states and the like are objects of their own kind and carry none)."""
    entry = UID_dictionary.get(str(uid or ""))
    return bool(entry) and entry[0].endswith("Image Storage") and "Legacy" not in entry[0]


def _ends_inside_an_element(ds: Dataset, stored: bytes) -> bool:
    """The last element declares more bytes than the file holds, or what follows it is the
    start of another one (not zero padding). Deflated files are checked by zlib instead."""
    meta = getattr(ds, "file_meta", None)
    if not ds or (meta is not None and meta.get("TransferSyntaxUID") == DEFLATED):
        return False
    last = ds.get_item(max(ds.keys()))
    if not isinstance(last, RawDataElement) or last.length == UNDEFINED_LENGTH:
        return False  # encapsulated pixel data: its fragments are checked below
    end = last.value_tell + last.length
    return end > len(stored) or any(stored[end:])
