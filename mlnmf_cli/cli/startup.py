"""Ctrl-C, SIGTERM or SIGHUP while the program starts: one line and exit 130, no traceback.

Imported first by ``mlnmf_cli/cli/__init__.py`` (standard library only, so the
window before it is as short as possible). Until the app runs, where
:class:`mlnmf_cli.cli.app._Group` makes them raise KeyboardInterrupt,
an interrupt can only land in an import: nothing has been written, so the
process leaves at once.
"""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing takes milliseconds to import: the window before install() stays short
    from typing import Any

INTERRUPTED = 130
_LINE = b"mlnmf: error: interrupted\n"


def _leave(signum: int, frame: Any) -> None:
    os.write(2, _LINE)
    os._exit(INTERRUPTED)


STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""Ctrl-C, a script's SIGTERM, a closed terminal's SIGHUP: all stop the program as Ctrl-C does."""


def default_handler(signum: int) -> Any:
    """What Python starts with: KeyboardInterrupt for SIGINT, the system's action otherwise."""
    return signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL


def install() -> None:
    """Exit quietly on the stop signals still at Python's default (not ignored by the
    parent, as ``nohup`` or a background job does, nor set by a test runner)."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) == default_handler(signum):
            try:
                signal.signal(signum, _leave)
            except ValueError:  # not the main thread (no threading import: it takes time)
                return


def restored(signum: int, handler: Any) -> Any:
    """The handler to put back after a run: start-up's own becomes Python's default."""
    return default_handler(signum) if handler is _leave else handler


install()
