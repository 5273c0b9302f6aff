"""The ``mlnmf`` command line: parse, call the library, render. Nothing else.

Each command lives in its own module; importing them registers them on ``app``.
"""

from mlnmf_cli.cli import decompose, experiments, learn  # noqa: F401  (registers the commands)
from mlnmf_cli.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
