"""deid is imported once, without loading matplotlib at every start."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_starting_a_run_does_not_load_plotting() -> None:
    loaded = _python(
        "import sys, sendit_worker.run.shard; print('matplotlib.figure' in sys.modules)"
    )
    assert loaded == "False"


def test_deid_loads_without_matplotlib() -> None:
    """Importing matplotlib needs a writable config directory (HOME or TMPDIR): a read-only
    container has none, and every run died on it. deid now loads with no matplotlib at all."""
    loaded = _python(
        "import sys, sendit_worker.header.deidlib as d; print(d.has_burned_pixels.__name__,"
        " sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    )
    assert loaded == "has_burned_pixels []"


def test_a_later_matplotlib_import_is_the_real_one() -> None:
    backend = _python(
        "import sendit_worker.header.deidlib, matplotlib, matplotlib.pyplot as plt;"
        " matplotlib.use('pdf'); plt.figure(); print(plt.get_backend())"
    )
    assert backend == "pdf"


def test_the_import_is_silent() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging; logging.basicConfig(); import sendit_worker.header.deidlib",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr == ""
