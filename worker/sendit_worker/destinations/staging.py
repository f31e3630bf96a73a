"""Staging for `send: manual`: stage one writes de-identified files and, per series, their
metadata under `<workspace>/.sendit/`; stage two delivers them later. A small state file says
where the batch is (DONEPROCESSING, SENT) and keeps stage one's counts.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from sendit_api.status import Counts

from ..files import write_atomically
from .image import DeidentifiedImage, ImageMetadata

STATE_DIR = ".sendit"  # beside the de-identified files: staging, the ledger, the state
DONEPROCESSING = "DONEPROCESSING"
SENT = "SENT"


def _state(root: Path) -> Path:
    return root / STATE_DIR / "state.json"


def stage_series(root: Path, images: list[DeidentifiedImage]) -> None:
    """Stage one's record of a finished series: its images' files and metadata."""
    staged = [
        {"output": str(i.path.relative_to(root)), "size": i.size, "metadata": i.metadata.as_dict()}
        for i in images
    ]
    path = root / STATE_DIR / "series" / f"{images[0].series}.json"
    write_atomically(path, json.dumps(staged).encode(), durable=True)


def staged_series(root: Path) -> Iterator[list[DeidentifiedImage]]:
    for path in sorted((root / STATE_DIR / "series").glob("*.json")):
        yield [
            DeidentifiedImage(root / i["output"], i["size"], ImageMetadata.of(i["metadata"]))
            for i in json.loads(path.read_text())
        ]


def write_state(root: Path, phase: str, batch: str, counts: Counts) -> None:
    state = {"phase": phase, "batch": batch, "counts": counts.as_dict()}
    write_atomically(_state(root), (json.dumps(state, indent=2) + "\n").encode(), durable=True)


def read_state(root: Path) -> tuple[str, Counts] | None:
    """The staged batch's phase and stage one's counts; None when nothing was staged there."""
    try:
        state = json.loads(_state(root).read_text())
    except FileNotFoundError:
        return None
    return state["phase"], Counts.of(state.get("counts") or {})


def remove_staged(root: Path) -> None:
    """Everything staged goes; the state file (phase SENT, counts) stays as the record."""
    for child in root.iterdir():
        if child.name == STATE_DIR:
            for inner in child.iterdir():
                if inner.name != _state(root).name:
                    _remove(inner)
        else:
            _remove(child)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
