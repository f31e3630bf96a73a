"""`sendit`: the worker's command line. Subcommands are thin adapters: they turn arguments into
a typed batch and a placement, call the domain, and decide the exit code, here and only here
(the codes are sendit_api.exits's). Every mistake a user can make ends in one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sendit_api import exits
from sendit_api.errors import Permanent, Transient
from sendit_api.status import JOB_STAGES

from ..pool import Interrupted, available_cpus, stopping_on_signals

if TYPE_CHECKING:
    from ..report import Report

log = logging.getLogger("sendit")

DESCRIPTION = """De-identify folders of DICOM images (header and pixels) and deliver them: to a
local folder (`sendit run FOLDER --output DIR`), or to Google Cloud Storage, BigQuery, Pub/Sub
or a PACS (`sendit run -f batch.yaml`). The same pipeline runs in Kubernetes as a SenditBatch.
Try it on made-up data: `sendit sample in` then `sendit run in --output out`."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with stopping_on_signals():
        try:
            return args.command(args)
        except Interrupted as exc:
            print(f"sendit: interrupted{exc.detail}", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exits.interrupted(exc.signum))  # see stopping_on_signals: no thread joins
        except Permanent as exc:
            print(f"sendit: {exc}", file=sys.stderr)
            return exits.PERMANENT
        except Transient as exc:
            print(f"sendit: incomplete, try again: {exc}", file=sys.stderr)
            return exits.INCOMPLETE
        except ModuleNotFoundError as exc:  # an install without the worker's packages
            print(f"sendit: {exc.name} is missing: pip install 'sendit[worker]'", file=sys.stderr)
            return exits.PERMANENT
        except OSError as exc:  # a disk full, a folder gone: the system's reason, not a path
            reason = exc.strerror or type(exc).__name__
            code = errno.errorcode.get(exc.errno or 0, "")
            print(f"sendit: stopped: {reason}{f' ({code})' if code else ''}", file=sys.stderr)
            return exits.INCOMPLETE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sendit",
        description=DESCRIPTION,
        epilog=exits.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    # -q after the command too (`sendit run -q`): SUPPRESS leaves the top level's value alone
    # unless the flag is given here.
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="warnings and errors only",
    )

    r = sub.add_parser(
        "run",
        parents=[quiet],
        help="de-identify DICOM folders into a local folder",
        description="De-identify DICOM folders into a local folder, or deliver a manifest's "
        "batch to its destinations.",
        epilog=exits.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "folders",
        nargs="*",
        type=Path,
        metavar="FOLDER",
        help="a folder of DICOM files (a study or an export), walked recursively; the source is "
        "never modified",
    )
    r.add_argument("-f", "--file", type=Path, help="a SenditBatch manifest")
    r.add_argument("-o", "--output", type=Path, help="where de-identified files go")
    r.add_argument("--report", type=Path, help="write the JSON run report here")
    r.add_argument(
        "--quarantine",
        type=Path,
        metavar="DIR",
        help="keep each withheld image, unchanged, in DIR for review (`sendit review`): a "
        "folder inside the trust boundary, outside the output and the inputs",
    )
    r.add_argument("--key-file", type=Path, help="the pseudonym key (else $SENDIT_PSEUDONYM_KEY)")
    r.add_argument("--recipe", type=Path, help="a deid recipe applied on top of the profile")
    r.add_argument(
        "--filter", type=Path, action="append", default=[], help="an extra deid filter file"
    )
    r.add_argument(
        "--pixels",
        choices=("clean", "withhold"),
        help="burned-in text: clean (blank it, the default) or withhold every flagged image",
    )
    r.add_argument(
        "--trust-burned-in-annotation",
        action="store_true",
        help="a risk: skip text detection where the header says BurnedInAnnotation=NO",
    )
    r.add_argument(
        "--retain-recognizable-visual-features",
        action="store_true",
        help="a risk: release images declared to show a face (withheld by default)",
    )
    r.add_argument("--identifier-service", metavar="URL", help="a DASHER-style service")
    r.add_argument(
        "--keep-descriptor",
        action="append",
        default=[],
        metavar="KEYWORD",
        help="keep (cleaned) a description beyond the default list, e.g. ImageComments",
    )
    r.add_argument(
        "--keep-ages", action="store_true", help="keep ages of 90 and over (default: 090Y)"
    )
    r.add_argument(
        "--workers",
        type=_at_least(1),
        default=0,
        help=f"processes (default: {available_cpus()}, the CPUs this process may use)",
    )
    r.set_defaults(command=_run)

    s = sub.add_parser(
        "sample", parents=[quiet], help="make identified-looking sample folders to try Sendit on"
    )
    s.add_argument("output", type=Path, metavar="DIR", help="where the sample folders go")
    s.add_argument("--patients", type=_at_least(1), default=5, help="made-up patients (default 5)")
    s.add_argument(
        "--files",
        type=_at_least(1),
        default=40,
        help="files in all, shared out among the patients (default 40)",
    )
    s.add_argument(
        "--burned-in",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="burn each patient's name and ID into their first image's pixels and make the "
        "last file a scanned letter (default: yes)",
    )
    s.set_defaults(command=_sample)

    snd = sub.add_parser(
        "send", parents=[quiet], help="deliver a batch staged with send: manual (stage two)"
    )
    snd.add_argument("-f", "--file", type=Path, required=True, help="the SenditBatch manifest")
    snd.add_argument("--staging", type=Path, help="the staging folder (default: as stage one)")
    snd.add_argument("--report", type=Path, help="write the JSON report here")
    snd.set_defaults(command=_send)

    w = sub.add_parser(
        "worker", parents=[quiet], help="one pod of a batch's Job (run by the operator)"
    )
    w.add_argument("--namespace", required=True)
    w.add_argument("--batch", required=True, help="the SenditBatch's name")
    w.add_argument("--stage", choices=JOB_STAGES, default="process")
    w.add_argument("--send", action="store_true", help="process, then deliver from this pod")
    w.add_argument("--shards", type=int, required=True, help="the Job's completions")
    w.add_argument("--source", type=Path, required=True, help="where the source is mounted")
    w.add_argument("--work", type=Path, required=True, help="the workspace mount")
    w.add_argument("--config", type=Path, required=True, help="where ConfigMaps are mounted")
    w.add_argument("--local", type=Path, help="the local destination's mount")
    w.set_defaults(command=_worker)

    wa = sub.add_parser(
        "watch", parents=[quiet], help="one scan of a SenditWatch (run by its CronJob)"
    )
    wa.add_argument("--namespace", required=True)
    wa.add_argument("--watch", required=True, help="the SenditWatch's name")
    wa.add_argument("--source", type=Path, required=True, help="where the volume is mounted")
    wa.set_defaults(command=_watch)

    st = sub.add_parser(
        "status", parents=[quiet], help="a batch's progress, until it is final (exit code: how)"
    )
    st.add_argument("batch", metavar="NAME", help="the SenditBatch's name")
    st.add_argument("-n", "--namespace", default="default")
    st.add_argument("--no-wait", dest="wait", action="store_false", help="print once and exit")
    st.add_argument(
        "--timeout", type=float, default=0, help="give up after this many seconds (0: never)"
    )
    st.set_defaults(command=_status)

    _review_parser(sub, quiet)

    loc = sub.add_parser(
        "locate", parents=[quiet], help="find the file behind a reference from a report"
    )
    loc.add_argument("ref", help="a reference such as 0:ABCDEFGHIJ")
    loc.add_argument(
        "folders", nargs="+", type=Path, metavar="FOLDER", help="the run's folders, in its order"
    )
    loc.add_argument(
        "--key-file", type=Path, help="the run's pseudonym key (else as `sendit run` finds it)"
    )
    loc.set_defaults(command=_locate)
    return parser


