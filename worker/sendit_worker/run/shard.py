"""One shard of a batch: its plan, its identifiers, its series de-identified in a process pool.

`run_shard` de-identifies one shard of the batch's plan (`intake.planner`) into an output
folder, reading only that shard's files; alone (a laptop, a one-pod batch) it plans the batch
itself first, as one shard. Series are streamed from the plan to the pool, one at a time; each
instance is `instance`'s. The batch runner (`batch`) wraps it with delivery, staging and
progress. Callbacks say when the totals are known and when each series is done, so destinations
can deliver series by series while the rest is still being de-identified.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sendit_api.errors import Permanent

from ..destinations.image import DeidentifiedImage
from ..header.profile import Options
from ..identifiers.pseudonyms import Pseudonymizer
from ..identifiers.replacements import IdentifierSource, LocalIdentifiers
from ..intake.discovery import Problem
from ..intake.planner import Plan, is_failure, open_or_make
from ..pixels import DEFAULT_PIXELS, PixelPolicy
from ..pool import available_cpus, bounded_map, pool
from ..quarantine.store import Quarantine, release_refs
from ..report import FileError, Report, counted
from .instance import Outcome, Settings, init_process, process_series

log = logging.getLogger("sendit")


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
class ShardOptions:
    folders: list[Path]
    output: Path
    key: bytes
    workers: int = 0  # 0: every CPU this process may use
    identifiers: IdentifierSource | None = None  # default: LocalIdentifiers from the key
    recipe: Path | None = None
    filters: tuple[Path, ...] = ()
    plan: Path | None = None  # the batch's plan file; None: a temporary one
    # (index, count): the plan's shard this process takes. (0, 1): alone, this run plans the
    # batch itself (or reuses its plan, on a retry) and reports the plan's problems too.
    shard: tuple[int, int] = (0, 1)
    planned: bool = False  # a plan stage made the plan: it must be there, with `count` shards
    on_discovered: Callable[[Report], None] | None = None  # totals known, before any image
    on_series: Callable[[SeriesDone], None] | None = None
    header_json: bool = False  # outcomes carry the header as DICOM JSON (for BigQuery rows)
    profile: Options | None = None  # the batch's profile options; None: the default profile
    pixels: PixelPolicy = DEFAULT_PIXELS
    quarantine: Quarantine | None = None  # where withheld images are kept; None: not kept


def run_shard(options: ShardOptions) -> Report:
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
        quarantine=options.quarantine,
    )
    workers = options.workers or available_cpus()
    window = 2 * workers
    index, count = options.shard
    with pool(workers, init_process, settings) as executor, _plan_file(options.plan) as path:
        if options.planned:
            plan, made = Plan(path), False
            if plan.shards != count:
                plan.db.close()
                raise Permanent("the Job's completions do not match the plan's shards")
        elif count == 1:
            plan, made = open_or_make(path, options.folders, 1, executor, window)
            report.header_reads = plan.report.header_reads if made else 0
        else:
            raise Permanent("a shard of a batch needs the batch's plan")
        with plan:
            problems = iter(()) if options.planned else plan.problems()
            for problem in problems:
                _problem(report, ref, problem)
            if index == 0 and not made:  # a file new since planning: reported once, by shard 0
                for problem in plan.added(options.folders):
                    _problem(report, ref, problem)
            report.discovered, report.studies, report.series = plan.shard_totals(index)
            source = options.identifiers or LocalIdentifiers(pseudonymizer)
            ids = source.resolve(plan.entities(index))
            images, series = counted(report.discovered, "image"), counted(report.series, "series")
            log.info("de-identifying %s in %s", images, series)
            if options.on_discovered:
                options.on_discovered(report)

            def tasks() -> Iterator[list]:
                """Series by series, as the pool takes them: each file with its own patient's
                identifiers (a series may mix patients)."""
                for kept, changed in plan.series(index):
                    for problem in changed:
                        _problem(report, ref, problem)
                    if kept:
                        yield [(ref(i.path), i, ids[i.patient_key]) for i in kept]

            for outcomes in bounded_map(executor, process_series, tasks(), window):
                _tally(report, outcomes)
                if options.on_series:
                    options.on_series(SeriesDone(outcomes))
    log.info("de-identified: %s", report.summary(sent=False))
    return report


@contextmanager
def _plan_file(path: Path | None) -> Iterator[Path]:
    """The batch's plan file, or a temporary one (a laptop: it goes with the run)."""
    if path is not None:
        yield path
        return
    try:
        scratch = tempfile.TemporaryDirectory(prefix="sendit-plan-")
    except FileNotFoundError as exc:  # tempfile tried every candidate: none is writable
        raise Permanent(
            "no writable temporary folder for the batch's plan (it holds source paths, so it "
            "never goes into the output): set TMPDIR to a writable folder, such as a tmpfs"
        ) from exc
    with scratch as folder:
        yield Path(folder) / "plan.sqlite"


def _problem(report: Report, ref, problem: Problem) -> None:
    if is_failure(problem.reason):
        report.fail(ref(problem.path), problem.reason)
    else:
        report.skipped += 1
        report.errors.append(FileError(ref(problem.path), problem.reason))


def _tally(report: Report, outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.status == "anonymized":
            report.anonymized += 1
            report.pixels_cleaned += o.pixels_cleaned
        elif o.status == "withheld":
            report.withhold(o.ref, o.reason)
            report.quarantined += o.quarantined
        else:
            report.fail(o.ref, o.reason)


def _referencer(pseudonymizer: Pseudonymizer, folders: list[Path]) -> Callable[[Path], str]:
    """A file's pseudonymous reference: folder number and a keyed hash of its relative path;
    in a quarantine's release, the reference it was withheld under."""
    roots = [(f.resolve(), release_refs(f.resolve())) for f in folders]

    def ref(path: Path) -> str:
        for n, (root, kept) in enumerate(roots):
            if path == root or path.is_relative_to(root):
                if kept is not None:
                    return kept(path)
                return f"{n}:{pseudonymizer.token('file', str(path.relative_to(root)), 10)}"
        return f"?:{pseudonymizer.token('file', str(path), 10)}"

    return ref
