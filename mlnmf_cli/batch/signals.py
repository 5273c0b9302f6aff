"""Signals during a batch: SIGTERM (a script stopping us) ends it like Ctrl-C; the
summary files are written with both held back."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises KeyboardInterrupt (summary written, exit 130).

    Only the main thread can set signal handlers; elsewhere this does nothing. Nor does
    it when SIGTERM already has a handler (the command line's, which also keeps a second
    signal from cutting the clean-up short) or is ignored.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    ):
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Within the block Ctrl-C, SIGTERM and SIGHUP wait (they arrive when it ends): a few
    short writes that belong together (the summary files) are never cut apart.

    Only the main thread can block them for the process; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    deferred = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, deferred)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Linux: this (worker) process gets ``signum`` when its parent dies.

    A batch killed with SIGKILL cannot stop its workers; without this they would
    go on writing into the output folder after the lock is gone. With SIGTERM a
    worker removes its half-written folder and leaves.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    except (OSError, AttributeError):
        return
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid != os.getppid():  # it died before prctl
        os.kill(os.getpid(), signum)


_PR_SET_PDEATHSIG = 1
