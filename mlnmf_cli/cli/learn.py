"""``mlnmf learn`` (one dictionary over a collection) and ``mlnmf encode`` (apply it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer

from mlnmf_cli import engine, storage
from mlnmf_cli.cli.common import (
    Dtype,
    FineTune,
    FineTuneIter,
    Layers,
    MaxIter,
    MaxPixels,
    Method,
    Normalize,
    Ranks,
    Refit,
    Seed,
    Solver,
    TargetError,
    Tol,
    app,
    build_options,
    console,
    error_line,
    fail,
    pct,
    progress_bar,
)  # fmt: skip
from mlnmf_cli.cli.decompose import _sigterm_as_interrupt
from mlnmf_cli.collections import LEARN_DEFAULTS
from mlnmf_cli.errors import ExitCode, MlnmfError, ParameterError

Force = Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")]
SkipExisting = Annotated[
    bool,
    typer.Option("--skip-existing", help="If the output folder exists, keep it and do nothing."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table.")]
Recursive = Annotated[bool, typer.Option("--recursive", "-R", help="Descend into subfolders.")]
Channels = Annotated[
    Literal["gray", "stack"] | None,
    typer.Option(
        help="gray (luminance) or stack (colour atoms: each column holds R, G and B). "
        "[default: stack if all images are colour, gray if all are grey]"
    ),
]
LearnInit = Annotated[
    Literal[engine.INITS],  # type: ignore[valid-type]
    typer.Option(
        help="Initialisation; nndsvd here (decompose: nndsvda), measured better on "
        "collections (docs/collections.md)."
    ),
]
Inputs = Annotated[
    list[Path], typer.Argument(help="Image files and folders of images.", show_default=False)
]


def _fail(exc: MlnmfError) -> NoReturn:
    """Bad options or parameters are usage errors (2); every other error is 1."""
    fail(str(exc), ExitCode.USAGE if isinstance(exc, ParameterError) else ExitCode.ERROR)


def _usage(message: str, option: str) -> NoReturn:
    raise typer.BadParameter(message, param_hint=f"'{option}'")


def _existing(out: Path, force: bool, skip_existing: bool, quiet: bool, as_json: bool) -> None:
    """Refuse an existing output folder, or keep it (exit 0) with --skip-existing."""
    if force and skip_existing:
        _usage("--force and --skip-existing contradict each other; choose one", "--force")
    if out.exists() and not out.is_dir():
        fail(f"{out}: output path exists and is not a directory")
    if out.exists() and not force:
        if skip_existing:
            if as_json:
                sys.stdout.write(json.dumps({"output": str(out), "skipped": True}) + "\n")
            if not quiet:
                from rich.text import Text

                console.print(Text(f"{out} exists; kept it (--skip-existing)"), soft_wrap=True)
            raise typer.Exit(int(ExitCode.OK))
        fail(f"{out}: already exists (use --force to replace it or --skip-existing to keep it)")
    # Checked before any work: the result folder is made beside it at the end.
    try:
        storage.prepare_output_dir(out.resolve().parent)
    except MlnmfError as exc:
        _fail(exc)


def _interrupted(what: str) -> NoReturn:
    error_line(f"interrupted; {what}")
    raise typer.Exit(int(ExitCode.INTERRUPTED))


# --------------------------------------------------------------------------- learn


@app.command()
def learn(
    inputs: Inputs,
    ranks: Ranks = None,
    layers: Layers = None,
    size: Annotated[
        str | None,
        typer.Option(
            help="Resize every image to HEIGHTxWIDTH first (else all must share one size)."
        ),
    ] = None,
    patches: Annotated[
        str | None,
        typer.Option(help="Learn from HEIGHTxWIDTH patches of the images instead of whole images."),
    ] = None,
    stride: Annotated[
        str | None,
        typer.Option(help="Step between patches: N or HEIGHTxWIDTH. [default: the patch size]"),
    ] = None,
    method: Method = engine.DEFAULTS["method"],
    solver: Solver = engine.DEFAULTS["solver"],
    init: LearnInit = LEARN_DEFAULTS["init"],
    fine_tune: FineTune = True,
    fine_tune_iter: FineTuneIter = engine.DEFAULTS["fine_tune_iter"],
    normalize: Normalize = True,
    refit: Refit = True,
    max_iter: MaxIter = engine.DEFAULTS["max_iter"],
    tol: Tol = engine.DEFAULTS["tol"],
    target_error: TargetError = None,
    dtype: Dtype = "float32",
    seed: Seed = 0,
    channels: Channels = None,
    max_pixels: MaxPixels = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the model and pictures.")
    ] = Path("mlnmf-model"),
    recursive: Recursive = False,
    force: Force = False,
    skip_existing: SkipExisting = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    memory: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Memory budget in MB: a larger collection is decoded once into a cache on disk "
            "and factorised a block of images at a time. [default: 1/4 of the available memory]",
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Folder for the block cache. [default: beside the output folder]"),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            envvar="MLNMF_SCHEDULER",
            help="Dask scheduler address: the blocks are factorised on its workers.",
        ),
    ] = None,
) -> None:
    """Learn one multilayer dictionary over a collection of images (each image a column)."""
    from rich.progress import BarColumn, TextColumn

    from mlnmf_cli.collections import loading, run

    options = build_options(
        ranks, layers, method=method, solver=solver, init=init, fine_tune=fine_tune,
        fine_tune_iter=fine_tune_iter, normalize=normalize, refit=refit, max_iter=max_iter, tol=tol,
        target_error=target_error, dtype=dtype, seed=seed, channels=channels, max_pixels=max_pixels,
    )  # fmt: skip
    resize = _parse(loading.parse_size, size, "--size")
    spec = None
    if patches is not None:
        try:
            spec = loading.PatchSpec.parse(patches, stride)
        except ParameterError as exc:
            _usage(str(exc), "--patches" if "stride" not in str(exc) else "--stride")
    elif stride is not None:
        _usage("--stride needs --patches", "--stride")
    _existing(out, force, skip_existing, quiet, as_json)
    # No bar when stderr is not a terminal: a log gets the error lines and the table only.
    progress = progress_bar(
        quiet or not console.is_terminal,
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    try:
        with _sigterm_as_interrupt(), progress:
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

            from mlnmf_cli.collections import streaming

            if (
                memory is None
                and cache is None
                and scheduler is None
                and streaming.fits_in_memory(
                    inputs, size=resize, patches=spec, recursive=recursive, exclude=out.resolve()
                )
            ):
                report = run.learn_files(
                    inputs, options, out, size=resize, patches=spec, recursive=recursive,
                    replace=force, on_image=lambda name: progress.update(task, detail=name),
                    on_failed=lambda name, error: error_line(f"{name}: {error}"),
                    on_progress=on_progress,
                )  # fmt: skip
            else:
                report = streaming.learn_streamed(
                    inputs, options, out, memory_mb=memory, cache=cache, scheduler=scheduler,
                    size=resize, patches=spec, recursive=recursive, replace=force,
                    on_image=lambda name: progress.update(task, detail=name),
                    on_failed=lambda name, error: error_line(f"{name}: {error}"),
                    on_progress=on_progress,
                    on_block=lambda b, nb: progress.update(task, detail=f"block {b}/{nb}"),
                )  # fmt: skip
    except KeyboardInterrupt:
        _interrupted(f"nothing was written to {out}")
    except MlnmfError as exc:
        _fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(run.learn_summary(report, out), indent=2) + "\n")
    if not quiet:
        _learn_table(report, out)
    raise typer.Exit(int(ExitCode.PARTIAL if report["failed"] else ExitCode.OK))


def _parse(parser: Any, value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        return parser(value)
    except ParameterError as exc:
        _usage(str(exc), option)


def _learn_table(report: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    shape = "x".join(map(str, report["image_shape"]))
    table = Table(
        title=f"mlnmf learn -> {out}  ({report['columns']} columns of {shape}, {report['channels']})",
        title_justify="left",
    )
    for name in ("depth", "rank", "error", "SVD floor", "median image", "worst image"):
        table.add_column(name, justify="right")
    for d in report["depths"]:
        table.add_row(
            str(d["depth"]), str(d["rank"]), pct(d["relative_error"]), pct(d["svd_floor"]),
            pct(d["median_image_error"]), pct(d["worst_image_error"]),
        )  # fmt: skip
    console.print(table)


# --------------------------------------------------------------------------- encode


@app.command()
def encode(
    model: Annotated[
        Path,
        typer.Argument(help="A model.npz from 'mlnmf learn', or its folder.", show_default=False),
    ],
    inputs: Inputs,
    depth: Annotated[
        int | None, typer.Option(min=1, help="Depth of the dictionary to use. [default: deepest]")
    ] = None,
    max_iter: Annotated[
        int, typer.Option(min=0, help="Sweeps of the non-negative least squares at most.")
    ] = 500,
    tol: Annotated[
        float, typer.Option(min=0.0, help="Stop when a sweep improves the error by less than this.")
    ] = 1e-6,
    max_pixels: MaxPixels = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for codes and reconstructions.")
    ] = Path("mlnmf-codes"),
    recursive: Recursive = False,
    force: Force = False,
    skip_existing: SkipExisting = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    memory: Annotated[
        int | None,
        typer.Option(
            min=1, help="Memory budget in MB: the images are encoded and written a chunk at a time."
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Folder for the codes while they are written. [default: beside --out]"),
    ] = None,
) -> None:
    """Codes of new images with a learned dictionary held fixed; errors and reconstructions."""
    from mlnmf_cli.collections import run

    try:
        path, saved = run.open_model(model)
    except MlnmfError as exc:
        _fail(exc)
    _existing(out, force, skip_existing, quiet, as_json)
    try:
        with _sigterm_as_interrupt():
            if memory is None and cache is None:
                report = run.encode_files(
                    path, saved, inputs, out, depth=depth, max_iter=max_iter, tol=tol,
                    recursive=recursive, max_pixels=max_pixels, replace=force,
                    on_failed=lambda name, error: error_line(f"{name}: {error}"),
                )  # fmt: skip
            else:
                from mlnmf_cli.collections import streaming

                report = streaming.encode_streamed(
                    path, saved, inputs, out, memory_mb=memory, cache=cache, depth=depth,
                    max_iter=max_iter, tol=tol, recursive=recursive, max_pixels=max_pixels,
                    replace=force, on_failed=lambda name, error: error_line(f"{name}: {error}"),
                )  # fmt: skip
    except KeyboardInterrupt:
        _interrupted(f"nothing was written to {out}")
    except MlnmfError as exc:
        _fail(exc)
    if as_json:
        envelope = {k: v for k, v in report.items() if k != "versions"}
        sys.stdout.write(json.dumps(envelope, indent=2) + "\n")
    if not quiet:
        _encode_table(report, out)
    raise typer.Exit(int(ExitCode.PARTIAL if report["failed"] else ExitCode.OK))


def _encode_table(report: dict[str, Any], out: Path) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=f"mlnmf encode -> {out}  (depth {report['depth']}, rank {report['rank']})",
        title_justify="left",
    )
    for name, justify in (
        ("input", "left"),
        ("status", "left"),
        ("error", "right"),
        ("PSNR", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in report["results"]:
        psnr = r.get("psnr")
        table.add_row(
            Text(r["input"]),
            "[green]ok[/]" if r["status"] == "ok" else "[red]failed[/]",
            pct(r.get("relative_error")),
            "" if psnr is None else f"{psnr:.1f} dB",
        )
    console.print(table)
