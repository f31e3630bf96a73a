"""Leak count of the planted-PHI corpus (tests/phi_corpus.py) through a `sendit` command.

    python bench/phi_leaks.py [--sendit PATH/TO/sendit]

Writes the corpus, runs `sendit run CASE --output OUT` on each case with its defaults, and
prints per case what was released, failed or withheld and which sentinels reached an output;
then the totals. Point --sendit at another checkout's venv to compare versions in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from phi_corpus import CASES, leaked, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sendit", default=shutil.which("sendit") or "sendit")
    args = parser.parse_args()
    env = {**os.environ, "SENDIT_PSEUDONYM_KEY": "phi-leaks-benchmark-key-0123456789"}
    with tempfile.TemporaryDirectory(prefix="phi-") as tmp:
        root = Path(tmp)
        write(root / "in")
        total_leaks = released = 0
        for case in CASES:
            out = root / "out" / case.name
            proc = subprocess.run(
                [args.sendit, "-q", "run", str(root / "in" / case.name), "--output", str(out)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            found = leaked(out, case)
            outputs = len(list(out.rglob("*.dcm")))
            released += outputs
            total_leaks += len(found)
            print(f"{case.name:14} exit {proc.returncode} released {outputs} leaks {found}")
        print(f"total: {total_leaks} sentinels leaked in {len(CASES)} cases; {released} released")


if __name__ == "__main__":
    main()
