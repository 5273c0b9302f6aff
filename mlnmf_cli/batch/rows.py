"""A batch's records: one row per input (ok, failed or skipped), and the summary files."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnmf_cli import imageio, pipeline, storage
from mlnmf_cli.batch.inputs import BatchItem
from mlnmf_cli.errors import MlnmfError
from mlnmf_cli.options import Options


@dataclass(frozen=True)
class Row:
    """One input of a batch: ``status`` "ok", "failed" or "skipped"; the numbers when ok.

    The fields are the columns of summary.csv; :meth:`as_dict` is the row in
    summary.json (a row that is not ok has only its first four fields).
    """

    input: str
    status: str
    folder: str | None = None
    error: str | None = None
    height: int | None = None
    width: int | None = None
    channels: str | None = None
    ranks: str | None = None
    relative_error: float | None = None
    psnr: float | None = None
    svd_floor: float | None = None
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return d if self.status == "ok" else {k: d[k] for k in ROW_FIELDS[:4]}


ROW_FIELDS = tuple(f.name for f in dataclasses.fields(Row))


def failed_row(item: BatchItem, out: Path | None, error: str) -> Row:
    """The row of an input that failed; ``out`` None when no folder was planned for it."""
    folder = None if out is None else str(Path(out) / item.name)
    return Row(str(item.path), "failed", folder, error)


def process_item(
    item: BatchItem,
    options: Options,
    out: Path,
    *,
    force: bool = False,
    skip_existing: bool = False,
    progress: pipeline.Progress | None = None,
) -> Row:
    """Decompose one batch item into ``out/<name>``; failures come back as a row, never raised.

    A bug in one input becomes a failed row too (an unattended batch must go on);
    the row says the error is mlnmf's own.
    """
    try:
        return _process(item, options, out, force, skip_existing, progress)
    except Exception as exc:
        error = f"internal error, please report it: {type(exc).__name__}: {exc}"
        return failed_row(item, out, error)


def _process(
    item: BatchItem,
    options: Options,
    out: Path,
    force: bool,
    skip_existing: bool,
    progress: pipeline.Progress | None,
) -> Row:
    start = time.perf_counter()
    if item.problem is not None:
        return failed_row(item, None, item.problem)
    folder = Path(out) / item.name
    if folder.exists() and skip_existing and not force:
        return Row(str(item.path), "skipped", str(folder))
    try:
        storage.refuse_existing(folder, replace=force)
        t0 = time.perf_counter()
        image = imageio.load_image(item.path, max_pixels=options.max_pixels)
        load_seconds = time.perf_counter() - t0
        decomposition = pipeline.decompose_image(image, options, progress)
        decomposition.seconds["load"] = load_seconds
        report = pipeline.write_result(
            decomposition, folder, str(item.path), replace_existing=force
        )
    except MlnmfError as exc:
        return failed_row(item, out, str(exc))
    except MemoryError:
        return failed_row(
            item,
            out,
            "not enough memory to decompose this image (try smaller ranks or --dtype float32)",
        )
    return ok_row(item, folder, report, seconds=time.perf_counter() - start)


def ok_row(item: BatchItem, folder: Path, report: dict[str, Any], *, seconds: float | None) -> Row:
    """The summary row of an input whose result folder holds ``report``."""
    return Row(
        input=str(item.path),
        status="ok",
        folder=str(folder),
        height=report["image"]["height"],
        width=report["image"]["width"],
        channels=report["channels"],
        ranks=",".join(map(str, report["parameters"]["ranks"])),
        relative_error=report["relative_error"],
        psnr=report["psnr"],
        svd_floor=report["svd_floor"]["relative_error"],
        seconds=None if seconds is None else round(seconds, 4),
    )


def write_summary(
    out: Path, rows: Sequence[Row], options: Options, *, interrupted: bool = False
) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.csv`` and the report page ``index.html`` for a
    batch and return the JSON envelope."""
    from mlnmf_cli import page

    summary = summary_envelope(rows, options, interrupted=interrupted)
    storage.write_json(Path(out) / "summary.json", summary)
    storage.write_csv(Path(out) / "summary.csv", summary["results"], ROW_FIELDS)
    page.write_index(Path(out), summary["results"])
    return summary


def summary_envelope(
    rows: Sequence[Row], options: Options, *, interrupted: bool = False
) -> dict[str, Any]:
    """The batch summary (summary.json): counts, every row, and the errors again by input."""
    count = {s: sum(1 for r in rows if r.status == s) for s in ("ok", "failed", "skipped")}
    return {
        "version": storage.REPORT_VERSION,
        "versions": storage.versions(),
        "parameters": options.as_dict(),
        "succeeded": count["ok"],
        "failed": count["failed"],
        "skipped": count["skipped"],
        "interrupted": interrupted,
        "results": [r.as_dict() for r in rows],
        "errors": [{"input": r.input, "error": r.error} for r in rows if r.status == "failed"],
    }
