"""``mlnmf compare`` and ``mlnmf random-test``: parse, call :mod:`mlnmf_cli.experiments`, render."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from mlnmf_cli import experiments
from mlnmf_cli.cli.app import app
from mlnmf_cli.cli.options import cli_parameter
from mlnmf_cli.cli.output import console, line, pct, progress_bar
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.experiments import config as excfg

if TYPE_CHECKING:
    from mlnmf_cli.experiments import CompareResult

    MaxPixels = int | None
else:
    MaxPixels = cli_parameter("max_pixels")

ConfigSpecs = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        "-c",
        help=(
            'A configuration, e.g. "ranks=64,32,16 method=nmf fine_tune=on" (keys: '
            + ", ".join(excfg.CONFIG_KEYS)
            + "); repeat for several. [default: the decompose defaults]"
        ),
        show_default=False,
    ),
]
Measure = Annotated[
    Literal[excfg.MEASURES],  # type: ignore[valid-type]
    typer.Option(
        help="subspace: mean cosine of principal angles; matched: mean cosine of columns matched one to one.",
    ),
]
NullDraws = Annotated[int, typer.Option(min=2, help="Random draws for each null baseline.")]
VerdictDepth = Annotated[
    int,
    typer.Option(
        min=1, help="Depth the verdict speaks about (1: the one layer of the seed's figures)."
    ),
]
Force = Annotated[bool, typer.Option("--force", help="Replace existing output files.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no tables.")]


def _configs(
    specs: Sequence[str] | None, like_seed: tuple[int, ...] | None
) -> list[experiments.Config]:
    try:
        configs = [excfg.parse_config(spec) for spec in specs or []]
    except ParameterError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--config'") from None
    if like_seed is not None:
        configs.append(excfg.like_seed_config(like_seed))
    return configs or [excfg.parse_config("")]


def _size(value: str | None, option: str, max_pixels: int | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        size = excfg.parse_size(value)
        experiments.check_size(size, max_pixels)
    except ParameterError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None
    return size


# --------------------------------------------------------------------------- compare


@app.command()
def compare(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Image files, folders of images, result folders or model.npz files.",
            show_default=False,
            readable=False,
        ),
    ],
    config: ConfigSpecs = None,
    like_seed: Annotated[
        bool,
        typer.Option(
            "--like-seed",
            help="Add the seed's own setup: Semi-NMF, SVD start, greedy, ranks 100,80, channels separate.",
        ),
    ] = False,
    resize: Annotated[
        str | None,
        typer.Option(help="Bring every image to HEIGHTxWIDTH first, e.g. 256x256."),
    ] = None,
    measure: Measure = "subspace",
    null_draws: NullDraws = excfg.DEFAULT_NULL_DRAWS,
    verdict_depth: VerdictDepth = 1,
    max_pixels: MaxPixels = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the results.")] = Path(
        "mlnmf-compare"
    ),
    force: Force = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Decompose every input with every configuration and measure how alike their features and coefficients are."""
    configs = _configs(config, excfg.LIKE_SEED_IMAGE_RANKS if like_seed else None)
    size = _size(resize, "--resize", max_pixels)
    out = experiments.prepare_output(
        out, experiments.planned_files(len(configs), experiments.depths_of(configs)), force=force
    )
    from rich.progress import SpinnerColumn, TextColumn

    subjects = experiments.load_subjects(inputs, resize=size, max_pixels=max_pixels, exclude=out)
    with progress_bar(quiet, SpinnerColumn(), TextColumn("{task.description}")) as progress:
        task = progress.add_task("decomposing", total=None)
        result = experiments.compare(
                subjects, configs, measure=measure, draws=null_draws,
                step=lambda text: progress.update(task, description=f"decomposing {text}"),
            )  # fmt: skip
        progress.update(task, description="writing pictures")
        data = experiments.write_outputs(result, out, verdict_depth=verdict_depth)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    if not quiet:
        _runs_table(result)
        _similarity_table(experiments.similarity_rows([result]), f"similarity ({measure})")
        line(f"results in {out} ({result.seconds:.1f} s)")
    _print_verdicts(data["verdicts"])


# --------------------------------------------------------------------------- random-test


