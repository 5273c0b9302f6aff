"""The ``mlnmf`` command line: parse, call the library, render. Nothing else.

``app`` (:mod:`.app`) maps every error to one line and an exit code; each
command lives in its own module and importing it registers it on ``app``.
"""

from mlnmf_cli.cli import startup  # noqa: F401, I001  (first: quiet Ctrl-C while starting)
from mlnmf_cli.cli import decompose, experiments, learn, reconstruct  # noqa: F401  (registers the commands)
from mlnmf_cli.cli.app import app
from mlnmf_cli.threads import default_thread_environment


def main() -> None:
    default_thread_environment()  # before NumPy loads
    app()


__all__ = ["app", "main"]
