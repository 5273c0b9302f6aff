"""``mlnmf compare`` and ``mlnmf random-test``: parse, call :mod:`mlnmf_cli.experiments`, render."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlnmf_cli import experiments
from mlnmf_cli.cli.app import app
from mlnmf_cli.cli.options import (
    Command,
    OptionUsage,
    choice,
    choice_metavar,
    cli_parameter,
    nonempty_path,
    out_folder,
    whole_number,
)
from mlnmf_cli.cli.output import Column, line, pct, print_table, progress_bar
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.experiments import config as excfg

if TYPE_CHECKING:
    from mlnmf_cli.experiments import CompareResult, Subject

    MaxPixels = int | None
else:
    MaxPixels = cli_parameter("max_pixels")

ConfigSpecs = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        "-c",
        metavar='"KEY=VALUE ..."',
        help=(
            'A configuration, e.g. "ranks=64,32,16 method=nmf fine_tune=on" (keys: '
            + ", ".join(excfg.CONFIG_KEYS)
            + "); repeat for several. [default: the decompose defaults]"
        ),
        show_default=False,
    ),
]
Measure = Annotated[
    str,
    typer.Option(
        metavar=choice_metavar(excfg.MEASURES),
        parser=choice("--measure", excfg.MEASURES),
        help="subspace: mean cosine of principal angles; matched: mean cosine of columns matched one to one.",
    ),
]
NullDraws = Annotated[
    int,
    typer.Option(
        metavar="N",
        parser=whole_number("--null-draws", 2, excfg.MAX_NULL_DRAWS),
        help=f"Random draws for each null baseline (2 to {excfg.MAX_NULL_DRAWS}).",
    ),
]
VerdictDepth = Annotated[
    int,
    typer.Option(
        metavar="N",
        parser=whole_number("--verdict-depth", 1),
        help="Depth the verdict speaks about (1: the one layer of the 2017 write-up's figures).",
    ),
]
Out = Annotated[
    Path,
    out_folder("Folder for the results."),
]
Force = Annotated[bool, typer.Option("--force", help="Replace existing output files.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no tables.")]


def _config_usage(exc: excfg.ConfigError) -> OptionUsage:
    """A configuration's problem, named as the user gave the configuration."""
    if exc.spec == "defaults":
        return OptionUsage(f"the default configuration (no --config): {exc.problem}")
    if exc.spec.startswith("like-seed"):  # its ranks are fixed: no other ranks to try
        return OptionUsage(f"--like-seed: {exc.problem.split(' (try ')[0]}")
    return OptionUsage(f"--config {exc.spec!r}: {exc.problem}")


def _configs(
    specs: Sequence[str] | None, like_seed: tuple[int, ...] | None
) -> list[experiments.Config]:
    try:
        configs = [excfg.parse_config(spec) for spec in specs or []]
    except excfg.ConfigError as exc:
        raise _config_usage(exc) from None
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
        raise OptionUsage(f"{option} {exc}") from None
    return size


def _check_verdict_depth(depth: int, configs: Sequence[experiments.Config]) -> None:
    deepest = max(len(c.options.ranks) for c in configs)
    if depth > deepest:
        layers = f"{deepest} layer" + ("" if deepest == 1 else "s")
        raise OptionUsage(
            f"--verdict-depth {depth} is deeper than every configuration (the deepest has "
            f"{layers}; try --verdict-depth {deepest})"
        )


def _check_grid(subjects: list[Subject], configs: Sequence[experiments.Config]) -> None:
    from mlnmf_cli.experiments.comparison import check_grid

    try:
        check_grid(subjects, configs)
    except excfg.ConfigError as exc:
        raise _config_usage(exc) from None


# --------------------------------------------------------------------------- compare


