"""The batch's plan: one pass over the source, written to disk as it goes, dealt onto shards.

`make` walks the folders once (`discovery.candidate_files`), reads each candidate's header in
the pool (`discovery.read_header`, streamed in chunks) and writes a row per file to an SQLite
file: its path, size and mtime, its study, series and patient, or the problem that keeps it out
(not DICOM, truncated, a duplicate SOP Instance UID...), recorded once. Then it groups Study >
Series and deals the series onto shards, largest first onto the lightest (image count and bytes
weigh equally). Nothing per file stays in memory: a process holds one series at a time.

The plan holds source paths and patient IDs, so it stays on the workspace volume (a temporary
folder on a laptop) and never reaches status, Events or logs: only its counts (`PlanReport`) do.
It is written to a temporary file and renamed, so a reader sees a whole plan or none, and
retries and reruns open it again. What changed in the source since (`Plan.series`: a file
modified or removed; `Plan.added`: a file that is new) is reported, never mixed in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor
from itertools import groupby, islice
from pathlib import Path

from sendit_api.errors import Permanent
from sendit_api.status import PlanReport

from ..identifiers.replacements import Entities
from ..pool import bounded_map
from ..report import SOURCE_CHANGED, UNREADABLE, counted
from .discovery import Candidate, Instance, Problem, candidate_files, read_header

log = logging.getLogger("sendit")

FORMAT = 1  # of the file; a plan of another format is made again
CHUNK = 64  # candidates per pool task: one round trip per chunk, not per file
# Reasons a file is counted as failed (an image that did not make it) rather than skipped.
FAILED_PREFIXES = (*UNREADABLE, *SOURCE_CHANGED)
CHANGED = f"{SOURCE_CHANGED[0]} (modified or removed): not processed"
ADDED = f"{SOURCE_CHANGED[1]}: not in this batch (plan a new batch for it)"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (
    path BLOB NOT NULL,  -- the name's bytes (a name need not be UTF-8)
    root INTEGER NOT NULL, size INTEGER, mtime INTEGER,
    study TEXT, series TEXT, sop TEXT, patient TEXT, item TEXT, timestamp TEXT,
    problem TEXT  -- why the file is in no shard; NULL for an instance
);
-- One instance per SOP Instance UID: a second one is recorded as a duplicate.
CREATE UNIQUE INDEX instance_sop ON files (sop) WHERE problem IS NULL;
CREATE TABLE series (
    id INTEGER PRIMARY KEY, study TEXT NOT NULL, uid TEXT NOT NULL,
    images INTEGER NOT NULL, bytes INTEGER NOT NULL, shard INTEGER
);
"""


def is_failure(reason: str) -> bool:
    return reason.startswith(FAILED_PREFIXES)


def fingerprint(folders: list[Path], parallelism: int) -> str:
    """What a plan was made for: the same folders, dealt onto the same number of shards."""
    text = json.dumps([FORMAT, [str(f.resolve()) for f in folders], parallelism])
    return hashlib.sha256(text.encode()).hexdigest()


