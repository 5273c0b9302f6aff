"""``mlnmf decompose`` and ``mlnmf reconstruct``."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, TextColumn
from rich.table import Table
from rich.text import Text

from mlnmf_cli import batch, engine, imageio, pipeline, storage
from mlnmf_cli.cli.common import (
    Channels,
    Dtype,
    FineTune,
    FineTuneIter,
    Init,
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
from mlnmf_cli.errors import ExitCode, MlnmfError, ParameterError

# --------------------------------------------------------------------------- decompose


@app.command()
def decompose(
    inputs: Annotated[
        list[Path], typer.Argument(help="Image files and folders of images.", show_default=False)
    ],
    ranks: Ranks = None,
    layers: Layers = None,
    method: Method = engine.DEFAULTS["method"],
    solver: Solver = engine.DEFAULTS["solver"],
    init: Init = engine.DEFAULTS["init"],
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
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the results.")] = Path(
        "mlnmf-out"
    ),
    recursive: Annotated[
        bool, typer.Option("--recursive", "-R", help="Descend into subfolders.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace existing result folders.")
    ] = False,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing", help="Keep existing result folders and go on (resume a batch)."
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the batch summary as JSON on stdout.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no table.")
    ] = False,
    jobs: Annotated[
        str,
        typer.Option(
            "--jobs", "-j", help="Worker processes: a number, or 'auto' for one per core."
        ),
    ] = "1",
    scheduler: Annotated[
        str | None,
        typer.Option(
            envvar="MLNMF_SCHEDULER",
            help="Address of a Dask distributed scheduler to run the batch on (needs mlnmf[dask]).",
        ),
    ] = None,
) -> None:
    """Decompose images into layers of features and coefficients; write pictures, model and report."""
    if force and skip_existing:
        raise typer.BadParameter(
            "--force and --skip-existing contradict each other; choose one", param_hint="'--force'"
        )
    n_jobs = parse_jobs(jobs)
    options = build_options(
        ranks, layers, method=method, solver=solver, init=init, fine_tune=fine_tune,
        fine_tune_iter=fine_tune_iter, normalize=normalize, refit=refit, max_iter=max_iter, tol=tol,
        target_error=target_error, dtype=dtype, seed=seed, channels=channels, max_pixels=max_pixels,
    )  # fmt: skip
    try:
        out = storage.prepare_output_dir(out)
    except MlnmfError as exc:
        fail(str(exc))
    items = pipeline.expand_inputs(inputs, recursive=recursive, exclude=out)
    rows: list[dict[str, Any]] = []
    interrupted = False
    progress = progress_bar(
        quiet, TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}")
    )
    try:
        with progress:
            batch_task = progress.add_task("images", total=len(items), detail=f"0/{len(items)}")
            layer_task = progress.add_task("", total=None, detail="", visible=False)

            def on_start(item: pipeline.BatchItem) -> None:
                progress.reset(
                    layer_task, total=None, description=item.name or str(item.path), detail=""
                )
                progress.update(layer_task, visible=True)

            def on_progress(stage: str, iteration: int, error: float) -> None:
                cap = options.fine_tune_iter if stage.endswith("fine-tune") else options.max_iter
                progress.update(
                    layer_task,
                    completed=iteration,
                    total=cap,
                    detail=f"{stage} {iteration}/{cap}  error {100 * error:.2f}%",
                )

            def on_done(row: dict[str, Any]) -> None:
                rows.append(row)
                if row["status"] == "failed":
                    error_line(f"{row['input']}: {row['error']}")
                progress.update(batch_task, advance=1, detail=f"{len(rows)}/{len(items)}")

            with _sigterm_as_interrupt():
                batch.run_batch(
                    items, options, out, force=force, skip_existing=skip_existing,
                    jobs=n_jobs, scheduler=scheduler,
                    on_start=on_start, on_progress=on_progress, on_done=on_done,
                )  # fmt: skip
    except KeyboardInterrupt:
        interrupted = True
    except MlnmfError as exc:
        fail(str(exc))
    try:
        summary = pipeline.write_summary(out, rows, options, interrupted=interrupted)
    except OSError as exc:
        fail(f"{out}: cannot write the batch summary ({exc.strerror or exc})")
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    if not quiet:
        _summary_table(rows, out)
    if interrupted:
        error_line(
            f"interrupted after {len(rows)} of {len(items)} input(s); finished results are in {out}"
        )
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    raise typer.Exit(int(_batch_exit_code(summary)))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a script stopping us) ends the batch like Ctrl-C: summary written, exit 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parse_jobs(value: str) -> int:
    if value.strip().lower() == "auto":
        return pipeline.cpu_count()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise typer.BadParameter(
            f"must be a whole number of at least 1 or 'auto', got {value!r}", param_hint="'--jobs'"
        )
    return n


def _batch_exit_code(summary: dict[str, Any]) -> ExitCode:
    if summary["failed"] == 0:
        return ExitCode.OK
    return ExitCode.PARTIAL if summary["succeeded"] + summary["skipped"] else ExitCode.ERROR


def _summary_table(rows: list[dict[str, Any]], out: Path) -> None:
    table = Table(title=f"mlnmf decompose -> {out}", title_justify="left")
    for name, justify in (
        ("input", "left"),
        ("status", "left"),
        ("error", "right"),
        ("SVD floor", "right"),
        ("PSNR", "right"),
        ("time", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        status = {"ok": "[green]ok[/]", "skipped": "[yellow]skipped[/]"}.get(
            r["status"], "[red]failed[/]"
        )
        psnr = r.get("psnr")
        table.add_row(
            Text(r["input"]), status, pct(r.get("relative_error")), pct(r.get("svd_floor")),
            "" if psnr is None else f"{psnr:.1f} dB", "" if r.get("seconds") is None else f"{r['seconds']:.2f} s",
        )  # fmt: skip
    console.print(table)


# --------------------------------------------------------------------------- reconstruct


@app.command()
def reconstruct(
    model: Annotated[
        Path, typer.Argument(help="A model.npz or a result folder.", show_default=False)
    ],
    depth: Annotated[
        int | None, typer.Option(min=1, help="Depth to rebuild. [default: deepest]")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="PNG to write. [default: rebuilt_depth{d}.png beside the model]"
        ),
    ] = None,
    original: Annotated[
        Path | None, typer.Option(help="Compare with this image: relative error and PSNR.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing output file.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
) -> None:
    """Rebuild an image from a saved model."""
    path = pipeline.model_path(model)
    try:
        saved = storage.load_model(path)
    except MlnmfError as exc:
        fail(f"{path}: {exc}")
    d = saved.depth if depth is None else depth
    try:
        pixels = pipeline.rebuild(saved, d)
    except ParameterError as exc:
        fail(f"{path}: {exc}", ExitCode.USAGE)
    except MlnmfError as exc:
        fail(f"{path}: {exc}")
    target = out if out is not None else path.parent / f"rebuilt_depth{d}.png"
    if target.exists() and not force:
        fail(f"{target}: already exists (use --force to replace it)")
    result: dict[str, Any] = {"model": str(path), "depth": d, "output": str(target)}
    if original is not None:
        try:
            result.update(pipeline.compare_to_original(pixels, saved.meta["channels"], original))
        except MlnmfError as exc:
            fail(f"{original}: {exc}")
    try:
        storage.save_image(target, imageio.to_pil(pixels.clip(0.0, 1.0)))
    except OSError as exc:
        fail(f"{target}: cannot write ({exc.strerror or exc})")
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        line = f"wrote {target} (depth {d} of {saved.depth})"
        if original is not None:
            psnr = result["psnr"]
            line += (
                f"; against {original}: relative error {pct(result['relative_error'])}, PSNR "
                + ("inf" if psnr is None else f"{psnr:.2f} dB")
            )
        console.print(Text(line), soft_wrap=True)
