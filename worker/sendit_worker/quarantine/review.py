"""A reviewer's decisions on quarantined images: release, reject, and the preview to decide on.

A release never bypasses the pipeline. Its images are moved into a release of the quarantine
(releases/<release>/), the source of a batch like the one they came from (its de-identification,
its key, its destinations, its cleanup) with the reviewer's rule added to its filters, under
the clean pixel policy (every frame searched again, what the rule names blanked first), and
delivered at once (send: auto: the release is the decision to send). Locally that batch runs
here (`release`): what it anonymizes and delivers is released, what it withholds again goes
back to wait. In a cluster it is a SenditBatch (`release_batch`, with the ConfigMap holding
the rule) that the operator runs like any other; what it withholds again it keeps in a
quarantine of its own.

A reference is decided once: releasing it again sends nothing. Every decision is appended to
the audit log (who, when, which rule, which reference; never a value from an image). With
cleanup.source: delete, a decided image goes when that is safe: a rejected one at once, a
released one after its verified delivery.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import yaml

from sendit_api.clock import timestamp
from sendit_api.errors import Permanent
from sendit_api.names import API_VERSION, BATCH_LABEL, KIND, RELEASES_LABEL, quarantine_folder
from sendit_api.spec import parse_batch

from ..identifiers.pseudonyms import load_key
from ..pixels.policy import CLEAN
from ..pixels.preview import preview
from ..report import Report
from ..run.batch import Progress, run_batch
from ..run.placement import LocalPlacement
from .rules import RELEASE_KEY, Rule, device_rule, save_rules
from .store import REJECTED, RELEASED, RELEASES, WAITING, Item, Quarantine, Record, key_check

JSON = dict[str, Any]


@dataclass(frozen=True)
class Released:
    """A local release: its run's report, the items released, and why the others wait."""

    report: Report
    released: list[Item]
    waiting: dict[str, str]  # reference -> withheld again or failed, and why


@dataclass(frozen=True)
class Asked:
    """The references a decision names: those still waiting, and those decided before
    (nothing happens to them again)."""

    waiting: list[Item]
    decided: list[Item]


def asked(q: Quarantine, refs: list[str]) -> Asked:
    """Raises Permanent for a reference the quarantine does not hold, before anything changes."""
    items = [q.item(ref) for ref in dict.fromkeys(refs)]
    return Asked([i for i in items if i.state == WAITING], [i for i in items if i.state != WAITING])


def check(q: Quarantine, items: list[Item], rule: Rule) -> None:
    """The rule fits each image: a region inside it, a rule file that names a region for it.
    Raises Permanent, before anything changes."""
    for item in items:
        for region in rule.regions:
            if not region.fits(item):
                raise Permanent(
                    f"{item.ref}: the region {region} is outside the image "
                    f"({item.columns} columns, {item.rows} rows)"
                )
    if rule.regions:
        return
    images = [pydicom.dcmread(q.image(item), force=True) for item in items]
    for item, named in zip(items, rule.regions_for(images), strict=True):
        if not named:
            raise Permanent(f"{item.ref}: the rule names no region for this image")


def release(
    q: Quarantine,
    items: list[Item],
    rule: Rule,
    progress: Progress,
    *,
    who: str,
    key_file: Path | None = None,
    workers: int = 0,
    save: Path | None = None,
) -> Released:
    """Locally: the release's batch, run here. The items it anonymized and delivered are
    released (and, with `save`, the rule saved for their devices); the rest wait again."""
    record = q.record
    if record.base is None:
        raise Permanent("this quarantine is a cluster batch's: its release is a SenditBatch")
    devices = _device_rules(items, rule) if save else {}
    key, _ = load_key(key_file, default="read")
    if key_check(key) != record.key_check:
        raise Permanent(
            "this is not the pseudonym key the batch ran with: give its --key-file (or set "
            "SENDIT_PSEUDONYM_KEY), so released images get the batch's pseudonyms and UIDs"
        )
    name = q.new_release()
    rule_path = q.root / RELEASES / f"{name}.deid"
    rule_path.parent.mkdir(parents=True, exist_ok=True)
    rule_path.write_text(rule.text)
    volume = {"hostPath": {"path": str(q.root / RELEASES)}}
    batch = parse_batch(release_manifest(record, name, volume, name, {"file": str(rule_path)}))
    # The batch's own output, or (remote destinations only) one workspace for every release,
    # whose delivery ledger makes a retried release send nothing twice.
    work = None if batch.spec.destinations.local else q.root / "work"
    placement = LocalPlacement(
        Path(record.base), key_file=key_file, workspace_override=work, cleans_source=False
    )
    moved = q.move(items, name)
    try:
        report = run_batch(batch, placement, progress, deliver=True, workers=workers)
        if report.discovered != len(moved):  # each image's outcome is known only so
            raise Permanent("the release's images were not all found: none is released")
    except BaseException:
        q.move(moved, "")  # not released: they wait, as they were
        raise
    kept = {f.ref: f"withheld again: {f.reason}" for f in report.withheld_files}
    kept.update({e.ref: f"failed: {e.reason}" for e in report.errors})
    back = q.move([i for i in moved if i.ref in kept], "")
    done = [dataclasses.replace(i, state=RELEASED) for i in moved if i.ref not in kept]
    if save and done:
        save_rules(save, list(dict.fromkeys(devices[i.ref] for i in done)))
    remove = record.manifest["spec"]["cleanup"]["source"] == "delete"
    for item in done:
        q.save(item)
        if remove:
            q.forget(item)
        q.audit(_entry(who, item, name, rule, save, "delivered"))
    if remove and not any((q.root / RELEASES / name).iterdir()):
        (q.root / RELEASES / name).rmdir()
    for item in back:
        q.audit(_entry(who, item, name, rule, None, kept[item.ref]))
    return Released(report, done, {i.ref: kept[i.ref] for i in back})


