"""The quarantine: each withheld image kept, unchanged, inside the trust boundary where the
source already is (a local folder, `sendit run --quarantine DIR`; `<uid>/quarantine` on a
batch's workspace volume, sendit_api.names.quarantine_folder), with why, and a preview.

    quarantine.json                  the batch the images come from: its manifest (what a
                                     release runs with), where its relative paths are, a check
                                     of its pseudonym key
    images/<name>.dcm                each withheld image, byte for byte as it was read
    items/<name>.json                why (the reason, its class), what it is (modality, size,
                                     frames, device), what was found, its state
    previews/<name>.png              its first frame, what was found outlined (pixels.preview)
    releases/<release>/<name>.dcm    released images, moved here: the release batch's source
    releases/<release>.deid, .yaml   the release's rule; in a cluster its manifest
    audit.jsonl                      every decision: who, when, which rule, which reference

Every name is the image's pseudonymous reference (`0:K3JQ7XN2AB` is `0-K3JQ7XN2AB`): no file
name says whose image it is. The images and previews show what the source shows, so the
quarantine is never an output, nor at a destination.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset

from sendit_api.errors import Permanent
from sendit_api.spec import Batch

from ..dicom import frame_count
from ..files import write_atomically
from ..identifiers.pseudonyms import Pseudonymizer
from ..report import WITHHELD_CLASSES, reason_class

JSON = dict[str, Any]
WAITING, RELEASED, REJECTED = "waiting", "released", "rejected"
RECORD = "quarantine.json"
IMAGES, ITEMS, PREVIEWS, RELEASES = "images", "items", "previews", "releases"
AUDIT = "audit.jsonl"


def name_of(ref: str) -> str:
    """A reference as a file name: `0:K3JQ7XN2AB` is `0-K3JQ7XN2AB` (`?:` is `x-`)."""
    folder, _, token = ref.partition(":")
    return f"{'x' if folder == '?' else folder}-{token}"


def ref_of(name: str) -> str:
    folder, _, token = name.partition("-")
    return f"{'?' if folder == 'x' else folder}:{token}"


def key_check(key: bytes) -> str:
    """A token of the pseudonym key (not the key): a release must run with the same one."""
    return Pseudonymizer(key).token("quarantine", "key check", 16)


@dataclass(frozen=True)
class Record:
    """The batch a quarantine's images come from."""

    manifest: JSON  # apiVersion, kind, metadata (name, namespace, uid) and the validated spec
    base: str | None  # a laptop's batch: where its relative paths are; None: a cluster's
    key_check: str

    @classmethod
    def of(cls, batch: Batch, base: Path | None, key: bytes) -> Record:
        meta = batch.manifest.get("metadata") or {}
        manifest = {
            "apiVersion": batch.manifest["apiVersion"],
            "kind": batch.manifest["kind"],
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid") if meta.get(k)},
            "spec": batch.manifest["spec"],
        }
        return cls(manifest, None if base is None else str(base), key_check(key))

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]

    def encoded(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class Item:
    """One withheld image: what it is and why it was kept, nothing that says whose it is."""

    ref: str
    reason: str  # the pipeline's reason (never a value from the image)
    kind: str  # its class (sendit_api.status.WITHHELD_REASONS)
    modality: str
    rows: int
    columns: int
    frames: int
    manufacturer: str
    model: str
    found: tuple[tuple[int, int, int, int], ...] = ()  # text the search found: x0, y0, x1, y1
    ruled: tuple[tuple[int, str], ...] = ()  # the regions the batch's filter rules name
    preview: bool = False  # a preview was made (pixels that do not decode have none)
    state: str = WAITING  # waiting | released | rejected
    release: str = ""  # the release that took it

    @classmethod
    def withheld(
        cls,
        ref: str,
        reason: str,
        ds: Dataset,
        found: tuple[tuple[int, int, int, int], ...],
        ruled: tuple[tuple[int, str], ...],
    ) -> Item:
        try:
            frames = frame_count(ds)
        except (TypeError, ValueError):
            frames = 0
        return cls(
            ref=ref,
            reason=reason,
            kind=reason_class(WITHHELD_CLASSES, reason),
            modality=_text(ds, "Modality"),
            rows=_number(ds, "Rows"),
            columns=_number(ds, "Columns"),
            frames=frames,
            manufacturer=_text(ds, "Manufacturer"),
            model=_text(ds, "ManufacturerModelName"),
            found=found,
            ruled=ruled,
        )

    @classmethod
    def of(cls, data: JSON) -> Item:
        data = dict(data)
        data["found"] = tuple(tuple(box) for box in data.get("found") or ())
        data["ruled"] = tuple((int(v), str(c)) for v, c in data.get("ruled") or ())
        return cls(**data)

    @property
    def size(self) -> str:
        return f"{self.columns}x{self.rows}" + (f"x{self.frames}" if self.frames > 1 else "")


class Quarantine:
    """One quarantine folder. The pool processes get it with the batch's record, which they
    write beside the first image they keep (a batch without withheld images has none)."""

    def __init__(self, root: Path, record: Record | None = None) -> None:
        self.root = root.resolve()  # a release's manifest names it from anywhere
        self._record = record

    @classmethod
    def open(cls, root: Path) -> Quarantine:
        try:
            data = json.loads((root / RECORD).read_text())
        except FileNotFoundError:
            raise Permanent(
                "not a quarantine: no quarantine.json there (a batch writes it with the first "
                "image it withholds)"
            ) from None
        except (OSError, ValueError) as exc:
            raise Permanent(
                f"the quarantine's record cannot be read ({type(exc).__name__})"
            ) from None
        return cls(root, Record(**data))

    @property
    def record(self) -> Record:
        assert self._record is not None, "Quarantine.open, or one made with its record"
        return self._record

    # -- kept by the pipeline ----------------------------------------------------------------

    def keep(self, item: Item, data: bytes, preview: bytes | None) -> bool:
        """The image as it was read, with its item and preview. False when a reviewer already
        decided on it: a rerun that withholds it again leaves the decision as it was."""
        before = self._read(item.ref)
        if before is not None and before.state != WAITING:
            return False
        record = self.record.encoded()
        path = self.root / RECORD
        if not path.exists() or path.read_bytes() != record:
            write_atomically(path, record)
        write_atomically(self.image(item), data)
        if preview is not None:
            write_atomically(self.preview(item), preview)
        else:
            self.preview(item).unlink(missing_ok=True)
        self.save(dataclasses.replace(item, preview=preview is not None))
        return True

    # -- read and decided by a reviewer ------------------------------------------------------

    def items(self) -> list[Item]:
        folder = self.root / ITEMS
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
        return [Item.of(json.loads(p.read_text())) for p in paths]

    def item(self, ref: str) -> Item:
        """Raises Permanent for a reference this quarantine does not hold."""
        item = self._read(ref)
        if item is None:
            raise Permanent(
                f"{ref}: no such reference in this quarantine (see `sendit review list`)"
            )
        return item

    def image(self, item: Item) -> Path:
        """Where its original is: kept, or moved to the release that took it."""
        name = f"{name_of(item.ref)}.dcm"
        if item.release:
            return self.root / RELEASES / item.release / name
        return self.root / IMAGES / name

    def preview(self, item: Item) -> Path:
        return _pictures(self.root, name_of(item.ref))[0]

    def proposal(self, item: Item) -> Path:
        """The preview with a region a reviewer proposes (`sendit review show --region`)."""
        return _pictures(self.root, name_of(item.ref))[1]

    def save(self, item: Item) -> None:
        data = json.dumps(dataclasses.asdict(item), indent=2) + "\n"
        write_atomically(self.root / ITEMS / f"{name_of(item.ref)}.json", data.encode())

    def audit(self, entry: JSON) -> None:
        """One decision, appended and on disk before the command says it is done."""
        line = json.dumps(entry, sort_keys=True) + "\n"
        with open(self.root / AUDIT, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def audited(self) -> list[JSON]:
        path = self.root / AUDIT
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def forget(self, item: Item) -> None:
        """Its original and previews go (retention: cleanup.source delete, once decided)."""
        for path in (self.image(item), *_pictures(self.root, name_of(item.ref))):
            path.unlink(missing_ok=True)

    # -- releases ----------------------------------------------------------------------------

    def new_release(self) -> str:
        """The next release's name, `<batch>-release-<n>`: a SenditBatch name (at most 50
        characters) of its own, so its events and status are its own."""
        folder = self.root / RELEASES
        taken = (
            {p.name if p.is_dir() else p.stem for p in folder.iterdir()}
            if folder.is_dir()
            else set()
        )
        n = len(taken) + 1
        while True:
            suffix = f"-release-{n}"
            name = self.record.name[: 50 - len(suffix)].rstrip("-.") + suffix
            if name not in taken:
                return name
            n += 1

    def move(self, items: list[Item], release: str) -> list[Item]:
        """Into a release (`release` empty: back where they were kept): the items as saved."""
        moved = []
        for item in items:
            after = dataclasses.replace(item, release=release)
            target = self.image(after)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.image(item), target)
            self.save(after)
            moved.append(after)
        return moved

    def _read(self, ref: str) -> Item | None:
        try:
            return Item.of(json.loads((self.root / ITEMS / f"{name_of(ref)}.json").read_text()))
        except FileNotFoundError:
            return None


def release_refs(folder: Path) -> Callable[[Path], str] | None:
    """A release's folder (a quarantine's releases/<release>): its images keep the references
    they were withheld under, the name of their files. None for any other folder."""
    if folder.parent.name != RELEASES or not (folder.parent.parent / RECORD).is_file():
        return None
    return lambda path: ref_of(path.stem)


def remove_release(folder: Path) -> None:
    """A release's images delivered and verified, and cleanup asked for: they go, and so do
    their previews."""
    for image in folder.glob("*.dcm"):
        for path in _pictures(folder.parent.parent, image.stem):
            path.unlink(missing_ok=True)
    shutil.rmtree(folder)


def _pictures(root: Path, name: str) -> tuple[Path, Path]:
    """An image's preview, and its preview with a proposed region: both show its pixels."""
    return root / PREVIEWS / f"{name}.png", root / PREVIEWS / f"{name}-proposed.png"


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value).strip() if value not in (None, "") else ""


def _number(ds: Dataset, keyword: str) -> int:
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0
