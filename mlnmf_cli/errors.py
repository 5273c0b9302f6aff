"""The package's exception types.

Every error a user can cause is a :class:`MlnmfError` whose message is one
line, fit to print after the name of the input it concerns. Exit codes are the
command line's (:mod:`mlnmf_cli.cli.app`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class MlnmfError(Exception):
    """Base of every error the package raises on purpose."""


class ParameterError(MlnmfError, ValueError):
    """An option or an input matrix breaks a rule; raised before any work starts."""


class InputError(MlnmfError):
    """An input file (image or saved model) cannot be used."""


class OutputError(MlnmfError):
    """A result cannot be written where it was asked to go."""


def internal_error(exc: BaseException) -> str:
    """The one line that reports a bug of mlnmf's own (what escaped every other handler)."""
    detail = " ".join(str(exc).split())
    return f"internal error, please report it: {type(exc).__name__}" + (
        f": {detail}" if detail else ""
    )


def open_error(exc: OSError, kind: str) -> InputError:
    """The usual reasons a file cannot be opened, as one line; ``kind`` names what was expected."""
    if isinstance(exc, FileNotFoundError):
        return InputError("file not found")
    if isinstance(exc, IsADirectoryError):
        return InputError(f"is a directory, not {kind}")
    if isinstance(exc, PermissionError):
        return InputError("permission denied")
    return InputError(f"cannot read the file ({exc.strerror or exc})")


@contextlib.contextmanager
def about(name: str | os.PathLike[str]) -> Iterator[None]:
    """Prefix the message of any :class:`MlnmfError` raised inside with ``name: ``
    (the file it concerns), keeping its kind."""
    try:
        yield
    except MlnmfError as exc:
        raise type(exc)(f"{name}: {exc}") from None
