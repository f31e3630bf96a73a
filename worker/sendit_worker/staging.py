"""Staging for `send: manual`: stage one writes de-identified files and, per series, their
metadata under `<staging>/.sendit/`; `sendit send` delivers them later. A small state file says
where the batch is (DONEPROCESSING, SENT) and keeps stage one's counts.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .destinations.layouts import Image
from .pipeline import SeriesDone

STATE_DIR = ".sendit"
DONEPROCESSING = "DONEPROCESSING"
SENT = "SENT"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


class StagingWriter:
    """The pipeline's callback in stage one: one metadata file per finished series."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def on_series(self, done: SeriesDone) -> None:
        images = [
            {"output": o.output, "size": o.size, "metadata": o.metadata}
            for o in done.outcomes
            if o.status == "anonymized" and o.output
        ]
        if images:
            series = images[0]["metadata"]["series"]
            _atomic_write(self.root / STATE_DIR / "series" / f"{series}.json", json.dumps(images))


def staged_series(root: Path) -> Iterator[list[Image]]:
    for path in sorted((root / STATE_DIR / "series").glob("*.json")):
        staged = json.loads(path.read_text())
        yield [Image(root / i["output"], i["size"], i["metadata"]) for i in staged]


def write_state(root: Path, phase: str, batch: str, counts: dict[str, int]) -> None:
    state = {"phase": phase, "batch": batch, "counts": counts}
    _atomic_write(root / STATE_DIR / "state.json", json.dumps(state, indent=2) + "\n")


def read_state(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / STATE_DIR / "state.json").read_text())
    except FileNotFoundError:
        return None


def remove_staged(root: Path) -> None:
    """Everything staged goes; the state file (phase SENT, counts) stays as the record."""
    for child in root.iterdir():
        if child.name == STATE_DIR:
            for inner in child.iterdir():
                if inner.name != "state.json":
                    _remove(inner)
        else:
            _remove(child)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