@app.command("random-test")
def random_test(
    count: Annotated[int, typer.Option(min=1, help="Number of random images.")] = 3,
    size: Annotated[
        str | None,
        typer.Option(
            help="HEIGHTxWIDTH of the images. [default: 128x128; 100x100 with --like-seed]"
        ),
    ] = None,
    distribution: Annotated[
        Literal[excfg.DISTRIBUTIONS],  # type: ignore[valid-type]
        typer.Option(
            help="uniform: U(0,1); normal: N(0.5, 0.15) clipped; binary: 0 or 1.",
        ),
    ] = "uniform",
    seed: Annotated[
        int, typer.Option(min=0, help="Seed of the random images (repeat r uses seed + r).")
    ] = 0,
    control: Annotated[
        Path | None,
        typer.Option(
            help="A real image compared with the random ones (resized, made grey).",
            readable=False,
        ),
    ] = None,
    repeats: Annotated[
        int,
        typer.Option(
            min=1, help="Rerun with this many image seeds; report means with 95% intervals."
        ),
    ] = 1,
    like_seed: Annotated[
        bool,
        typer.Option(
            "--like-seed",
            help="The seed's own setup: Semi-NMF, SVD start, one greedy layer of rank 80, on 100x100 images.",
        ),
    ] = False,
    config: ConfigSpecs = None,
    measure: Measure = "subspace",
    null_draws: NullDraws = excfg.DEFAULT_NULL_DRAWS,
    verdict_depth: VerdictDepth = 1,
    max_pixels: MaxPixels = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for images and results.")] = Path(
        "mlnmf-random-test"
    ),
    force: Force = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Decompose images of random pixels and measure whether their features are more alike than their coefficients."""
    if like_seed and config:
        raise typer.BadParameter(
            "--like-seed and --config contradict each other; choose one", param_hint="'--config'"
        )
    configs = _configs(config, excfg.LIKE_SEED_RANDOM_RANKS if like_seed else None)
    default_size = excfg.LIKE_SEED_RANDOM_SIZE if like_seed else (128, 128)
    shape = _size(size, "--size", max_pixels) or default_size
    try:
        experiments.check_size(shape, max_pixels, count)
    except ParameterError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--count'") from None
    out = experiments.prepare_output(
        out, experiments.random_test_files(count, repeats, configs), force=force
    )
    from rich.progress import SpinnerColumn, TextColumn

    with progress_bar(quiet, SpinnerColumn(), TextColumn("{task.description}")) as progress:
        task = progress.add_task("decomposing", total=None)
        test = experiments.random_test(
                out, configs, count=count, size=shape, distribution=distribution, seed=seed,
                repeats=repeats, control=control, measure=measure, draws=null_draws,
                max_pixels=max_pixels,
                step=lambda text: progress.update(task, description=f"decomposing {text}"),
            )  # fmt: skip
        progress.update(task, description="writing pictures")
        data = experiments.write_random_test(test, out, verdict_depth=verdict_depth)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    if not quiet:
        _runs_table(test.results[0])
        title = (
            f"similarity ({measure}) of {count} {distribution} random images, {shape[0]}x{shape[1]}"
        )
        if repeats > 1:
            title += f", mean and 95% interval over {repeats} repeats"
        _similarity_table(experiments.similarity_rows(test.results), title)
        line(f"results in {out} ({test.seconds:.1f} s)")
    _print_verdicts(data["verdicts"])


# --------------------------------------------------------------------------- rendering


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def _runs_table(result: CompareResult) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="decompositions", title_justify="left")
    for name in (
        "input",
        "config",
        "depth",
        "rank",
        "error",
        "greedy",
        "SVD floor",
        "sparsity W",
        "sparsity H",
        "top column",
        "time",
    ):
        table.add_column(name, justify="left" if name in ("input", "config") else "right")
    for row in result.runs:
        for run in row:
            for i, d in enumerate(run.depths):
                time_text = "" if i or run.seconds is None else f"{run.seconds:.2f} s"
                table.add_row(
                    Text(run.subject.name if i == 0 else ""), Text(run.config.label if i == 0 else ""),
                    str(d["depth"]), str(d["rank"]), pct(d["relative_error"]),
                    pct(d.get("greedy_relative_error")), pct(d.get("svd_floor")),
                    _num(d["sparsity_features"]), _num(d["sparsity_coefficients"]),
                    _num(d.get("top_feature_share")), time_text,
                )  # fmt: skip
    console().print(table)


def _similarity_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table
    from rich.text import Text

    repeats = rows[0]["repeats"] if rows else 1
    has_control = any(r.get("control") is not None for r in rows)
    table = Table(title=title, title_justify="left")
    columns = ["config", "depth", "rank", "kind", "across inputs"]
    if repeats == 1:
        columns.append("pairs min-max")
    columns += [
        "null",
        "null 95% range" if repeats == 1 else "",
        "self (random start)",
        "above chance",
    ]
    if has_control:
        columns.append("control vs random")
    for name in columns:
        if name:
            table.add_column(name, justify="left" if name in ("config", "kind") else "right")
    for r in rows:
        cells = [
            Text(r["config"]),
            str(r["depth"]),
            str(r["rank"]),
            r["kind"],
            experiments.interval_text(r["across"], repeats),
        ]
        if repeats == 1:
            pr = r["pair_range"]
            cells.append("" if pr is None else f"{pr[0]:.3f}-{pr[1]:.3f}")
            cells += [f"{r['null']['mean']:.3f}", f"{r['null']['low']:.3f}-{r['null']['high']:.3f}"]
        else:
            cells.append(experiments.interval_text(r["null"], repeats))
        cells.append(experiments.interval_text(r["self"], repeats))
        if r["trivial"]:
            corrected = "trivial (rank = dimension)"
        else:
            corrected = experiments.interval_text(r["corrected"], repeats)
        cells.append(corrected)
        if has_control:
            cells.append(experiments.interval_text(r["control"], repeats))
        table.add_row(*cells)
    console().print(table)


def _print_verdicts(items: list[dict[str, Any]]) -> None:
    for item in items:
        prefix = f"[{item['config']}] " if len(items) > 1 else ""
        line(f"verdict: {prefix}{item['verdict']}", style="bold")