def _review_parser(sub: Any, quiet: argparse.ArgumentParser) -> None:
    rv = sub.add_parser(
        "review",
        parents=[quiet],
        help="withheld images kept in a quarantine: list, show, release, reject",
        description="A quarantine's withheld images (`sendit run --quarantine DIR`, or a "
        "batch's <uid>/quarantine on its workspace volume): list them, look at one, release "
        "them through the whole pipeline again with a region or a rule, or reject them. Every "
        "decision goes to DIR/audit.jsonl.",
    )
    actions = rv.add_subparsers(required=True, metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("quarantine", type=Path, metavar="DIR", help="the quarantine folder")
    refs = argparse.ArgumentParser(add_help=False)
    refs.add_argument("refs", nargs="+", metavar="REF", help="references, as `review list` shows")
    rule = argparse.ArgumentParser(add_help=False)
    rule.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="x,y,w,h",
        help="a region to blank, in the image's pixels (repeatable)",
    )
    rule.add_argument("--rule", type=Path, metavar="FILE", help="a deid filter file to blank by")

    ls = actions.add_parser("list", parents=[quiet, where], help="every image and its state")
    ls.set_defaults(command=_review("list_items"))
    sh = actions.add_parser(
        "show",
        parents=[quiet, where, rule],
        help="one image: why, what was found, its preview (with --region or --rule: the "
        "preview with those outlined, to check them)",
    )
    sh.add_argument("ref", metavar="REF")
    sh.add_argument("-o", "--output", type=Path, help="write the preview here")
    sh.add_argument("--open", action="store_true", help="open the preview in a viewer")
    sh.set_defaults(command=_review("show"))
    rl = actions.add_parser(
        "release",
        parents=[quiet, where, refs, rule],
        help="de-identify again with a region or rule added, verify, deliver once",
        description="Release images: they go through header and pixel de-identification again "
        "with the region or rule added to the batch's filters, and through verification, and "
        "are delivered to the batch's destinations once. Locally the release runs here; for "
        "a cluster batch's quarantine it is a SenditBatch, printed or (--apply) applied. "
        "Exit 0: released (or released before: nothing is sent again); 3: the pipeline "
        "withheld some again (they wait); 2: a mistake, nothing changed.",
    )
    rl.add_argument(
        "--save-rule",
        type=Path,
        metavar="FILE",
        help="also save the region as a rule for each image's device (manufacturer, model, "
        "size) in this deid filter file, for later batches (--filter FILE)",
    )
    rl.add_argument("--key-file", type=Path, help="the batch's pseudonym key (local runs)")
    rl.add_argument("--workers", type=_at_least(1), default=0, help="processes (local runs)")
    rl.add_argument("--apply", action="store_true", help="apply the release batch (a cluster's)")
    rl.set_defaults(command=_review("release"))
    rj = actions.add_parser("reject", parents=[quiet, where, refs], help="never to be sent")
    rj.set_defaults(command=_review("reject"))


