"""What every command shares: the app, the error line, option types, option parsing."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console
from rich.progress import Progress, ProgressColumn, TimeElapsedColumn
from rich.text import Text
from typer.core import TyperGroup

from mlnmf_cli import __version__, engine, imageio, pipeline
from mlnmf_cli.errors import ExitCode, ParameterError

# Rich assumes 80 columns when stderr is not a terminal (a log file, a CI job), which
# squeezes the result tables into ellipses; logs get room unless COLUMNS says otherwise.
_LOG_WIDTH = None if sys.stderr.isatty() or "COLUMNS" in os.environ else 160
console = Console(stderr=True, highlight=False, width=_LOG_WIDTH)


def error_line(message: str) -> None:
    """One red line on stderr; never wrapped, never read as markup."""
    console.print(Text(f"mlnmf: error: {message}", style="red"), soft_wrap=True)


def fail(message: str, code: ExitCode = ExitCode.ERROR) -> NoReturn:
    error_line(message)
    raise typer.Exit(int(code))


class _Group(TyperGroup):
    """Turns Click's usage errors into the same single line as every other error."""

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


# --------------------------------------------------------------------------- shared options


def parse_ranks(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    ranks = []
    for piece in value.split(","):
        piece = piece.strip()
        try:
            rank = int(piece)
        except ValueError:
            raise typer.BadParameter(
                f"ranks must be whole numbers separated by commas, got {value!r}",
                param_hint="'--ranks'",
            ) from None
        if rank < 1:
            raise typer.BadParameter(
                f"every rank must be at least 1, got {rank}", param_hint="'--ranks'"
            )
        ranks.append(rank)
    return tuple(ranks)


Ranks = Annotated[
    str | None,
    typer.Option(
        "--ranks", "-r", help="Rank of each layer, decreasing, e.g. 64,32,16. [default: 64,32,16]"
    ),
]
Layers = Annotated[
    int | None,
    typer.Option(
        "--layers", "-l", min=1, help="Number of layers; must match --ranks when both are given."
    ),
]
Method = Annotated[
    Literal[engine.METHODS],  # type: ignore[valid-type]
    typer.Option(help="nmf: W >= 0; semi: W unconstrained."),
]
Solver = Annotated[
    Literal[engine.SOLVERS],  # type: ignore[valid-type]
    typer.Option(help="hals: fast; mu: multiplicative updates."),
]
Init = Annotated[
    Literal[engine.INITS],  # type: ignore[valid-type]
    typer.Option(
        help="Initialisation (svd: the seed's Semi-NMF start).",
    ),
]
FineTune = Annotated[
    bool,
    typer.Option(
        "--fine-tune/--no-fine-tune", help="Jointly fine-tune all layers after greedy training."
    ),
]
Normalize = Annotated[
    bool,
    typer.Option("--normalize/--no-normalize", help="Scale W columns to unit norm between layers."),
]
Refit = Annotated[
    bool,
    typer.Option(
        "--refit/--no-refit",
        help="Greedy training: re-fit each deeper layer's coefficients to the image itself "
        "(not with --max-iter 0).",
    ),
]
FineTuneIter = Annotated[int, typer.Option(min=0, help="Iterations of joint fine-tuning.")]
MaxIter = Annotated[
    int,
    typer.Option(
        min=0,
        help="Iterations per layer at most (0: keep the initialisation, as the seed's pipeline did).",
    ),
]
Tol = Annotated[
    float,
    typer.Option(min=0.0, help="Stop a layer when its relative improvement falls below this."),
]
TargetError = Annotated[
    float | None,
    typer.Option(min=0.0, help="Stop a layer as soon as its relative error reaches this."),
]
Dtype = Annotated[
    Literal[pipeline.DTYPES],  # type: ignore[valid-type]
    typer.Option(help="Working precision."),
]
Seed = Annotated[int, typer.Option(help="Random seed; recorded in every report.")]
Channels = Annotated[
    Literal[imageio.CHANNEL_MODES] | None,  # type: ignore[valid-type]
    typer.Option(
        help="Colour images: gray (luminance), stack (R,G,B side by side, shared features), separate (one model per channel). [default: stack]",
    ),
]
MaxPixels = Annotated[
    int | None,
    typer.Option(
        min=1, help="Refuse images with more pixels than this. [default: Pillow's limit, 89478485]"
    ),
]


def build_options(
    ranks: str | None,
    layers: int | None,
    **kwargs: Any,
) -> pipeline.Options:
    """Options from the command line, or a usage error (exit 2) naming what is wrong."""
    parsed = parse_ranks(ranks)
    if parsed is None:
        parsed = pipeline.DEFAULT_RANKS if layers is None else pipeline.DEFAULT_RANKS[:layers]
        if layers is not None and layers > len(pipeline.DEFAULT_RANKS):
            raise typer.BadParameter(
                f"--layers {layers} needs --ranks with {layers} ranks (the default has {len(pipeline.DEFAULT_RANKS)})",
                param_hint="'--layers'",
            )
    elif layers is not None and layers != len(parsed):
        raise typer.BadParameter(
            f"--layers {layers} does not match --ranks {ranks}, which has {len(parsed)} rank(s)",
            param_hint="'--layers'",
        )
    try:
        return pipeline.Options(ranks=parsed, **kwargs)
    except ParameterError as exc:
        raise typer.BadParameter(str(exc)) from None


def progress_bar(quiet: bool, *columns: ProgressColumn) -> Progress:
    """A transient progress display on stderr: ``columns`` then the elapsed time."""
    return Progress(*columns, TimeElapsedColumn(), console=console, disable=quiet, transient=True)


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"
