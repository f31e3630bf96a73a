"""Writing files so that a reader (or a rerun after a kill) never sees half of one: each is
written beside its target under a hidden `.partial` name, then renamed over it. A write that
stops with an exception (an interrupted run) removes its partial file; one killed leaves it,
hidden, for the rerun's write of the same file to replace."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, data: bytes, *, durable: bool = False) -> None:
    """`durable`: fsync before the rename, for state a rerun relies on."""
    partial = _partial(path)
    with _discarded_on_error(partial):
        with _open(partial) as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(partial, path)


def copy_atomically(source: Path, path: Path) -> None:
    partial = _partial(path)
    with _discarded_on_error(partial):
        with open(source, "rb") as src, _open(partial) as f:
            shutil.copyfileobj(src, f, 1 << 20)
        os.replace(partial, path)


@contextmanager
def _discarded_on_error(partial: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _open(partial: Path) -> BinaryIO:
    """The parent folder is made only when missing (a series' first file): no mkdir per file."""
    try:
        return open(partial, "wb")
    except FileNotFoundError:
        partial.parent.mkdir(parents=True, exist_ok=True)
        return open(partial, "wb")
