"""scripts/demo.sh, a newcomer's first command: it ends by saying what was cleaned, what was
withheld and why, and what to try next, and what it suggests works. Run on a copy of the
script beside this test run's own environment (SENDIT_DEMO_SKIP_INSTALL: no pip install)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from sendit_api.names import PSEUDONYM_KEY_ENV

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_says_what_happened_and_what_to_try(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "demo.sh", tmp_path / "scripts" / "demo.sh")
    (tmp_path / ".venv").symlink_to(sys.prefix)
    env = {k: v for k, v in os.environ.items() if k != PSEUDONYM_KEY_ENV}
    env.update(SENDIT_DEMO_SKIP_INSTALL="1", XDG_CONFIG_HOME=str(tmp_path / "config"))
    demo = subprocess.run(
        ["bash", tmp_path / "scripts" / "demo.sh"],
        capture_output=True, text=True, env=env, check=False, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.strip().splitlines()
    cleaned = re.fullmatch(
        r"Cleaned: 39 of 40 images are in sample/out, their headers de-identified .*; "
        r"burned-in text was blanked in the pixels of (\d+)\.",
        lines[0],
    )
    assert cleaned and int(cleaned[1]) >= 5, lines[0]  # at least the five made with text
    assert lines[1:3] == [
        "Withheld: 1, kept out of sample/out and left as they were:",
        "  1 x text by nature: ConversionType names a document",
    ]
    assert lines[3:5] == ["Try next:", "  source .venv/bin/activate"]
    assert lines[-1].startswith("  sendit run --help ")
    compare = lines[5].split("  #")[0]
    assert compare.startswith("  diff <(pydicom show 'sample/in/")
    shown = subprocess.run(
        ["bash", "-c", f"source .venv/bin/activate && {compare}"],
        capture_output=True, text=True, cwd=tmp_path, check=False, env=env,
    )  # fmt: skip
    assert shown.returncode == 1, shown.stderr  # diff: they differ
    assert re.search(r"^< \(0010,0010\) Patient's Name .*x\^", shown.stdout, re.MULTILINE)
    assert re.search(r"^> \(0010,0010\) Patient's Name .* 'P[A-Z2-7]{12}", shown.stdout, re.M)
