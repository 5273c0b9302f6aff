"""The ``mlnmf`` app: the one place where errors become a line on stderr and an exit code.

A command only parses, calls the library and renders; it raises
:class:`~mlnmf_cli.errors.MlnmfError` (or lets the library's through) and
:class:`_Group` prints ``mlnmf: error: <message>`` and exits with
:func:`exit_code` of it. Adding a command: a module in ``mlnmf_cli/cli/``
with ``@app.command()``, imported in ``mlnmf_cli/cli/__init__.py``; import
NumPy-heavy modules inside the command's body (``mlnmf --help`` stays light).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import IntEnum
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mlnmf_cli import __version__
from mlnmf_cli.cli.output import error_line
from mlnmf_cli.errors import MlnmfError, ParameterError


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    PARTIAL = 3
    INTERRUPTED = 130


def exit_code(exc: MlnmfError) -> ExitCode:
    """Bad options or parameters are usage errors (2); every other error is 1."""
    return ExitCode.USAGE if isinstance(exc, ParameterError) else ExitCode.ERROR


class _Group(TyperGroup):
    """Turns library errors and Click's usage errors into the same single line."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(
                args,
                prog_name,
                complete_var,
                False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
            code = rv if isinstance(rv, int) else 0
        except MlnmfError as exc:
            error_line(str(exc))
            code = exit_code(exc)
        except typer.TyperException as exc:  # Click's errors, vendored by Typer
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]
                code = ExitCode.USAGE
            else:
                code = getattr(exc, "exit_code", ExitCode.ERROR)
                ctx = getattr(exc, "ctx", None)
                hint = (
                    f" (see '{ctx.command_path} --help')" if ctx and code == ExitCode.USAGE else ""
                )
                error_line(exc.format_message() + hint)
        except typer.Abort:
            code = ExitCode.INTERRUPTED
        if standalone_mode:
            sys.exit(int(code))
        return code


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
