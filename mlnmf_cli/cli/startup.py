"""Ctrl-C or SIGTERM while the program starts: one line and exit 130, no traceback.

Imported first by ``mlnmf_cli/cli/__init__.py`` (standard library only, so the
window before it is as short as possible). Until the app runs, where
:class:`mlnmf_cli.cli.app._Group` makes both signals raise KeyboardInterrupt,
an interrupt can only land in an import: nothing has been written, so the
process leaves at once.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

INTERRUPTED = 130
_LINE = b"mlnmf: error: interrupted\n"


def _leave(signum: int, frame: Any) -> None:
    os.write(2, _LINE)
    os._exit(INTERRUPTED)


def install() -> None:
    """Exit quietly on SIGINT/SIGTERM, unless someone (a test runner) set a handler already."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _leave)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _leave)


def restored(signum: int, handler: Any) -> Any:
    """The handler to put back after a run: start-up's own becomes Python's default."""
    if handler is not _leave:
        return handler
    return signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL


install()
