"""The ``mlnmf`` app: the one place where errors become a line on stderr and an exit code.

A command only parses, calls the library and renders; it raises
:class:`~mlnmf_cli.errors.MlnmfError` (or lets the library's through) and
:class:`_Group` prints ``mlnmf: error: <message>`` and exits with
:func:`exit_code` of it. The same holds for what escapes a command:
Ctrl-C, SIGTERM or SIGHUP anywhere (``interrupted``, 130; during start-up
:mod:`.startup` says so), running out of memory and a path the system refuses
(1). Adding a command: a module in ``mlnmf_cli/cli/``
with ``@app.command()``, imported in ``mlnmf_cli/cli/__init__.py``; import
NumPy-heavy modules inside the command's body (``mlnmf --help`` stays light).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from enum import IntEnum
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mlnmf_cli import __version__
from mlnmf_cli.cli import startup
from mlnmf_cli.cli.output import error_line
from mlnmf_cli.errors import MlnmfError, ParameterError, internal_error


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    PARTIAL = 3
    INTERRUPTED = 130


class Interrupted(Exception):
    """Ctrl-C or SIGTERM that reached the app (a command's own handling aside)."""


FAILURES = (MlnmfError, Interrupted, MemoryError, OSError)
"""What :class:`_Group` turns into one line and :func:`exit_code`; anything else is a bug."""


DEBUG_VARIABLE = "MLNMF_DEBUG"


def exit_code(exc: BaseException) -> ExitCode:
    """Bad options or parameters are usage errors (2), an interrupt is 130, every other
    error (out of memory, a file the system refused) is 1."""
    if isinstance(exc, ParameterError):
        return ExitCode.USAGE
    if isinstance(exc, Interrupted):
        return ExitCode.INTERRUPTED
    return ExitCode.ERROR


def error_message(exc: BaseException) -> str:
    """The one line (without ``mlnmf: error: ``) that reports ``exc``."""
    if isinstance(exc, Interrupted):
        return "interrupted"
    if isinstance(exc, MemoryError):
        detail = " ".join(str(exc).split())
        return "out of memory" + (f" ({detail})" if detail else "")
    if isinstance(exc, OSError):
        reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
        name = exc.filename
        if isinstance(name, bytes):
            name = os.fsdecode(name)
        return f"{name}: {reason}" if name is not None else reason
    # One line by contract: collapsing whitespace would turn a tab or newline in a
    # file name into a space (a name that does not exist); error_line escapes them.
    return str(exc).strip()


def _wind_down(signum: int, frame: Any) -> None:
    """A stop signal after the first: the run is already stopping."""


@contextlib.contextmanager
def _signals_interrupt(keep_stopped: bool = False) -> Iterator[None]:
    """Within the block Ctrl-C, SIGTERM and SIGHUP all raise KeyboardInterrupt (main
    thread only); a signal the parent ignores (``nohup``, a background job) stays ignored.

    After the first, the stop signals are ignored while the run winds down: a second
    Ctrl-C cut the clean-up short (a traceback, or death by SIGINT after the line).
    ``keep_stopped``: they stay so after the block too (the process is leaving).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopped = False

    def interrupt(signum: int, frame: Any) -> None:
        nonlocal stopped
        if stopped:  # put back by an inner block (the batch's SIGTERM) while winding down
            return
        stopped = True
        for other in previous:  # not SIG_IGN: a signal already pending would raise OSError
            signal.signal(other, _wind_down)
        raise KeyboardInterrupt

    previous: dict[int, Any] = {}
    for signum in startup.STOP_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:
            previous[signum] = signal.signal(signum, interrupt)
    try:
        yield
    finally:
        if stopped and keep_stopped:
            # Blocked, not reset: Python's exit puts its default handlers back.
            signal.pthread_sigmask(signal.SIG_BLOCK, set(previous))
        else:
            for signum, handler in previous.items():
                signal.signal(signum, startup.restored(signum, handler))


class _Group(TyperGroup):
    """Turns library errors, interrupts and Click's usage errors into the same single line."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        with _signals_interrupt(keep_stopped=standalone_mode):
            code = self._run(args, prog_name, complete_var, windows_expand_args, extra)
        if standalone_mode:
            sys.exit(int(code))
        return code

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        windows_expand_args: bool,
        extra: dict[str, Any],
    ) -> int:
        try:
            try:
                rv = super().main(
                    args,
                    prog_name,
                    complete_var,
                    False,
                    windows_expand_args=windows_expand_args,
                    **extra,
                )
                return rv if isinstance(rv, int) else 0
            except KeyboardInterrupt:  # between Click's handling and ours
                raise Interrupted from None
        except FAILURES as exc:
            error_line(error_message(exc))
            return exit_code(exc)
        except typer.TyperException as exc:  # Click's errors, vendored by Typer
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]
                return ExitCode.USAGE
            code = getattr(exc, "exit_code", ExitCode.ERROR)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx and code == ExitCode.USAGE else ""
            error_line(exc.format_message() + hint)
            return int(code)
        except typer.Abort:
            return ExitCode.INTERRUPTED
        except Exception as exc:  # a bug: still one line, unless asked for the traceback
            if os.environ.get(DEBUG_VARIABLE):
                raise
            error_line(internal_error(exc) + f" (set {DEBUG_VARIABLE}=1 for the traceback)")
            return ExitCode.ERROR


app = typer.Typer(
    cls=_Group,
    help="Multilayer non-negative matrix factorisation of images: X ~ W1 W2 ... WL HL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlnmf {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Multilayer non-negative matrix factorisation of images."""
