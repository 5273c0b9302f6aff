"""A batch's records: one row per input (ok, failed or skipped), and the summary files.

The summary files of an output folder (summary.json, summary.csv, index.html)
describe every result in the folder, not just the last run's: a run merges its
rows into the rows already there (by input, the newest wins) and adds any
result folder no row names. They are replaced only when mlnmf wrote them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnmf_cli import imageio, pipeline, storage
from mlnmf_cli.batch.inputs import BatchItem
from mlnmf_cli.batch.signals import signals_deferred
from mlnmf_cli.errors import MlnmfError, OutputError, internal_error
from mlnmf_cli.options import Options


@dataclass(frozen=True)
class Row:
    """One input of a batch: ``status`` "ok", "failed" or "skipped"; the numbers when
    there is a result (a skipped input's come from the report in its folder).

    The fields are the columns of summary.csv; :meth:`as_dict` is the row in
    summary.json (a failed row has only its first four fields). ``note`` says
    why a kept result may not be what this run would have made.
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
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return d if self.status != "failed" else {k: d[k] for k in ROW_FIELDS[:4]}

    @classmethod
    def from_dict(cls, d: Any) -> Row | None:
        """A row read back from summary.json, or None when ``d`` is not one."""
        if not isinstance(d, dict) or not isinstance(d.get("input"), str):
            return None
        if d.get("status") not in ("ok", "failed", "skipped"):
            return None
        values: dict[str, Any] = {k: d.get(k) for k in ROW_FIELDS}
        for f in dataclasses.fields(cls):
            v = values[f.name]
            kinds = (str,) if "str" in str(f.type) else (int, float)
            if v is not None and (not isinstance(v, kinds) or isinstance(v, bool)):
                return None
        return cls(**values)

    @property
    def folder_name(self) -> str | None:
        return None if self.folder is None else Path(self.folder).name


ROW_FIELDS = tuple(f.name for f in dataclasses.fields(Row))

SUMMARY_LOCK_WAIT = 3600.0
"""Seconds a finished batch waits for another run on its folder before writing its summary."""


def failed_row(item: BatchItem, out: Path | None, error: str) -> Row:
    """The row of an input that failed; ``out`` None when no folder was planned for it."""
    folder = None if out is None else str(Path(out) / item.name)
    return Row(input_text(item), "failed", folder, error)


def input_text(item: BatchItem) -> str:
    """How an input is named in rows, reports and messages: its path as one printable line."""
    return storage.display_path(item.path)


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
        return failed_row(item, out, internal_error(exc))


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
    if os.path.lexists(folder) and skip_existing and not force:
        return skipped_row(item, folder, options)
    try:
        storage.refuse_existing(folder, replace=force)
        t0 = time.perf_counter()
        image = imageio.load_image(item.path, max_pixels=options.max_pixels)
        load_seconds = time.perf_counter() - t0
        decomposition = pipeline.decompose_image(image, options, progress)
        decomposition.seconds["load"] = load_seconds
        report = pipeline.write_result(
            decomposition, folder, input_text(item), replace_existing=force
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
    """The summary row of an input whose result folder holds ``report``; its note
    holds what the loader said about the image (range, frames, orientation...)."""
    row = _report_row(input_text(item), "ok", folder, report, seconds=seconds)
    notes = report["image"].get("notes") or []
    return dataclasses.replace(row, note="; ".join(map(str, notes))) if notes else row


def skipped_row(item: BatchItem, folder: Path, options: Options) -> Row:
    """The row of an input whose existing result is kept: the numbers from its report,
    and a note when the report is unreadable or was made with other settings."""
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        row = _report_row(input_text(item), "skipped", folder, report, seconds=None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Row(
            input_text(item), "skipped", str(folder), note="kept; it holds no readable report.json"
        )
    differ = settings_differ(report.get("parameters"), options)
    if differ:
        row = dataclasses.replace(row, note=f"kept; made with other settings ({differ})")
    return row


def settings_differ(parameters: Any, options: Options) -> str:
    """The settings of a report that differ from ``options``, as ``name X (now Y)``; "" if none."""
    now = json.loads(json.dumps(options.as_dict(), default=str))
    if not isinstance(parameters, dict):
        return "settings unknown"

    def show(v: Any) -> str:
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)

    return ", ".join(
        f"{key} {show(parameters.get(key))} (now {show(value)})"
        for key, value in now.items()
        if parameters.get(key) != value
    )


def _report_row(
    source: str, status: str, folder: Path, report: dict[str, Any], *, seconds: float | None
) -> Row:
    return Row(
        input=source,
        status=status,
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
    """Merge a batch's rows into the folder's ``summary.json``, ``summary.csv`` and report
    page ``index.html``; return the batch's own JSON envelope.

    A batch that delivered no row (stopped before its first input) changes nothing and
    writes nothing when another run is busy in ``out``.
    """
    from mlnmf_cli import page

    out = Path(out)
    summary = summary_envelope(rows, options, interrupted=interrupted)
    # The batch itself held the lock; another run may have taken it since. Its rows and
    # ours merge whatever the order, so wait for it (Ctrl-C stops the wait).
    try:
        with storage.output_lock(out, wait=SUMMARY_LOCK_WAIT if rows else 0.0):
            with signals_deferred():
                refuse_foreign_summaries(out)
                merged = merge_rows(read_rows(out), rows, out)
                folder = summary_envelope(merged, options, interrupted=interrupted)
                storage.write_json(out / "summary.json", folder)
                storage.write_csv(out / "summary.csv", folder["results"], ROW_FIELDS)
                page.write_index(out, folder["results"])
    except storage.FolderBusy:
        if rows:
            raise
    return summary


# --------------------------------------------------------------------------- the folder's summary


def refuse_foreign_summaries(out: Path) -> None:
    """Raise unless every summary file in ``out`` is missing or was written by mlnmf."""
    for name in storage.SUMMARY_FILES:
        path = Path(out) / name
        if os.path.lexists(path) and not is_ours(path):
            raise OutputError(
                f"{path}: this file was not written by mlnmf; "
                "move it away or choose another --out (nothing was written)"
            )


def is_ours(path: Path) -> bool:
    """Whether ``path`` (a summary file) is one mlnmf wrote: a regular file in our format."""
    try:
        if not Path(path).is_file() or Path(path).is_symlink():
            return False
        head = Path(path).read_bytes()[:4096].decode("utf-8", "replace")
        if path.name == "summary.json":
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return (
                isinstance(data, dict)
                and isinstance(data.get("versions"), dict)
                and "mlnmf" in data["versions"]
                and isinstance(data.get("results"), list)
                and "succeeded" in data
            )
    except (OSError, ValueError):
        return False
    if path.name == "summary.csv":
        return head.startswith(",".join(ROW_FIELDS[:4]) + ",")
    return head.startswith("<!DOCTYPE html>") and "<title>mlnmf " in head


def read_rows(out: Path) -> list[Row]:
    """The rows of ``out/summary.json`` when mlnmf wrote it, else none."""
    path = Path(out) / "summary.json"
    if not is_ours(path):
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [r for r in map(Row.from_dict, data["results"]) if r is not None]


def merge_rows(old: Sequence[Row], new: Sequence[Row], out: Path) -> list[Row]:
    """The rows describing ``out`` after a run: ``old`` updated by ``new``.

    A new row replaces the old rows of its input (and, when it has a result,
    the old row of its folder), except that a failed or skipped input whose
    earlier result is still in its folder keeps that result's row. Rows of
    results no longer on disk go; result folders no row names are added from
    their reports.
    """
    out = Path(out)

    def on_disk(row: Row) -> bool:
        name = row.folder_name
        return name is not None and name != "" and (out / name / "report.json").is_file()

    kept = [r for r in old if r.status == "failed" or on_disk(r)]
    by_input: dict[str, list[int]] = {}
    by_folder: dict[str, list[int]] = {}
    for i, r in enumerate(kept):
        by_input.setdefault(r.input, []).append(i)
        if r.folder_name:
            by_folder.setdefault(r.folder_name, []).append(i)
    dropped: set[int] = set()
    added: list[Row] = []
    for row in new:
        same_input = [i for i in by_input.get(row.input, []) if i not in dropped]
        if row.status != "ok" and any(
            kept[i].status != "failed" and kept[i].folder_name == row.folder_name
            for i in same_input
        ):
            continue  # the result kept in the folder keeps its row
        dropped.update(same_input)
        if row.status != "failed" and row.folder_name:
            dropped.update(by_folder.get(row.folder_name, []))
        added.append(row)
    rows = [r for i, r in enumerate(kept) if i not in dropped] + added
    merged = [_as_on_disk(r, out) for r in rows]
    named = {r.folder_name for r in merged if r.status != "failed"}
    found: list[Row] = []
    for folder in _result_folders(out):
        if folder.name in named:
            continue
        try:
            report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
            source = report.get("input")
            source = source if isinstance(source, str) else folder.name
            found.append(_report_row(source, "ok", folder, report, seconds=None))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    # A failure listed for an input whose result is in the folder gives way to the result.
    sources = {r.input for r in found}
    return [r for r in merged if not (r.status == "failed" and r.input in sources)] + found


def _as_on_disk(row: Row, out: Path) -> Row:
    """``row`` with the numbers of the result now in its folder (a run killed after
    putting a result in place, before its summary, leaves an older row)."""
    if row.status == "failed" or not row.folder_name:
        return row
    folder = out / row.folder_name
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        fresh = _report_row(row.input, row.status, folder, report, seconds=None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return row
    if (fresh.ranks, fresh.relative_error) == (row.ranks, row.relative_error):
        return dataclasses.replace(fresh, folder=row.folder, seconds=row.seconds, note=row.note)
    return fresh


def _result_folders(out: Path) -> list[Path]:
    try:
        return sorted(
            Path(e.path)
            for e in os.scandir(out)
            if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
        )
    except OSError:
        return []


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
