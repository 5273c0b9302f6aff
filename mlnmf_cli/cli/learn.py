"""``mlnmf learn`` (one dictionary over a collection) and ``mlnmf encode`` (apply it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlnmf_cli.cli.app import ExitCode, app
from mlnmf_cli.cli.options import (
    Command,
    Layers,
    OptionUsage,
    Ranks,
    build_options,
    choice,
    choice_metavar,
    cli_parameter,
    nonempty_path,
    out_folder,
    whole_number,
    with_options,
)
from mlnmf_cli.cli.output import Column, console, error_line, line, pct, print_table, progress_bar
from mlnmf_cli.collections import LEARN_DEFAULTS
from mlnmf_cli.errors import OutputError, ParameterError

COLLECTION_CHANNELS = ("gray", "stack")

Force = Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")]
SkipExisting = Annotated[
    bool,
    typer.Option("--skip-existing", help="If the output folder exists, keep it and do nothing."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table.")]
Recursive = Annotated[bool, typer.Option("--recursive", "-R", help="Descend into subfolders.")]
if TYPE_CHECKING:
    MaxPixels = int | None
    LearnInit = str
    DeepWeight = float
    Dtype = str
else:
    MaxPixels = cli_parameter("max_pixels")
    LearnInit = cli_parameter("init")
    DeepWeight = cli_parameter("deep_weight")
    Dtype = cli_parameter("dtype")
Channels = Annotated[
    str | None,
    typer.Option(
        metavar=choice_metavar(COLLECTION_CHANNELS),
        parser=choice("--channels", COLLECTION_CHANNELS),
        help="gray (luminance) or stack (colour atoms: each column holds R, G and B). "
        "[default: stack if all images are colour, gray if all are grey]",
    ),
]
Inputs = Annotated[
    list[Path],
    typer.Argument(
        metavar="INPUT",
        help="Image files and folders of images.",
        show_default=False,
        readable=False,
        parser=nonempty_path("INPUT"),
    ),
]
Memory = Annotated[
    int | None,
    typer.Option(
        metavar="MB",
        parser=whole_number("--memory", 1),
        help="Memory budget in MB: a larger collection is decoded once into a cache on disk "
        "and factorised a block of images at a time. [default: 1/4 of the available memory]",
    ),
]
Cache = Annotated[
    Path | None,
    typer.Option(
        metavar="FOLDER", help="Folder for the block cache. [default: beside the output folder]"
    ),
]


def _existing(out: Path, force: bool, skip_existing: bool, quiet: bool, as_json: bool) -> None:
    """Refuse an existing output folder, or keep it (exit 0) with --skip-existing."""
    from mlnmf_cli import storage

    if force and skip_existing:
        raise OptionUsage("--force and --skip-existing contradict each other; choose one")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: output path exists and is not a directory")
    if out.exists() and skip_existing:
        if as_json:
            sys.stdout.write(json.dumps({"output": str(out), "skipped": True}) + "\n")
        if not quiet:
            line(f"{out} exists; kept it (--skip-existing)")
        raise typer.Exit(int(ExitCode.OK))
    # Checked before any work (and again when the result is complete), with the
    # words decompose uses: the result folder is made beside it at the end.
    storage.refuse_existing(out, replace=force)
    storage.prepare_output_dir(out.resolve().parent)


def _parsed(parser: Any, value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        return parser(value)
    except ParameterError as exc:
        raise OptionUsage(f"{option} {exc}") from None


# --------------------------------------------------------------------------- learn


@app.command(cls=Command)
@with_options(skip=("init", "deep_weight", "dtype", "channels", "max_pixels"))
def learn(
    inputs: Inputs,
    *,
    ranks: Ranks = None,
    layers: Layers = None,
    settings: dict[str, Any],  # one option per declared field (with_options)
    init: LearnInit = LEARN_DEFAULTS["init"],
    deep_weight: DeepWeight = LEARN_DEFAULTS["deep_weight"],
    dtype: Dtype = LEARN_DEFAULTS["dtype"],
    channels: Channels = None,
    max_pixels: MaxPixels = None,
    size: Annotated[
        str | None,
        typer.Option(
            metavar="HxW",
            help="Resize every image to HEIGHTxWIDTH first (else all must share one size).",
        ),
    ] = None,
    patches: Annotated[
        str | None,
        typer.Option(
            metavar="HxW",
            help="Learn from HEIGHTxWIDTH patches of the images instead of whole images.",
        ),
    ] = None,
    stride: Annotated[
        str | None,
        typer.Option(
            metavar="N|HxW", help="Step between patches: N or HxW. [default: the patch size]"
        ),
    ] = None,
    out: Annotated[
        Path,
        out_folder("Folder for the model and pictures."),
    ] = Path("mlnmf-model"),
    recursive: Recursive = False,
    force: Force = False,
    skip_existing: SkipExisting = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    memory: Memory = None,
    cache: Cache = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            envvar="MLNMF_SCHEDULER",
            metavar="ADDRESS",
            help="Dask scheduler address: the blocks are factorised on its workers "
            "(needs mlnmf[dask]).",
        ),
    ] = None,
) -> None:
    """Learn one multilayer dictionary over a collection of images (each image a column)."""
    from rich.progress import BarColumn, TextColumn

    from mlnmf_cli.collections import loading, run, streaming

    options = build_options(
        ranks,
        layers,
        {
            **settings,
            "init": init,
            "deep_weight": deep_weight,
            "channels": channels,
            "max_pixels": max_pixels,
        },
    )
    resize = _parsed(loading.parse_size, size, "--size")
    spec = None
    if patches is not None:
        try:
            spec = loading.PatchSpec.parse(patches, stride)
        except ParameterError as exc:
            flag = "--stride" if "stride" in str(exc) else "--patches"
            raise OptionUsage(f"{flag}: {exc}") from None
    elif stride is not None:
        raise OptionUsage("--stride needs --patches")
    _existing(out, force, skip_existing, quiet, as_json)
    # No bar when stderr is not a terminal: a log gets the error lines and the table only.
    progress = progress_bar(
        quiet or not console().is_terminal,
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with progress:
        task = progress.add_task("loading", total=None, detail="")

        def on_progress(stage: str, iteration: int, error: float) -> None:
            cap = options.fine_tune_iter if stage == "fine-tune" else options.max_iter
            progress.update(
                task,
                description=stage,
                completed=iteration,
                total=cap,
                detail=f"{iteration}/{cap}  error {100 * error:.2f}%",
            )

        common: dict[str, Any] = dict(
            size=resize, patches=spec, recursive=recursive, replace=force,
            on_image=lambda name: progress.update(task, detail=name),
            on_failed=lambda name, error: error_line(f"{name}: {error}"),
            on_progress=on_progress,
        )  # fmt: skip
        in_memory = (
            memory is None
            and cache is None
            and scheduler is None
            and streaming.fits_in_memory(
                inputs, size=resize, patches=spec, recursive=recursive, exclude=out.resolve()
            )
        )
        if in_memory:
            report = run.learn_files(inputs, options, out, **common)
        else:
            report = streaming.learn_streamed(
                inputs, options, out, memory_mb=memory, cache=cache, scheduler=scheduler,
                on_block=lambda b, nb: progress.update(task, detail=f"block {b}/{nb}"),
                **common,
            )  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(run.learn_summary(report, out), indent=2) + "\n")
    if not quiet:
        _learn_table(report, out)
    raise typer.Exit(int(ExitCode.PARTIAL if report["failed"] else ExitCode.OK))


def _learn_table(report: dict[str, Any], out: Path) -> None:
    shape = "x".join(map(str, report["image_shape"]))
    columns = [
        Column("depth"),
        Column("rank"),
        Column("error"),
        Column("SVD floor"),
        Column("median image"),
        Column("worst image"),
    ]
    rows = [
        [
            str(d["depth"]),
            str(d["rank"]),
            pct(d["relative_error"]),
            pct(d["svd_floor"]),
            pct(d["median_image_error"]),
            pct(d["worst_image_error"]),
        ]
        for d in report["depths"]
    ]
    title = f"mlnmf learn -> {out}  ({report['columns']} columns of {shape}, {report['channels']})"
    print_table(title, columns, rows)


# --------------------------------------------------------------------------- encode


@app.command(cls=Command)
def encode(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            help="A model.npz from 'mlnmf learn', or its folder.",
            show_default=False,
            readable=False,
            parser=nonempty_path("MODEL"),
        ),
    ],
    inputs: Inputs,
    depth: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            parser=whole_number("--depth", 1),
            help="Depth of the dictionary to use. [default: deepest]",
        ),
    ] = None,
    max_iter: Annotated[
        int,
        typer.Option(
            metavar="N",
            parser=whole_number("--max-iter", 0),
            help="Sweeps of the non-negative least squares at most.",
        ),
    ] = 500,
    tol: Annotated[
        float,
        typer.Option(
            metavar="X",
            min=0.0,
            help="Stop when a sweep improves the error by less than this.",
        ),
    ] = 1e-6,
    max_pixels: MaxPixels = None,
    out: Annotated[
        Path,
        out_folder("Folder for codes and reconstructions."),
    ] = Path("mlnmf-codes"),
    recursive: Recursive = False,
    force: Force = False,
    skip_existing: SkipExisting = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    memory: Annotated[
        int | None,
        typer.Option(
            metavar="MB",
            parser=whole_number("--memory", 1),
            help="Memory budget in MB: the images are encoded and written a chunk at a time.",
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            metavar="FOLDER",
            help="Folder for the codes while they are written. [default: beside --out]",
        ),
    ] = None,
) -> None:
    """Codes of new images with a learned dictionary held fixed; errors and reconstructions."""
    from mlnmf_cli.collections import run

    path, saved = run.open_model(model)
    _existing(out, force, skip_existing, quiet, as_json)
    common: dict[str, Any] = dict(
        depth=depth, max_iter=max_iter, tol=tol, recursive=recursive, max_pixels=max_pixels,
        replace=force, on_failed=lambda name, error: error_line(f"{name}: {error}"),
    )  # fmt: skip
    if memory is None and cache is None:
        report = run.encode_files(path, saved, inputs, out, **common)
    else:
        from mlnmf_cli.collections import streaming

        report = streaming.encode_streamed(
            path, saved, inputs, out, memory_mb=memory, cache=cache, **common
        )
    if as_json:
        envelope = {k: v for k, v in report.items() if k != "versions"}
        sys.stdout.write(json.dumps(envelope, indent=2) + "\n")
    if not quiet:
        _encode_table(report, out)
    raise typer.Exit(int(ExitCode.PARTIAL if report["failed"] else ExitCode.OK))


def _encode_table(report: dict[str, Any], out: Path) -> None:
    from rich.text import Text

    columns = [
        Column("input", "left", wrap=True),
        Column("status", "left"),
        Column("error"),
        Column("PSNR"),
    ]
    rows = [
        [
            Text(r["input"]),
            "[green]ok[/]" if r["status"] == "ok" else "[red]failed[/]",
            pct(r.get("relative_error")),
            "" if r.get("psnr") is None else f"{r['psnr']:.1f} dB",
        ]
        for r in report["results"]
    ]
    print_table(
        f"mlnmf encode -> {out}  (depth {report['depth']}, rank {report['rank']})", columns, rows
    )