@app.command(cls=Command)
def compare(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT",
            parser=nonempty_path("INPUT"),
            help="Image files, folders of images, result folders or model.npz files (two or more).",
            show_default=False,
            readable=False,
        ),
    ],
    config: ConfigSpecs = None,
    like_seed: Annotated[
        bool,
        typer.Option(
            "--like-seed",
            help="Add the setup of the 2017 write-up's code: Semi-NMF, SVD start, greedy, "
            "ranks 100,80, channels separate.",
        ),
    ] = False,
    resize: Annotated[
        str | None,
        typer.Option(metavar="HxW", help="Bring every image to HEIGHTxWIDTH first, e.g. 256x256."),
    ] = None,
    measure: Measure = "subspace",
    null_draws: NullDraws = excfg.DEFAULT_NULL_DRAWS,
    verdict_depth: VerdictDepth = 1,
    max_pixels: MaxPixels = None,
    out: Out = Path("mlnmf-compare"),
    force: Force = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Decompose every input with every configuration and measure how alike their features and coefficients are."""
    configs = _configs(config, excfg.LIKE_SEED_IMAGE_RANKS if like_seed else None)
    size = _size(resize, "--resize", max_pixels)
    _check_verdict_depth(verdict_depth, configs)
    planned = experiments.planned_files(len(configs), experiments.depths_of(configs))
    if Path(out).is_dir():
        experiments.refuse_existing_files(out, planned, force=force)
    subjects = experiments.load_subjects(inputs, resize=size, max_pixels=max_pixels, exclude=out)
    _check_grid(subjects, configs)
    # Everything is checked: only now is anything written.
    out = experiments.prepare_output(out, planned, force=force)
    from rich.progress import SpinnerColumn, TextColumn

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
        line(f"results in {out} ({result.seconds:.1f} s); open {out / 'index.html'}")
    _print_verdicts(data["verdicts"])


# --------------------------------------------------------------------------- random-test


@app.command("random-test", cls=Command)
def random_test(
    count: Annotated[
        int,
        typer.Option(
            metavar="N",
            parser=whole_number("--count", 2),
            help="Number of random images (at least 2).",
        ),
    ] = 3,
    size: Annotated[
        str | None,
        typer.Option(
            metavar="HxW",
            help="HEIGHTxWIDTH of the images. [default: 128x128; 100x100 with --like-seed]",
        ),
    ] = None,
    distribution: Annotated[
        str,
        typer.Option(
            metavar=choice_metavar(excfg.DISTRIBUTIONS),
            parser=choice("--distribution", excfg.DISTRIBUTIONS),
            help="uniform: U(0,1); normal: N(0.5, 0.15) clipped; binary: 0 or 1.",
        ),
    ] = "uniform",
    seed: Annotated[
        int,
        typer.Option(
            metavar="N",
            parser=whole_number("--seed", 0),
            help="Seed of the random images (repeat r uses seed + r).",
        ),
    ] = 0,
    control: Annotated[
        Path | None,
        typer.Option(
            metavar="IMAGE",
            parser=nonempty_path("--control"),
            help="A real image compared with the random ones (resized, made grey).",
            readable=False,
        ),
    ] = None,
    repeats: Annotated[
        int,
        typer.Option(
            metavar="N",
            parser=whole_number("--repeats", 1),
            help="Rerun with this many image seeds; report means with 95% intervals.",
        ),
    ] = 1,
    like_seed: Annotated[
        bool,
        typer.Option(
            "--like-seed",
            help="The setup of the 2017 write-up's code: Semi-NMF, SVD start, one greedy layer "
            "of rank 80, on 100x100 images.",
        ),
    ] = False,
    config: ConfigSpecs = None,
    measure: Measure = "subspace",
    null_draws: NullDraws = excfg.DEFAULT_NULL_DRAWS,
    verdict_depth: VerdictDepth = 1,
    max_pixels: MaxPixels = None,
    out: Annotated[
        Path,
        out_folder("Folder for images and results."),
    ] = Path("mlnmf-random-test"),
    force: Force = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Decompose images of random pixels and measure whether their features are more alike than their coefficients."""
    if like_seed and config:
        raise OptionUsage("--like-seed and --config contradict each other; choose one")
    configs = _configs(config, excfg.LIKE_SEED_RANDOM_RANKS if like_seed else None)
    default_size = excfg.LIKE_SEED_RANDOM_SIZE if like_seed else (128, 128)
    shape = _size(size, "--size", max_pixels) or default_size
    try:
        experiments.check_size(shape, max_pixels, count)
    except ParameterError as exc:
        raise OptionUsage(f"--count {count}: {exc}") from None
    try:  # every repeat writes its own images
        experiments.check_size(shape, max_pixels, count * repeats)
    except ParameterError as exc:
        raise OptionUsage(f"--repeats {repeats}: {exc}") from None
    _check_verdict_depth(verdict_depth, configs)
    try:
        excfg.check_fits(configs, shape, f"the {shape[0]}x{shape[1]} images of --size")
    except excfg.ConfigError as exc:
        raise _config_usage(exc) from None
    if control is not None:
        from mlnmf_cli import imageio
        from mlnmf_cli.errors import about

        with about(control):
            imageio.load_image(control)
    planned = experiments.random_test_files(count, repeats, configs)
    # Everything is checked: only now is anything written.
    out = experiments.prepare_output(out, planned, force=force)
    from rich.progress import SpinnerColumn, TextColumn

    there = {name for name in planned if (out / name).exists()}  # only with --force
    try:
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
    except BaseException:  # interrupted or failed: keep no file of this run (they block a rerun)
        for name in set(planned) - there:
            with contextlib.suppress(OSError):
                (out / name).unlink(missing_ok=True)
        raise
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
        line(f"results in {out} ({test.seconds:.1f} s); open {out / 'index.html'}")
    _print_verdicts(data["verdicts"])


