"""Stopping a run (worker/sendit_worker/pool.py), through the real `sendit run`: SIGINT or
SIGTERM, to the whole process group (Ctrl-C in a terminal, a container runtime) or to the main
process alone (`kill PID`, a pod's SIGTERM), stops the pool, keeps what was written, says how
far the run got and exits 130 or 143 within seconds, with no traceback from any process; a
rerun finishes the batch. A pool's processes give large blocks back to the system when they
free them, and keep the rest of what they free for the next image."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pydicom
import pytest
from dicomdata import KEY

from sendit_api.names import PSEUDONYM_KEY_ENV
from sendit_worker.cli.sample import make_sample

FILES = 1500  # seconds of work on two CPUs: the signal comes early in it
SENDIT = Path(sys.executable).with_name("sendit")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("interrupt") / "in"
    make_sample(folder, patients=5, files=FILES)
    return folder


def run(corpus: Path, out: Path, log: Path) -> subprocess.Popen:
    """`sendit run` in a session of its own: a signal to its group reaches no test process."""
    env = {**os.environ, PSEUDONYM_KEY_ENV: KEY.decode()}
    with open(log, "wb") as stderr:
        return subprocess.Popen(
            [SENDIT, "run", corpus, "--output", out],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True,
        )  # fmt: skip


def interrupt(corpus: Path, tmp_path: Path, signum: int, group: bool) -> tuple[int, str, int]:
    """Start a run, signal it once it has written a file, and wait: the exit code, stderr, and
    how many seconds it took to stop."""
    out, log = tmp_path / "out", tmp_path / "stderr.txt"
    proc = run(corpus, out, log)
    deadline = time.monotonic() + 120
    while not any(out.rglob("*.dcm")):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no output after two minutes"
        time.sleep(0.1)
    pool = psutil.Process(proc.pid).children(recursive=True)
    assert pool, "a run with two CPUs has a pool of processes"
    (os.killpg if group else os.kill)(proc.pid, signum)
    sent = time.monotonic()
    try:
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    seconds = time.monotonic() - sent
    _, alive = psutil.wait_procs(pool, timeout=5)
    assert not alive, "pool processes outlived the run"
    return code, log.read_text(), seconds


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("group", [True, False], ids=["group", "main-alone"])
def test_a_signal_stops_the_run_and_keeps_what_was_written(
    corpus: Path, tmp_path: Path, signum: int, group: bool
) -> None:
    code, stderr, seconds = interrupt(corpus, tmp_path, signum, group)
    assert code == 128 + signum, stderr
    assert seconds < 10
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(rf"sendit: interrupted: (\d+) of {FILES} written; rerun to finish", last)
    assert match, stderr
    written = list((tmp_path / "out").rglob("*.dcm"))
    assert int(match[1]) <= len(written) < FILES
    for path in written:  # each whole: written atomically, never cut by the stop
        assert pydicom.dcmread(path).PatientIdentityRemoved == "YES"


def test_a_rerun_after_an_interrupt_finishes(corpus: Path, tmp_path: Path) -> None:
    code, _, _ = interrupt(corpus, tmp_path, signal.SIGINT, group=True)
    assert code == 130
    proc = run(corpus, tmp_path / "out", tmp_path / "rerun.txt")
    assert proc.wait(timeout=600) == 0, (tmp_path / "rerun.txt").read_text()
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == FILES
    assert not list((tmp_path / "out").rglob(".*.partial"))


def _nothing() -> None:
    pass


def _held_after_freeing() -> int:
    """MiB left resident by a 24 MiB block freed (which raises glibc's default threshold past
    16 MiB), then a 16 MiB one freed under small blocks allocated after it."""

    def resident() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = resident()
    np.ones(24 << 17)
    block = np.ones(16 << 17)
    after = [bytes(1000) for _ in range(100)]  # noqa: F841 (held above the block)
    del block
    return (resident() - before) >> 20


def _in_a_fresh_run(workers: int, probe: str) -> int:
    """What `probe` (a function of this module) returns in a pool of a new interpreter, as
    `sendit run` starts one (an allocator's thresholds depend on all a process did before)."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        f"from test_pool import _nothing, {probe}\n"
        "from sendit_worker.pool import pool\n"
        f"with pool({workers}, _nothing) as executor:\n"
        f"    print(executor.submit({probe}).result())"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(run.stdout)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_pool_process_gives_a_freed_radiographs_worth_back(workers: int) -> None:
    """A radiograph's frame freed goes back to the system, not into a heap hole that stays
    resident: a process taking many large images does not grow with each."""
    assert _in_a_fresh_run(workers, "_held_after_freeing") < 4


def _faults_of_reallocating() -> int:
    """Page faults of allocating a 1 MiB block, filling and freeing it, 100 times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(100):
        np.ones(1 << 17)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.parametrize("workers", [1, 2])
def test_a_pool_process_keeps_what_it_frees_below_the_large_blocks(workers: int) -> None:
    """A block under the large ones' threshold is not given back to the system as soon as it
    is freed, to be faulted in again for the next slice (a CT series' worth of page faults)."""
    assert _in_a_fresh_run(workers, "_faults_of_reallocating") < 2000
