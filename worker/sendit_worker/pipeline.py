"""The pipeline: discover, resolve identifiers, de-identify series in a process pool, report.

`run` de-identifies one shard of a set of folders into an output folder; the batch runner
(`runner`) wraps it with delivery, staging and progress. Callbacks say when discovery is done
and when each series is, so destinations can deliver series by series while the rest is still
being de-identified.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from .cpus import available_cpus
from .discovery import Candidate, Instance, Problem, candidate_files, group, read_header
from .identifiers import IdentifierSource, LocalIdentifiers
from .images import DeidentifiedImage
from .pixels import DEFAULT_PIXELS, PixelPolicy
from .process import Outcome, Settings, init_process, process_series
from .profile import Options
from .pseudonyms import Pseudonymizer
from .report import FileError, Report

log = logging.getLogger("sendit")

# Reasons a file is counted as failed (an image that did not make it) rather than skipped.
FAILED_PREFIXES = ("truncated", "unreadable", "vanished")


@dataclass(frozen=True)
class SeriesDone:
    """One series finished: its outcomes, in the order of its files."""

    outcomes: list[Outcome]

    def images(self, root: Path) -> list[DeidentifiedImage]:
        """The series' de-identified images, written under root."""
        return [
            DeidentifiedImage(root / o.output, o.size, o.metadata)
            for o in self.outcomes
            if o.status == "anonymized" and o.metadata is not None
        ]


@dataclass
class RunOptions:
    folders: list[Path]
    output: Path
    key: bytes
    workers: int = 0  # 0: every CPU this process may use
    identifiers: IdentifierSource | None = None  # default: LocalIdentifiers from the key
    recipe: Path | None = None
    filters: tuple[Path, ...] = ()
    shard: tuple[int, int] = (0, 1)  # (index, count): which series this process takes
    on_discovered: Callable[[Report], None] | None = None  # totals known, before any image
    on_series: Callable[[SeriesDone], None] | None = None
    header_json: bool = False  # outcomes carry the header as DICOM JSON (for BigQuery rows)
    profile: Options | None = None  # the batch's profile options; None: the default profile
    pixels: PixelPolicy = DEFAULT_PIXELS


def run(options: RunOptions) -> Report:
    report = Report()
    pseudonymizer = Pseudonymizer(options.key)
    ref = _referencer(pseudonymizer, options.folders)
    settings = Settings(
        key=options.key,
        output=options.output,
        recipe=options.recipe,
        filters=tuple(options.filters) + ((options.recipe,) if options.recipe else ()),
        header_json=options.header_json,
        options=options.profile,
        pixels=options.pixels,
    )
    workers = options.workers or available_cpus()
    with _pool(workers, settings) as pool:
        instances = _discover(pool, options, report, ref)
        studies = group(instances)
        mine = {
            (study, series): files
            for study, series_map in studies.items()
            for series, files in series_map.items()
            if shard_of(series, options.shard[1]) == options.shard[0]
        }
        report.studies = len({study for study, _ in mine})
        report.series = len(mine)
        report.discovered = sum(len(files) for files in mine.values())
        source = options.identifiers or LocalIdentifiers(pseudonymizer)
        ids = source.resolve(_entities(mine.values()))
        # Each file with its own patient's identifiers: a series may mix patients.
        tasks = [[(ref(i.path), i, ids[i.patient_key]) for i in files] for files in mine.values()]
        log.info("de-identifying %d images in %d series", report.discovered, len(tasks))
        if options.on_discovered:
            options.on_discovered(report)
        for outcomes in _bounded_map(pool, process_series, tasks, window=2 * workers):
            _tally(report, outcomes)
            if options.on_series:
                options.on_series(SeriesDone(outcomes))
    log.info("de-identified: %s", report.summary())
    return report


def _bounded_map(pool: Executor, fn: Callable, tasks: list, window: int) -> Iterator:
    """Results in order, with at most `window` tasks under way: de-identified series wait on
    disk only as long as delivery (the caller, between results) takes to catch up."""
    pending: deque[Future] = deque()
    for task in tasks:
        pending.append(pool.submit(fn, task))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _discover(pool: Executor, options: RunOptions, report: Report, ref) -> list[Instance]:
    candidates: list[Candidate] = []
    for found in candidate_files(options.folders):
        if isinstance(found, Problem):
            _problem(report, ref, found)
        else:
            candidates.append(found)
    log.info("reading %d files", len(candidates))
    instances: list[Instance] = []
    seen: set[str] = set()
    for result in pool.map(read_header, candidates, chunksize=64):
        if isinstance(result, Problem):
            _problem(report, ref, result)
        elif result.sop_uid in seen:
            _problem(
                report,
                ref,
                Problem(result.path, result.root, "duplicate SOP Instance UID: skipped"),
            )
        else:
            seen.add(result.sop_uid)
            instances.append(result)
    return instances


def _problem(report: Report, ref, problem: Problem) -> None:
    if problem.reason.startswith(FAILED_PREFIXES):
        report.failed += 1
    else:
        report.skipped += 1
    report.errors.append(FileError(ref(problem.path), problem.reason))


def _tally(report: Report, outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.status == "anonymized":
            report.anonymized += 1
        elif o.status == "withheld":
            report.withheld += 1
            report.withheld_files.append(FileError(o.ref, o.reason))
        else:
            report.failed += 1
            report.errors.append(FileError(o.ref, o.reason))


def _entities(series: Iterator[list[Instance]]) -> dict[str, dict[str, str | None]]:
    entities: dict[str, dict[str, str | None]] = {}
    for files in series:
        for inst in files:
            entities.setdefault(inst.patient_key, {}).setdefault(inst.item_key, inst.timestamp)
    return entities


def _referencer(pseudonymizer: Pseudonymizer, folders: list[Path]) -> Callable[[Path], str]:
    """A file's pseudonymous reference: folder number and a keyed hash of its relative path."""
    roots = [f.resolve() for f in folders]

    def ref(path: Path) -> str:
        for n, root in enumerate(roots):
            if path == root or path.is_relative_to(root):
                return f"{n}:{pseudonymizer.token('file', str(path.relative_to(root)), 10)}"
        return f"?:{pseudonymizer.token('file', str(path), 10)}"

    return ref


def shard_of(series_uid: str, count: int) -> int:
    """A stable shard for a series: the same in every process and every run."""
    return int.from_bytes(hashlib.sha256(series_uid.encode()).digest()[:8], "big") % count


class _InlineExecutor(Executor):
    """One worker: everything in this process, no pickling, easiest to debug."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        return map(fn, *iterables)


@contextmanager
def _pool(workers: int, settings: Settings) -> Iterator[Executor]:
    if workers <= 1:
        init_process(settings)
        yield _InlineExecutor()
        return
    with ProcessPoolExecutor(
        workers, initializer=_init_pool_process, initargs=(os.getpid(), settings)
    ) as pool:
        yield pool


def _init_pool_process(parent: int, settings: Settings) -> None:
    """A pool process must not outlive a killed run: it could still write outputs."""
    with suppress(OSError, AttributeError):  # not Linux: the pool's own shutdown is all there is
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the run died before the signal was armed
    init_process(settings)


PR_SET_PDEATHSIG = 1