def _review(action: str):
    def run(args: argparse.Namespace) -> int:
        from . import review

        return getattr(review, action)(args)

    return run


def _at_least(minimum: int):
    """An argparse type: a whole number no smaller than `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def _version() -> str:
    try:
        return metadata.version("sendit")
    except metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "(not installed)"


def _run(args: argparse.Namespace) -> int:
    from sendit_api.spec import parse_batch

    from ..destinations.errors import DeliveryError
    from ..run.batch import run_batch
    from ..run.placement import LocalPlacement
    from ..run.progress import TerminalProgress

    if args.file and args.folders:
        raise Permanent("give folders or -f MANIFEST, not both")
    if args.file:
        manifest, base = _read_manifest(args.file), args.file.resolve().parent
    elif args.folders:
        if args.output is None:
            raise Permanent("give --output DIR (or run a manifest with destinations.local.path)")
        manifest, base = _folders_manifest(args.folders), Path.cwd()
    else:
        raise Permanent("nothing to do: give one or more folders, or -f MANIFEST")
    _override(manifest["spec"], args)
    batch = parse_batch(manifest)
    placement = LocalPlacement(base, key_file=args.key_file, quarantine_dir=args.quarantine)
    _check_inputs(placement.folders(batch.spec.source))
    if args.report:
        _check_report(args.report, placement.workspace(batch))
    deliver = batch.spec.send == "auto"
    progress = TerminalProgress()
    try:
        report = run_batch(batch, placement, progress, deliver=deliver, workers=args.workers)
    except DeliveryError as exc:  # the report still says what was done, then exit 1
        progress.close()
        if exc.report is not None:
            _print_report(exc.report, args.report, args.quarantine)
        raise
    except Interrupted as exc:
        progress.close()
        exc.detail = f": {progress.written()}; rerun to finish"
        raise
    _print_report(report, args.report, args.quarantine)
    return run_exit_code(report)


def run_exit_code(report: Report) -> int:
    """A finished run's code: files that failed on their own account (truncated, unreadable,
    not de-identifiable) fail the same way in a rerun, so they are not an incomplete run."""
    if report.rerun_may_complete:
        return exits.INCOMPLETE
    return exits.FILES_FAILED if report.failed else exits.OK


def _check_inputs(folders: list[Path]) -> None:
    """Every input is a folder, before anything is planned. The message numbers the folder
    instead of naming it: folder names may name a patient."""
    for n, folder in enumerate(folders, 1):
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            which = (
                f"input folder {n} of {len(folders)}" if len(folders) > 1 else "the input folder"
            )
            raise Permanent(f"{which} {what} (not named here: folder names may name a patient)")


def _check_report(path: Path, output: Path) -> None:
    """The report can be written, outside the output: found now, not after the run."""
    if _inside(path, output):
        raise Permanent("the report must be written outside the output folder")
    if path.is_dir():
        raise Permanent("--report names a folder: give the path of a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Permanent(f"the report's folder cannot be made ({exc.strerror})") from None


def _print_report(report: Report, path: Path | None, quarantine: Path | None = None) -> None:
    """The counts, then each file that did not make it and why (the first 20), then where the
    withheld images wait for review."""
    print(f"sendit: {report.summary()}", file=sys.stderr)
    files = [(f.ref, f"withheld: {f.reason}") for f in report.withheld_files]
    files += [(e.ref, e.reason) for e in report.errors]
    for ref, reason in files[:20]:
        print(f"  {ref}: {reason}", file=sys.stderr)
    if len(files) > 20:
        print(f"  ... and {len(files) - 20} more (see --report)", file=sys.stderr)
    if report.quarantined:
        print(
            f"  {report.quarantined} withheld kept for review: sendit review list {quarantine}",
            file=sys.stderr,
        )
    elif report.withheld:
        print("  (--quarantine DIR keeps withheld images for review)", file=sys.stderr)
    if path:
        report.write(path)


def _read_manifest(path: Path) -> dict[str, Any]:
    import yaml

    try:
        manifest = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise Permanent(f"cannot read the manifest: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise Permanent(f"the manifest is not valid YAML: {type(exc).__name__}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("spec"), dict):
        raise Permanent("the manifest is not a SenditBatch (no spec mapping)")
    return manifest


def _folders_manifest(folders: list[Path]) -> dict[str, Any]:
    """`sendit run FOLDER...` as the batch it stands for."""
    from sendit_api.names import API_VERSION, KIND

    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "local"},
        "spec": {"source": {"folders": [str(f.resolve()) for f in folders]}},
    }


def _override(spec: dict[str, Any], args: argparse.Namespace) -> None:
    """Flags over the manifest: the output is the local destination; recipe, filters and the
    identifier service as the spec spells them."""
    deid = spec.setdefault("deidentify", {})
    if args.output:
        spec.setdefault("destinations", {})["local"] = {"path": str(args.output.resolve())}
    if args.recipe:
        deid["recipe"] = {"file": str(args.recipe.resolve())}
    if args.filter:
        filters = deid.setdefault("pixels", {}).setdefault("filters", [])
        filters += [{"file": str(f.resolve())} for f in args.filter]
    if args.pixels:
        deid.setdefault("pixels", {})["policy"] = args.pixels
    if args.trust_burned_in_annotation:
        deid.setdefault("pixels", {})["trustBurnedInAnnotation"] = True
    if args.retain_recognizable_visual_features:
        deid.setdefault("pixels", {})["retainRecognizableVisualFeatures"] = True
    if args.identifier_service:
        deid["identifierService"] = {"url": args.identifier_service}
    if args.keep_descriptor:
        deid["keepDescriptors"] = [*deid.get("keepDescriptors", []), *args.keep_descriptor]
    if args.keep_ages:
        deid["capAges"] = False


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _send(args: argparse.Namespace) -> int:
    """Stage two of send: manual: deliver a staged batch, then remove the staging data."""
    from sendit_api.spec import parse_batch

    from ..run.batch import send_batch
    from ..run.placement import LocalPlacement
    from ..run.progress import TerminalProgress

    batch = parse_batch(_read_manifest(args.file))
    placement = LocalPlacement(args.file.resolve().parent, workspace_override=args.staging)
    report = send_batch(batch, placement, TerminalProgress())
    print(f"sendit: SENT: {report.summary()}", file=sys.stderr)
    if args.report:
        report.write(args.report)
    return exits.OK


def _sample(args: argparse.Namespace) -> int:
    from ..report import counted
    from .sample import make_sample

    made = make_sample(
        args.output, patients=args.patients, files=args.files, burned_in=args.burned_in
    )
    print(
        f"sendit: wrote {counted(made.files, 'sample file')} for "
        f"{counted(made.patients, 'patient')}",
        file=sys.stderr,
    )
    if made.burned_in or made.documents:
        print(
            f"  {counted(made.burned_in, 'image')} with the patient's name burned into the "
            f"pixels, {counted(made.documents, 'scanned letter')}",
            file=sys.stderr,
        )
    return exits.OK


def _worker(args: argparse.Namespace) -> int:
    from .pod import main as worker_main

    return worker_main(args)


def _watch(args: argparse.Namespace) -> int:
    from .watch import main as watch_main

    return watch_main(args)


def _status(args: argparse.Namespace) -> int:
    from .status import main as status_main

    return status_main(args)


def _locate(args: argparse.Namespace) -> int:
    """Print the local path behind a report's reference: for the person who ran the batch."""
    from ..identifiers.pseudonyms import Pseudonymizer, load_key

    key, _ = load_key(args.key_file, default="read")
    folder, _, token = args.ref.partition(":")
    try:
        root = args.folders[int(folder)].resolve()
    except (ValueError, IndexError):
        raise Permanent("the reference's folder number does not match the folders given") from None
    pseudonymizer = Pseudonymizer(key)
    for path in sorted(root.rglob("*")):
        if pseudonymizer.token("file", str(path.relative_to(root)), 10) == token:
            print(path)
            return exits.OK
    print("sendit: no file under that folder has this reference", file=sys.stderr)
    return exits.INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
