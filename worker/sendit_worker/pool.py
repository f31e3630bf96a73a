"""The worker pool: as many processes as this process may use CPUs, each dying with the run and
giving large blocks back to the system when it frees them; one inline "pool" for one worker; a
map that streams its tasks (never more than a window of them under way); and how a run stops
on SIGINT or SIGTERM. Light to import: the command line's help text asks it for the CPU
count."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from sendit_api import exits

PR_SET_PDEATHSIG = 1
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 32 * 1024 * 1024
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM: the run stops where it is. A BaseException, as KeyboardInterrupt is,
    so that no `except Exception` (one bad file never stops the batch) mistakes it for a file's
    error. `detail` says how far the run got, when the command knows."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.detail = ""


@dataclass
class _Stop:
    signum: int | None = None  # the stop signal this process received


_stop = _Stop()


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """While inside, SIGINT or SIGTERM stops the run within moments: the pools' processes are
    killed at once (each file is written atomically, so what they wrote is whole; nothing waits
    for their tasks) and Interrupted unwinds the main thread through every cleanup, as
    KeyboardInterrupt would. A second signal exits at once. A signal this process was started
    ignoring (a background job's SIGINT) stays ignored. Only the main thread may set handlers:
    in any other (a test's thread) signals keep theirs.

    After a pool's processes were killed, its executor's own threads may wait forever on a
    result a killed process was half-way through sending: the command ends the process with
    os._exit once it has said so, rather than join them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        _kill_pool_processes()
        if _stop.signum is not None:
            os._exit(exits.interrupted(signum))
        _stop.signum = signum
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop.signum = None


def _stop_if_signalled() -> None:
    """Where the run waits for its pool: a signal whose Interrupted was lost (raised where
    Python ignores exceptions, such as a finalizer) stops it here."""
    if _stop.signum is not None:
        _kill_pool_processes()
        raise Interrupted(_stop.signum)


def _kill_pool_processes() -> None:
    for child in multiprocessing.active_children():
        child.kill()


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def bounded_map(pool: Executor, fn: Callable, tasks: Iterable, window: int) -> Iterator:
    """Results in order, with at most `window` tasks under way: tasks are taken from the
    iterable only as results are taken, so neither ever sits in memory whole."""
    pending: deque[Future] = deque()
    try:
        for task in tasks:
            _stop_if_signalled()
            pending.append(pool.submit(fn, task))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool:  # its processes were killed: by a signal's handler, or the OOM killer
        _stop_if_signalled()
        raise


class InlineExecutor(Executor):
    """One worker: everything in this process, no pickling, easiest to debug."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


@contextmanager
def pool(workers: int, init: Callable[..., None], *args: object) -> Iterator[Executor]:
    """`workers` processes, each running `init(*args)` first (one worker: this process)."""
    if workers <= 1:
        _large_blocks_returned()
        init(*args)
        yield InlineExecutor()
        return
    executor = ProcessPoolExecutor(
        workers, initializer=_init_pool_process, initargs=(os.getpid(), init, args)
    )
    wait = True
    try:
        # The processes are forked at the first submit (the fork start method starts them all
        # at once): with the stop signals held back, so that a handler never runs inside the
        # fork (where Python ignores what it raises), and the children start with them held.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            executor.submit(int)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        yield executor
    except Interrupted:
        _kill_pool_processes()
        wait = False  # for nothing: the processes are gone, a result may be half sent
        raise
    finally:
        executor.shutdown(wait=wait, cancel_futures=not wait)


def _init_pool_process(parent: int, init: Callable[..., None], args: tuple) -> None:
    """A pool process must not outlive a killed run: it could still write outputs. A Ctrl-C to
    the terminal's process group, or a SIGTERM to every process, ends it silently (the
    system's default action, no KeyboardInterrupt and its traceback): the run's own handler
    stops the rest."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # held back while it was forked
    with suppress(OSError, AttributeError):  # not Linux: the pool's own shutdown is all there is
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the run died before the signal was armed
    _large_blocks_returned()
    init(*args)


def _large_blocks_returned() -> None:
    """Blocks of MMAP_THRESHOLD and more (a radiograph's frame, its views) are taken from the
    system and given back when freed. glibc's default raises that threshold to the largest
    block freed so far: a radiograph's frames were then carved from the heap, whose holes stay
    resident, and a pool process grew with each large image (ten 3000 to 4000 px radiographs
    in one process: 415 MB at the most, 374 with this). Fixing it fixes the heap's trim
    threshold too, at 128 KiB: the heap's top was then given back and taken again, image
    after image (200 CT slices: 200 times the page faults); it is kept at TRIM_THRESHOLD, as
    glibc's own adjustment would have it. Not glibc: its allocator's own way."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
