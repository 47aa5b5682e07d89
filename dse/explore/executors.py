"""Where design points are evaluated: in this process, a local process pool, or a Dask cluster.

All three look like a ``concurrent.futures.Executor`` (Dask through ``Client.get_executor``), so the
run loop is the same and every result flows back to the one process that writes the store. Tasks
are module-level functions with picklable arguments; Dask workers must be able to import cim-dse
and read the model file at the same path (a shared checkout or file system).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from dse.errors import InputError

CONNECT_TIMEOUT = "15s"  # how long to wait for a Dask scheduler


class InlineExecutor(Executor):
    """Runs each task at once in this process (``workers=0``): for debugging and small runs."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # KeyboardInterrupt passes through
            future.set_exception(exc)
        return future


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the coordinator, which stops them and keeps the store consistent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class Pool:
    """An executor, what it is (for run.json), its number of workers, and how to close it."""

    executor: Executor
    description: str
    workers: int
    client: Any = None  # a dask.distributed Client

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            if isinstance(self.executor, ProcessPoolExecutor):
                for proc in list(getattr(self.executor, "_processes", {}).values()):
                    proc.terminate()  # a simulation in flight would otherwise hold the exit
            self.executor.shutdown(wait=False, cancel_futures=True)
        else:
            self.executor.shutdown(wait=True)
        if self.client is not None:
            self.client.close()


def open_pool(workers: int | None = None, scheduler: str | None = None) -> Pool:
    """A pool: ``scheduler`` (tcp://HOST:PORT of a running Dask scheduler), else ``workers`` local
    processes (default: the CPU count; 0 = run in this process)."""
    if scheduler:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - a dependency
            raise InputError(None, "--scheduler", f"= {scheduler}: dask.distributed is not installed ({exc})") from None
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise InputError(None, "--scheduler", f"= {scheduler}: cannot connect to a Dask scheduler there ({exc})",
                             "start one with `dask scheduler` and `dask worker ADDRESS`") from None
        n = sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values()) or 1
        return Pool(client.get_executor(pure=False), f"dask {scheduler}", n, client)
    n = (os.cpu_count() or 1) if workers is None else workers
    if n < 0:
        raise InputError(None, "--workers", f"= {n}: must be >= 0 (0 = run in this process)")
    if n == 0:
        return Pool(InlineExecutor(), "in-process", 1)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
    return Pool(ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_ignore_sigint),
                f"local pool of {n} process{'es' if n > 1 else ''}", n)
