"""`sendit review`: a quarantine's withheld images, for the person who may see them (the
quarantine is inside the trust boundary, where the source is): list them, look at one, release
with a region or a rule, reject. A thin adapter over `quarantine.review`; exit codes as `main`'s.
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
import webbrowser
from typing import Any

import yaml

from sendit_api import exits
from sendit_api.errors import Permanent

from ..quarantine import review
from ..quarantine.rules import Region, Rule
from ..quarantine.store import WAITING, Item, Quarantine, ref_of

LEGEND = "red: text found; yellow: the batch's rules' regions; green: the region proposed"


def list_items(args: Any) -> int:
    q = Quarantine.open(args.quarantine)
    items = q.items()
    rows = [("REF", "STATE", "REASON", "MODALITY", "SIZE", "DEVICE", "FOUND")]
    rows += [
        (i.ref, i.state, i.kind, i.modality or "-", i.size, _device(i), _found(i)) for i in items
    ]
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    waiting = sum(i.state == WAITING for i in items)
    print(f"sendit: {waiting} of {len(items)} waiting for review", file=sys.stderr)
    return exits.OK


def show(args: Any) -> int:
    q = Quarantine.open(args.quarantine)
    item = q.item(_ref(args.ref))
    print(f"{item.ref}: {item.state}" + (f" ({item.release})" if item.release else ""))
    print(f"  withheld: {item.reason} [{item.kind}]")
    frames = f", {item.frames} frames" if item.frames > 1 else ""
    print(
        f"  {item.modality or 'no modality'}, {item.columns}x{item.rows}{frames}; {_device(item)}"
    )
    for x0, y0, x1, y1 in item.found:
        print(f"  text found at {x0},{y0},{x1 - x0},{y1 - y0} (x,y,w,h)")
    for value, coordinates in item.ruled:
        print(f"  a filter rule {'keeps' if value else 'blanks'} {coordinates} (x0,y0,x1,y1)")
    rule = _rule(args)
    if rule is not None:
        picture = q.proposal(item)
        picture.write_bytes(review.proposed(q, item, rule))
    elif item.preview and q.preview(item).exists():
        picture = q.preview(item)
    else:
        print("  no preview: the pixels do not render here, or the image is gone (cleanup)")
        return exits.OK
    if args.output:
        shutil.copyfile(picture, args.output)
        picture = args.output
    print(f"  preview: {picture} ({LEGEND})")
    if args.open:
        webbrowser.open(picture.resolve().as_uri())
    return exits.OK


def release(args: Any) -> int:
    q = Quarantine.open(args.quarantine)
    rule = _rule(args)
    if rule is None:
        raise Permanent("give what to blank: --region x,y,w,h (repeatable) or --rule FILE")
    asked = review.asked(q, [_ref(r) for r in args.refs])
    for item in asked.decided:
        how = f"{item.state} before" + (f" (in {item.release})" if item.release else "")
        print(f"  {item.ref}: {how}: nothing sent again", file=sys.stderr)
    if not asked.waiting:
        return exits.OK
    review.check(q, asked.waiting, rule)
    who = _who()
    if q.record.base is None:
        apply = _apply if args.apply else None
        documents = review.release_batch(
            q, asked.waiting, rule, apply, who=who, save=args.save_rule
        )
        meta = documents[-1]["metadata"]
        name = meta["name"]
        if args.apply:
            watch = f"sendit status {name} -n {meta['namespace']}"
            print(f"sendit: applied SenditBatch {name} (watch it: {watch})", file=sys.stderr)
        else:
            print(yaml.safe_dump_all(documents, sort_keys=False), end="")
            kept = args.quarantine / "releases" / f"{name}.yaml"
            print(
                f"sendit: SenditBatch {name} and its ConfigMap above, kept in {kept}: "
                "apply them (kubectl apply -f)",
                file=sys.stderr,
            )
        return exits.OK
    from ..run.progress import TerminalProgress

    progress = TerminalProgress()
    try:
        done = review.release(
            q, asked.waiting, rule, progress, who=who, key_file=args.key_file,
            workers=args.workers, save=args.save_rule,
        )  # fmt: skip
    finally:
        progress.close()
    for item in done.released:
        print(f"  {item.ref}: released", file=sys.stderr)
    for ref, why in done.waiting.items():
        print(f"  {ref}: {why}; it waits in the quarantine again", file=sys.stderr)
    print(f"sendit: {done.report.summary()}", file=sys.stderr)
    return exits.FILES_FAILED if done.waiting else exits.OK


def reject(args: Any) -> int:
    q = Quarantine.open(args.quarantine)
    asked = review.asked(q, [_ref(r) for r in args.refs])
    for item in asked.decided:
        print(f"  {item.ref}: {item.state} before: left as it is", file=sys.stderr)
    review.reject(q, asked.waiting, who=_who())
    print(f"sendit: rejected {len(asked.waiting)}", file=sys.stderr)
    return exits.OK


def _rule(args: Any) -> Rule | None:
    if args.region and args.rule:
        raise Permanent("give --region or --rule, not both")
    if args.region:
        return Rule.of_regions([Region.parse(r) for r in args.region])
    return Rule.read(args.rule) if args.rule else None


def _ref(text: str) -> str:
    """A reference as printed (0:K3JQ7XN2AB) or as its files are named (0-K3JQ7XN2AB)."""
    return text if ":" in text else ref_of(text)


def _who() -> str:
    """Who decides: the reviewer's login (a person of the hospital, never a patient)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's user without a passwd entry)
        return f"uid {os.getuid()}"


def _apply(documents: list[dict[str, Any]]) -> None:
    from kubernetes.client.exceptions import ApiException

    from sendit_api.names import GROUP, PLURAL, VERSION

    from .kubeapi import core_api, custom_objects_api

    rules, batch = documents
    namespace = batch["metadata"]["namespace"]
    try:
        core_api().create_namespaced_config_map(namespace, rules)
        custom_objects_api().create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, batch
        )
    except ApiException as exc:
        raise Permanent(f"the release could not be applied: {exc.status} {exc.reason}") from None


def _device(item: Item) -> str:
    return " / ".join(v for v in (item.manufacturer, item.model) if v) or "-"


def _found(item: Item) -> str:
    parts = []
    if item.found:
        parts.append(f"{len(item.found)} text region{'s' if len(item.found) > 1 else ''}")
    if item.ruled:
        parts.append("rule regions")
    return ", ".join(parts) or "-"