# --------------------------------------------------------------------------- rendering


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def _runs_table(result: CompareResult) -> None:
    from rich.text import Text

    columns = [
        Column("input", "left", wrap=True),
        Column("config", "left", wrap=True),
        Column("depth (rank)"),
        Column("error"),
        Column("greedy"),
        Column("SVD floor"),
        Column("sparse W"),
        Column("sparse H"),
        Column("top col"),
        Column("time"),
    ]
    rows: list[list[str | Text]] = []
    for row in result.runs:
        for run in row:
            for i, d in enumerate(run.depths):
                time_text = "" if i or run.seconds is None else f"{run.seconds:.2f} s"
                rows.append([
                    Text(run.subject.name if i == 0 else ""), Text(run.config.label if i == 0 else ""),
                    f"{d['depth']} ({d['rank']})", pct(d["relative_error"]),
                    pct(d.get("greedy_relative_error")), pct(d.get("svd_floor")),
                    _num(d["sparsity_features"]), _num(d["sparsity_coefficients"]),
                    _num(d.get("top_feature_share")), time_text,
                ])  # fmt: skip
    print_table("decompositions", columns, rows, keys=2)


def _stat(stat: dict[str, float] | None, repeats: int) -> str:
    """A statistic for a cell: the mean, and its interval on a line of its own."""
    return experiments.interval_text(stat, repeats).replace(" [", "\n[", 1)


def _similarity_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.text import Text

    repeats = rows[0]["repeats"] if rows else 1
    has_control = any(r.get("control") is not None for r in rows)
    names = ["config", "depth (rank)", "kind", "across inputs"]
    if repeats == 1:
        names += ["pairs min-max", "null", "null 95% range"]
    else:
        names.append("null")
    names += ["self (random start)", "above chance"]
    if has_control:
        names.append("control vs random")
    columns = [
        Column(n, "left", wrap=True)
        if n == "config"
        else Column(n, "left" if n == "kind" else "right")
        for n in names
    ]
    cells: list[list[str | Text]] = []
    for r in rows:
        row: list[str | Text] = [
            Text(r["config"]),
            f"{r['depth']} ({r['rank']})",
            r["kind"],
            _stat(r["across"], repeats),
        ]
        if repeats == 1:
            pr = r["pair_range"]
            row.append("" if pr is None else f"{pr[0]:.3f}-{pr[1]:.3f}")
            row += [f"{r['null']['mean']:.3f}", f"{r['null']['low']:.3f}-{r['null']['high']:.3f}"]
        else:
            row.append(_stat(r["null"], repeats))
        row.append(_stat(r["self"], repeats))
        if r["trivial"]:
            row.append("trivial (rank = dimension)")
        else:
            row.append(_stat(r["corrected"], repeats))
        if has_control:
            row.append(_stat(r["control"], repeats))
        cells.append(row)
    print_table(title, columns, cells, keys=3)


def _print_verdicts(items: list[dict[str, Any]]) -> None:
    for item in items:
        prefix = f"[{item['config']}] " if len(items) > 1 else ""
        line(f"verdict: {prefix}{item['verdict']}", style="bold")
