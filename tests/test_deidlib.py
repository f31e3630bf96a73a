"""deid is imported once, without loading matplotlib's plotting at every start."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_starting_a_run_does_not_load_plotting() -> None:
    loaded = _python(
        "import sys, sendit_worker.pipeline; print('matplotlib.figure' in sys.modules)"
    )
    assert loaded == "False"


def test_pyplot_still_loads_when_used() -> None:
    backend = _python(
        "import sendit_worker.deidlib, matplotlib.pyplot as plt; plt.figure();"
        " print(plt.get_backend())"
    )
    assert backend == "pdf"


def test_the_import_is_silent() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging; logging.basicConfig(); import sendit_worker.deidlib",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr == ""
