"""`sendit`: the command line. Subcommands are thin: parse, build options, call the domain.

Exit codes: 0 every image was anonymized or deliberately withheld; 1 some failed;
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .cpus import available_cpus
from .errors import ConfigError

if TYPE_CHECKING:
    from .identifiers import IdentifierSource
    from .spec import Batch

# Subcommands import what they use when they run: `sendit operator` needs neither pydicom nor
# deid, and starts (and idles) smaller without them.

log = logging.getLogger("sendit")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.command(args)
    except ConfigError as exc:
        print(f"sendit: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sendit", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="de-identify DICOM folders into a local folder")
    r.add_argument("folders", nargs="*", type=Path, metavar="FOLDER")
    r.add_argument("-f", "--file", type=Path, help="a SenditBatch manifest")
    r.add_argument("-o", "--output", type=Path, help="where de-identified files go")
    r.add_argument("--report", type=Path, help="write the JSON run report here")
    r.add_argument("--key-file", type=Path, help="the pseudonym key (else $SENDIT_PSEUDONYM_KEY)")
    r.add_argument("--recipe", type=Path, help="a deid recipe applied on top of the profile")
    r.add_argument(
        "--filter", type=Path, action="append", default=[], help="an extra deid filter file"
    )
    r.add_argument("--identifier-service", metavar="URL", help="a DASHER-style service")
    r.add_argument("--workers", type=int, default=0, help=f"processes (default {available_cpus()})")
    r.set_defaults(command=_run)

    s = sub.add_parser("sample", help="make identified-looking sample folders to try Sendit on")
    s.add_argument("output", type=Path, metavar="DIR")
    s.add_argument("--patients", type=int, default=5)
    s.add_argument("--files", type=int, default=40)
    s.set_defaults(command=_sample)

    snd = sub.add_parser("send", help="deliver a batch staged with send: manual (stage two)")
    snd.add_argument("-f", "--file", type=Path, required=True, help="the SenditBatch manifest")
    snd.add_argument("--staging", type=Path, help="the staging folder (default: as stage one)")
    snd.add_argument("--report", type=Path, help="write the JSON report here")
    snd.set_defaults(command=_send)

    w = sub.add_parser("worker", help="one pod of a batch's Job (run by the operator)")
    w.add_argument("--namespace", required=True)
    w.add_argument("--batch", required=True, help="the SenditBatch's name")
    w.add_argument("--stage", choices=["process", "send"], default="process")
    w.add_argument("--send", action="store_true", help="process, then deliver from this pod")
    w.add_argument("--shards", type=int, required=True, help="the Job's completions")
    w.add_argument("--source", type=Path, required=True, help="where the source is mounted")
    w.add_argument("--work", type=Path, required=True, help="the workspace mount")
    w.add_argument("--config", type=Path, required=True, help="where ConfigMaps are mounted")
    w.add_argument("--local", type=Path, help="the local destination's mount")
    w.set_defaults(command=_worker)

    op = sub.add_parser("operator", help="run the Kubernetes operator (kopf)")
    op.add_argument(
        "--namespace", action="append", help="a namespace to watch (repeat; default: all)"
    )
    op.add_argument("--max-running", type=int, default=10, help="batches running at once")
    op.add_argument("--worker-image", default="sendit:latest", help="the workers' image")
    op.add_argument("--liveness-port", type=int, default=8080, help="0: no /healthz")
    op.add_argument("--metrics-port", type=int, default=9090, help="0: no /metrics")
    op.add_argument("--resync-seconds", type=float, default=30.0)
    op.set_defaults(command=_operator)

    wa = sub.add_parser("watch", help="one scan of a SenditWatch (run by its CronJob)")
    wa.add_argument("--namespace", required=True)
    wa.add_argument("--watch", required=True, help="the SenditWatch's name")
    wa.add_argument("--source", type=Path, required=True, help="where the volume is mounted")
    wa.set_defaults(command=_watch)

    loc = sub.add_parser("locate", help="find the file behind a reference from a report")
    loc.add_argument("ref", help="a reference such as 0:ABCDEFGHIJ")
    loc.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    loc.add_argument("--key-file", type=Path)
    loc.set_defaults(command=_locate)
    return parser


def _run(args: argparse.Namespace) -> int:
    from .pipeline import RunOptions, run
    from .pseudonyms import load_key
    from .spec import load_file

    if args.file and args.folders:
        raise ConfigError("give folders or -f MANIFEST, not both")
    batch = load_file(args.file) if args.file else None
    folders = batch.folders() if batch else args.folders
    if not folders:
        raise ConfigError("nothing to do: give one or more folders, or -f MANIFEST")
    output = args.output or (batch.output() if batch else None)
    if output is None and _wants_delivery(batch):
        output = _default_workdir(batch)
    if output is None:
        raise ConfigError("give --output DIR (or destinations.local.path in the manifest)")
    if any(_overlaps(output, folder) for folder in folders):
        raise ConfigError("the output folder must be outside every input folder")
    if args.report and args.report.resolve().is_relative_to(output.resolve()):
        raise ConfigError("the report must be written outside the output folder")
    key, created = load_key(args.key_file, create_default=True)
    if created:
        log.warning(created)
    recipe = args.recipe or (
        batch.local_file(batch.spec["deidentify"].get("recipe")) if batch else None
    )
    filters = list(args.filter)
    if batch:
        filters += [
            batch.local_file(f) for f in batch.spec["deidentify"]["pixels"].get("filters", [])
        ]
    hook = _delivery_hook(batch, output)
    options = RunOptions(
        folders=folders,
        output=output,
        key=key,
        workers=args.workers,
        identifiers=_identifier_source(args, batch),
        recipe=recipe,
        filters=tuple(filters),
        on_series=hook.on_series if hook else None,
        header_json=bool(hook and hook.header_json),
    )
    report = run(options)
    delivered = hook.finish(report) if hook else 0
    print(f"sendit: {report.summary()}", file=sys.stderr)
    for error in report.errors[:20]:
        print(f"  {error.ref}: {error.reason}", file=sys.stderr)
    if len(report.errors) > 20:
        print(f"  ... and {len(report.errors) - 20} more (see --report)", file=sys.stderr)
    if args.report:
        report.write(args.report)
    return max(report.exit_code, delivered)


def _wants_delivery(batch: Batch | None) -> bool:
    from .destinations.modes import wants_delivery

    return wants_delivery(batch)


def _default_workdir(batch: Batch) -> Path:
    from .destinations.modes import default_workdir

    return default_workdir(batch)


def _delivery_hook(batch: Batch | None, output: Path):
    """Delivery (send: auto) or staging (send: manual) around the run; None without destinations."""
    if batch is None or not _wants_delivery(batch):
        return None
    from .destinations.modes import hook_for

    return hook_for(batch, output)


def _send(args: argparse.Namespace) -> int:
    """Stage two of send: manual: deliver a staged batch, then remove the staging data."""
    from .destinations.errors import DeliveryError
    from .destinations.modes import default_workdir, send
    from .spec import load_file

    batch = load_file(args.file)
    if not _wants_delivery(batch):
        raise ConfigError("the manifest names no destination (gcs, bigquery or pubsub)")
    staging = args.staging or batch.output() or default_workdir(batch)
    try:
        code, report = send(batch, staging)
    except DeliveryError as exc:
        print(f"sendit: delivery incomplete: {exc}", file=sys.stderr)
        return 1
    print(f"sendit: SENT: {report.summary()}", file=sys.stderr)
    if args.report:
        report.write(args.report)
    return code


def _identifier_source(args: argparse.Namespace, batch: Batch | None) -> IdentifierSource | None:
    from .identifiers import ServiceIdentifiers
    from .spec import identifier_service

    if args.identifier_service:
        service = identifier_service({"url": args.identifier_service})
    else:
        service = batch.spec["deidentify"].get("identifierService") if batch else None
    if not service:
        return None
    return ServiceIdentifiers(
        service["url"], timeout=service["timeoutSeconds"], retries=service["retries"]
    )


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _sample(args: argparse.Namespace) -> int:
    from .sample import make_sample

    n = make_sample(args.output, patients=args.patients, files=args.files)
    print(f"sendit: wrote {n} sample files for {args.patients} patients", file=sys.stderr)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from .cluster import main as worker_main

    return worker_main(args)


def _operator(args: argparse.Namespace) -> int:
    from sendit_operator.main import main as operator_main

    return operator_main(args)


def _watch(args: argparse.Namespace) -> int:
    from sendit_operator.watch import main as watch_main

    return watch_main(args)


def _locate(args: argparse.Namespace) -> int:
    """Print the local path behind a report's reference: for the person who ran the batch."""
    from .pseudonyms import Pseudonymizer, load_key

    key, _ = load_key(args.key_file, create_default=False)
    folder, _, token = args.ref.partition(":")
    try:
        root = args.folders[int(folder)].resolve()
    except (ValueError, IndexError):
        raise ConfigError(
            "the reference's folder number does not match the folders given"
        ) from None
    pseudonymizer = Pseudonymizer(key)
    for path in sorted(root.rglob("*")):
        if pseudonymizer.token("file", str(path.relative_to(root)), 10) == token:
            print(path)
            return 0
    print("sendit: no file under that folder has this reference", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
