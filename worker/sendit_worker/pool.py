"""The worker pool: as many processes as this process may use CPUs, each dying with the run; one
inline "pool" for one worker; and a map that streams its tasks (never more than a window of them
under way). Light to import: the command line's help text asks it for the CPU count."""

from __future__ import annotations

import ctypes
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

PR_SET_PDEATHSIG = 1


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
    for task in tasks:
        pending.append(pool.submit(fn, task))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


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
        init(*args)
        yield InlineExecutor()
        return
    with ProcessPoolExecutor(
        workers, initializer=_init_pool_process, initargs=(os.getpid(), init, args)
    ) as executor:
        yield executor


def _init_pool_process(parent: int, init: Callable[..., None], args: tuple) -> None:
    """A pool process must not outlive a killed run: it could still write outputs."""
    with suppress(OSError, AttributeError):  # not Linux: the pool's own shutdown is all there is
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the run died before the signal was armed
    init(*args)
