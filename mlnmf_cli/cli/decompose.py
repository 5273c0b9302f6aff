"""``mlnmf decompose``: images -> result folders (a batch), with progress, table and summary."""

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
    nonempty_path,
    out_folder,
    with_options,
)
from mlnmf_cli.cli.output import Column, error_line, line, pct, print_table, progress_bar
from mlnmf_cli.errors import OutputError
from mlnmf_cli.options import quoted

if TYPE_CHECKING:
    from mlnmf_cli.batch import BatchItem, Row

# --------------------------------------------------------------------------- decompose


@app.command(cls=Command)
@with_options()
def decompose(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT",
            parser=nonempty_path("INPUT"),
            help="Image files and folders of images.",
            show_default=False,
            readable=False,
        ),
    ],
    *,
    ranks: Ranks = None,
    layers: Layers = None,
    settings: dict[str, Any],  # one option per declared field (with_options)
    out: Annotated[
        Path,
        out_folder("Folder for the results."),
    ] = Path("mlnmf-out"),
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
            "--jobs",
            "-j",
            metavar="N|auto",
            help="Worker processes: a number, or 'auto' for one per core.",
        ),
    ] = "1",
    scheduler: Annotated[
        str | None,
        typer.Option(
            envvar="MLNMF_SCHEDULER",
            metavar="ADDRESS",
            help="Address of a Dask distributed scheduler to run the batch on (needs mlnmf[dask]).",
        ),
    ] = None,
) -> None:
    """Decompose images into layers of features and coefficients; write pictures, model and report."""
    if force and skip_existing:
        raise OptionUsage("--force and --skip-existing contradict each other; choose one")
    from rich.progress import BarColumn, TextColumn

    from mlnmf_cli import batch, storage

    n_jobs = parse_jobs(jobs)
    options = build_options(ranks, layers, settings)
    if scheduler is not None:
        from mlnmf_cli.batch.dask import check_address

        check_address(scheduler)  # before OUT is made
    out = storage.prepare_output_dir(out)
    items = batch.expand_inputs(inputs, recursive=recursive, exclude=out)
    rows: list[Row] = []
    interrupted = False
    progress = progress_bar(
        quiet, TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}")
    )
    try:
        with progress:
            batch_task = progress.add_task("images", total=len(items), detail=f"0/{len(items)}")
            layer_task = progress.add_task("", total=None, detail="", visible=False)

            def on_start(item: BatchItem) -> None:
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

            def on_done(row: Row) -> None:
                rows.append(row)
                if row.status == "failed":
                    error_line(f"{row.input}: {row.error}")
                elif row.note and row.status == "ok":
                    if not quiet:
                        line(f"mlnmf: note: {row.input}: {row.note}")
                elif row.note:
                    line(f"mlnmf: warning: {row.input}: {row.note}", style="yellow")
                progress.update(batch_task, advance=1, detail=f"{len(rows)}/{len(items)}")

            with batch.sigterm_as_interrupt():
                batch.run_batch(
                    items, options, out, force=force, skip_existing=skip_existing,
                    jobs=n_jobs, scheduler=scheduler,
                    on_start=on_start, on_progress=on_progress, on_done=on_done,
                )  # fmt: skip
    except KeyboardInterrupt:
        interrupted = True
    try:
        summary = batch.write_summary(out, rows, options, interrupted=interrupted)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the batch summary ({exc.strerror or exc})") from exc
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


def parse_jobs(value: str) -> int:
    if value.strip().lower() == "auto":
        from mlnmf_cli.batch import cpu_count

        return cpu_count()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise OptionUsage(f"--jobs {quoted(value)} is not a whole number of at least 1, nor 'auto'")
    return n


def _batch_exit_code(summary: dict[str, Any]) -> ExitCode:
    if summary["failed"] == 0:
        return ExitCode.OK
    return ExitCode.PARTIAL if summary["succeeded"] + summary["skipped"] else ExitCode.ERROR


def _summary_table(rows: list[Row], out: Path) -> None:
    from rich.text import Text

    columns = [
        Column("input", "left", wrap=True),
        Column("status", "left"),
        Column("error"),
        Column("SVD floor"),
        Column("PSNR"),
        Column("time"),
    ]
    cells: list[list[str | Text]] = []
    for r in rows:
        status = {"ok": "[green]ok[/]", "skipped": "[yellow]skipped[/]"}.get(
            r.status, "[red]failed[/]"
        )
        psnr = r.psnr
        cells.append([
            Text(r.input), status, pct(r.relative_error), pct(r.svd_floor),
            "" if psnr is None else f"{psnr:.1f} dB", "" if r.seconds is None else f"{r.seconds:.2f} s",
        ])  # fmt: skip
    print_table(f"mlnmf decompose -> {out}", columns, cells)
