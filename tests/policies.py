"""The cluster's policy (sendit_operator.policy) as the chart's ConfigMap holds it, for the
operators tests and benches start by hand (`sendit-operator --policy FILE`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def policy_file(
    path: Path,
    *,
    images: Sequence[str],
    host_paths: Sequence[str | Path] = (),
    local_paths: Sequence[str | Path] = (),
    source_volumes: Sequence[str] = ("persistentVolumeClaim",),
    service_accounts: Sequence[str] = (),
) -> Path:
    policy = {
        "images": list(images),
        "serviceAccounts": list(service_accounts),
        "sourceVolumes": list(source_volumes),
        "hostPathPrefixes": [str(p) for p in host_paths],
        "localPathPrefixes": [str(p) for p in local_paths],
    }
    path.write_text(json.dumps(policy))
    return path