def release_batch(
    q: Quarantine,
    items: list[Item],
    rule: Rule,
    apply: Callable[[list[JSON]], None] | None,
    *,
    who: str,
    save: Path | None = None,
) -> list[JSON]:
    """In a cluster: the release's ConfigMap (its rule) and SenditBatch, kept in the quarantine
    (releases/<release>.yaml) and applied by `apply` (None: for the user to apply). Its source
    is the release's folder on the batch's workspace volume, where the items are moved now:
    they count as released from here on (a second release of them sends nothing). With
    `save`, the rule is saved for their devices."""
    record = q.record
    meta = record.manifest["metadata"]
    if record.base is not None:
        raise Permanent("this quarantine is a local run's: release it here (no cluster needed)")
    devices = _device_rules(items, rule) if save else {}
    name = q.new_release()
    rules = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": {BATCH_LABEL: name}},
        "data": {RELEASE_KEY: rule.text},
    }
    folder = f"{quarantine_folder(meta['uid'])}/{RELEASES}/{name}"
    volume = record.manifest["spec"]["workspace"]
    reference = {"configMapKeyRef": {"name": name, "key": RELEASE_KEY}}
    documents = [rules, release_manifest(record, name, volume, folder, reference)]
    moved = q.move(items, name)
    try:
        if apply is not None:
            apply(documents)
    except BaseException:
        q.move(moved, "")
        raise
    (q.root / RELEASES / f"{name}.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    if save:
        save_rules(save, list(dict.fromkeys(devices.values())))
    outcome = "release batch applied" if apply is not None else "release batch written"
    for item in moved:
        q.save(dataclasses.replace(item, state=RELEASED))
        q.audit(_entry(who, item, name, rule, save, outcome))
    return documents


def release_manifest(record: Record, name: str, volume: JSON, folder: str, rule: JSON) -> JSON:
    """The release's SenditBatch: the quarantine's batch with the release's folder as its
    source, the rule added to its filters, the clean policy, and delivery at once."""
    spec = copy.deepcopy(record.manifest["spec"])
    spec["source"] = {"volume": volume, "folders": [folder]}
    pixels = spec["deidentify"]["pixels"]
    pixels["policy"] = CLEAN
    pixels["filters"] = [*pixels["filters"], rule]
    spec.update(send="auto", parallelism=1, suspend=False, cancel=False)
    meta = record.manifest["metadata"]
    metadata: JSON = {"name": name, "labels": {RELEASES_LABEL: record.name}}
    if meta.get("namespace"):
        metadata["namespace"] = meta["namespace"]
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def reject(q: Quarantine, items: list[Item], *, who: str) -> None:
    """Never to be sent; with cleanup.source: delete, its original and preview go now."""
    remove = q.record.manifest["spec"]["cleanup"]["source"] == "delete"
    for item in items:
        q.save(dataclasses.replace(item, state=REJECTED))
        if remove:
            q.forget(item)
        q.audit(
            {
                "time": timestamp(),
                "who": who,
                "decision": "reject",
                "ref": item.ref,
                "removed": remove,
            }
        )


def proposed(q: Quarantine, item: Item, rule: Rule) -> bytes:
    """The item's preview with a rule's regions outlined (green), to check before releasing."""
    check(q, [item], rule)
    ds = pydicom.dcmread(q.image(item), force=True)
    named = tuple((0, r.coordinates) for r in rule.regions) or rule.regions_for([ds])[0]
    try:
        return preview(ds, item.found, item.ruled, named)
    except ValueError as exc:  # codec, size or region errors
        raise Permanent(f"{item.ref}: no preview: {exc}") from None


def _device_rules(items: list[Item], rule: Rule) -> dict[str, str]:
    """Each item's device rule, by reference (made before anything changes: an image whose
    device cannot be named fails the command)."""
    if not rule.regions:
        raise Permanent("--save-rule saves a --region for the device; a --rule file is one already")
    return {item.ref: device_rule(item, list(rule.regions)) for item in items}


def _entry(
    who: str, item: Item, release: str, rule: Rule, saved: Path | None, outcome: str
) -> JSON:
    entry: JSON = {
        "time": timestamp(),
        "who": who,
        "decision": "release",
        "ref": item.ref,
        "release": release,
        "rule": rule.audit(),
        "outcome": outcome,
    }
    if saved is not None:
        entry["saved"] = saved.name  # the filter file the device's rule went into
    return entry
