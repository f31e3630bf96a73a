"""`sendit status NAME`: one batch's progress and counts, a live bar on a terminal (a line per
change otherwise), until the batch is final; the exit code says how it ended, for scripts:
0 Sent (or processed and waiting, with send: manual), 1 Failed or Cancelled, 2 no such batch.
It shows what the status holds: counts and phases, nothing identifying."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm

from sendit_api import exits
from sendit_api.errors import Permanent, Transient
from sendit_api.names import GROUP, PLURAL, VERSION
from sendit_api.status import CANCELLED, DONE_PROCESSING, FAILED, SENT

from .kubeapi import custom_objects_api

POLL_SECONDS = 2.0


def verdict(body: Mapping[str, Any]) -> int | None:
    """The exit code of a batch that is settled, or None while it is not."""
    status, spec = body.get("status") or {}, body.get("spec") or {}
    phase = status.get("phase")
    if phase == SENT or (phase == DONE_PROCESSING and spec.get("send") == "manual"):
        return exits.OK
    if phase in (FAILED, CANCELLED):
        return exits.INCOMPLETE
    return None


def line(body: Mapping[str, Any]) -> str:
    """One line of what the status says: phase, progress, rate, counts, message."""
    status = body.get("status") or {}
    counts = status.get("counts") or {}
    parts = [status.get("phase") or "Queued", status.get("progress") or "0/0"]
    if status.get("imagesPerSecond"):
        parts.append(f"{status['imagesPerSecond']} img/s, {status.get('secondsLeft', '?')} s left")
    tally = ("anonymized", "withheld", "failed", "sent")
    parts.append(", ".join(f"{k} {counts.get(k, 0)}" for k in tally))
    if status.get("message"):
        parts.append(status["message"])
    return " | ".join(parts)


def main(args: Any) -> int:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api = custom_objects_api()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    bar: tqdm | None = None
    last = ""
    while True:
        try:
            body = api.get_namespaced_custom_object(
                GROUP, VERSION, args.namespace, PLURAL, args.batch
            )
        except ApiException as exc:
            if exc.status == 404:
                raise Permanent(f"no SenditBatch {args.batch} in {args.namespace}") from None
            if exc.status in (401, 403):
                raise Permanent(
                    f"not allowed to read SenditBatches in {args.namespace} ({exc.status})"
                ) from None
            raise Transient(f"the Kubernetes API server answered {exc.status}") from None
        except HTTPError:
            raise Transient("the Kubernetes API server is not reachable") from None
        text, code = line(body), verdict(body)
        if sys.stderr.isatty():
            bar = _bar(bar, body, text)
        elif text != last:
            print(text, file=sys.stderr)
        last = text
        if code is not None or not args.wait:
            if bar is not None:
                bar.close()
            print(text)
            return code if code is not None else exits.OK
        if deadline is not None and time.monotonic() > deadline:
            print(f"sendit: still {text} after {args.timeout:.0f} s", file=sys.stderr)
            return exits.INCOMPLETE
        time.sleep(POLL_SECONDS)


def _bar(bar: tqdm | None, body: Mapping[str, Any], text: str) -> tqdm:
    done, _, total = str((body.get("status") or {}).get("progress") or "0/0").partition("/")
    if bar is None:
        bar = tqdm(total=int(total or 0), unit="img")
    bar.total = int(total or 0)
    bar.n = int(done or 0)
    bar.set_description_str(text.split(" | ")[0])
    bar.refresh()
    return bar