class Plan:
    """An opened plan, read-only. One process, one connection (SQLite's rule)."""

    def __init__(self, path: Path) -> None:
        try:
            self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
            meta = dict(self.db.execute("SELECT key, value FROM meta"))
            self.report = PlanReport(**json.loads(meta["report"]))
            self.fingerprint = meta["fingerprint"]
            self.roots = [Path(r) for r in json.loads(meta["roots"])]
        except (sqlite3.Error, KeyError, ValueError, TypeError):
            raise Permanent("the workspace holds no readable plan of this batch") from None

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *_: object) -> None:
        self.db.close()

    @property
    def shards(self) -> int:
        return self.report.shards

    def problems(self) -> Iterator[Problem]:
        """Every file the plan keeps out, once each, in the order of the walk."""
        rows = self.db.execute("SELECT path, root, problem FROM files WHERE problem IS NOT NULL")
        for path, root, reason in rows:
            yield Problem(Path(os.fsdecode(path)), self.roots[root], reason)

    def shard_totals(self, shard: int) -> tuple[int, int, int]:
        """(images, studies, series) of one shard."""
        row = self.db.execute(
            "SELECT TOTAL(images), COUNT(DISTINCT study), COUNT(*) FROM series WHERE shard = ?",
            (shard,),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def entities(self, shard: int) -> Entities:
        """The shard's patients and their studies (what identifiers are resolved for)."""
        entities: dict[str, dict[str, str | None]] = {}
        for patient, item, stamp in self.db.execute(
            f"SELECT f.patient, f.item, f.timestamp {_SHARD_FILES}", (shard,)
        ):
            entities.setdefault(patient, {}).setdefault(item, stamp)
        return entities

    def series(self, shard: int) -> Iterator[tuple[list[Instance], list[Problem]]]:
        """The shard's series, one at a time, in a stable order (study, series, SOP UID): the
        instances unchanged since planning, and a problem for each file modified or removed."""
        rows = self.db.execute(
            "SELECT f.path, f.root, f.size, f.mtime, f.patient, f.item, f.study, f.series,"
            f" f.sop, f.timestamp, s.id {_SHARD_FILES}",
            (shard,),
        )
        for _, group in groupby(rows, key=lambda row: row[-1]):
            kept: list[Instance] = []
            changed: list[Problem] = []
            for path, root, size, mtime, *ids, _ in group:
                p, r = Path(os.fsdecode(path)), self.roots[root]
                if _stat(p) == (size, mtime):
                    kept.append(Instance(p, r, *ids))
                else:
                    changed.append(Problem(p, r, CHANGED))
            yield kept, changed

    def added(self, folders: list[Path]) -> Iterator[Problem]:
        """Files in the folders now that the plan does not know: a listing, no file is read."""
        for found in candidate_files(folders):
            if isinstance(found, Candidate) and not self._knows(found.path):
                yield Problem(found.path, found.root, ADDED)

    def _knows(self, path: Path) -> bool:
        known = self.db.execute("SELECT 1 FROM files WHERE path = ?", (os.fsencode(path),))
        return known.fetchone() is not None


# The rows of one shard's instances, series by series.
_SHARD_FILES = """
FROM series s JOIN files f
  ON f.study = s.study AND f.series = s.uid AND f.problem IS NULL
WHERE s.shard = ?
ORDER BY s.id, f.sop
"""


def open_or_make(
    path: Path, folders: list[Path], parallelism: int, executor: Executor, window: int
) -> tuple[Plan, bool]:
    """The plan at `path` if it was made for these folders and this parallelism (a retry or a
    rerun), else a new one: the plan, and whether it was made now."""
    if path.is_file():
        try:
            plan = Plan(path)
        except Permanent:
            log.warning("the plan in the workspace is unreadable: planning again")
        else:
            if plan.fingerprint == fingerprint(folders, parallelism):
                log.info("reusing the batch's plan (%s)", counted(plan.shards, "shard"))
                return plan, False
            plan.db.close()
            log.info("the plan in the workspace is for other folders: planning again")
    make(path, folders, parallelism, executor, window)
    return Plan(path), True


def make(
    path: Path, folders: list[Path], parallelism: int, executor: Executor, window: int
) -> PlanReport:
    """Plan the batch into `path` (atomically: a whole plan, or the one that was there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: a replacement pod may start while the one it replaces still writes.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)  # (mode 0600; SQLite makes its database in the empty file)
    tmp = Path(name)
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            # A crash leaves a temporary file that is never read: no journal, no syncs.
            db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA)
            db.execute("BEGIN")
            report = _fill(db, folders, parallelism, executor, window)
            db.execute("COMMIT")
        finally:
            db.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # of attempts killed mid-pass
        stale.unlink(missing_ok=True)
    _sync_folder(path.parent)
    log.info(
        "planned %s in %s onto %s (%s skipped, %d failed)",
        counted(report.discovered, "image"),
        counted(report.series, "series"),
        counted(report.shards, "shard"),
        counted(report.skipped, "file"),
        report.failed,
    )
    return report


def _fill(
    db: sqlite3.Connection, folders: list[Path], parallelism: int, executor: Executor, window: int
) -> PlanReport:
    roots = [f.resolve() for f in folders]
    index = {root: n for n, root in reversed(list(enumerate(roots)))}  # a folder twice: the first
    tally = {"skipped": 0, "failed": 0, "reads": 0}

    def problem(p: Problem) -> None:
        tally["failed" if is_failure(p.reason) else "skipped"] += 1
        db.execute(
            "INSERT INTO files (path, root, problem) VALUES (?, ?, ?)",
            (os.fsencode(p.path), index[p.root], p.reason),
        )

    def candidates() -> Iterator[Candidate]:
        for found in candidate_files(roots):
            if isinstance(found, Problem):
                problem(found)
            else:
                tally["reads"] += 1
                yield found

    for results in bounded_map(executor, read_headers, _chunks(candidates(), CHUNK), window):
        for result, size, mtime in results:
            if isinstance(result, Problem):
                problem(result)
                continue
            i = result
            try:
                db.execute(
                    "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (
                        os.fsencode(i.path),
                        index[i.root],
                        size,
                        mtime,
                        i.study_uid,
                        i.series_uid,
                        i.sop_uid,
                        i.patient_key,
                        i.item_key,
                        i.timestamp,
                    ),
                )
            except sqlite3.IntegrityError:  # the unique SOP Instance UID
                problem(Problem(i.path, i.root, "duplicate SOP Instance UID: skipped"))
    db.execute("CREATE INDEX instance_series ON files (study, series, sop) WHERE problem IS NULL")
    db.execute("CREATE INDEX file_path ON files (path)")  # for `Plan.added`
    db.execute(
        "INSERT INTO series (study, uid, images, bytes) SELECT study, series, COUNT(*),"
        " SUM(size) FROM files WHERE problem IS NULL GROUP BY study, series ORDER BY study, series"
    )
    series, studies, images, size = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT study), TOTAL(images), TOTAL(bytes) FROM series"
    ).fetchone()
    shards = max(1, min(parallelism, series))
    _deal(db, shards, int(images), int(size))
    db.execute("CREATE INDEX series_shard ON series (shard, id)")
    report = PlanReport(
        shards=shards,
        discovered=int(images),
        studies=studies,
        series=series,
        skipped=tally["skipped"],
        failed=tally["failed"],
        header_reads=tally["reads"],
    )
    meta = {
        "fingerprint": fingerprint(folders, parallelism),
        "roots": json.dumps([str(r) for r in roots]),
        "report": json.dumps(dataclasses.asdict(report)),
    }
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    return report


def _deal(db: sqlite3.Connection, shards: int, images: int, size: int) -> None:
    """Largest series first onto the lightest shard; a series weighs its share of the batch's
    images plus its share of the batch's bytes. The order is read whole (SQLite sorts it) before
    the first shard is written."""
    heap = [(0.0, n) for n in range(shards)]
    order = db.execute(
        "SELECT id, images * 1.0 / ? + bytes * 1.0 / ? AS weight FROM series"
        " ORDER BY weight DESC, id",
        (max(images, 1), max(size, 1)),
    )

    def assignments() -> Iterator[tuple[int, int]]:
        for series, weight in order:
            load, shard = heapq.heappop(heap)
            heapq.heappush(heap, (load + weight, shard))
            yield shard, series

    db.cursor().executemany("UPDATE series SET shard = ? WHERE id = ?", assignments())


def read_headers(chunk: list[Candidate]) -> list[tuple[Instance | Problem, int, int]]:
    """In the pool: each candidate's header, with its size and mtime as they were read."""
    out: list[tuple[Instance | Problem, int, int]] = []
    for candidate in chunk:
        size, mtime = _stat(candidate.path) or (0, 0)
        out.append((read_header(candidate), size, mtime))
    return out


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _chunks(items: Iterable[Candidate], n: int) -> Iterator[list[Candidate]]:
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
