"""Running a batch of inputs: one after another here; workers and clusters build on this."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlnmf_cli import pipeline
from mlnmf_cli.errors import ParameterError

OnStart = Callable[[pipeline.BatchItem], Any]
OnDone = Callable[[dict[str, Any]], Any]


def run_batch(
    items: Sequence[pipeline.BatchItem],
    options: pipeline.Options,
    out: Path,
    *,
    force: bool = False,
    skip_existing: bool = False,
    jobs: int = 1,
    scheduler: str | None = None,
    on_start: OnStart | None = None,
    on_progress: pipeline.Progress | None = None,
    on_done: OnDone | None = None,
) -> list[dict[str, Any]]:
    """Process every item into ``out``; rows come back in input order.

    A failing input becomes a failed row and the batch goes on. An interrupt
    (KeyboardInterrupt) propagates after the item in progress has been
    abandoned without leaving anything half-written; ``on_done`` has then
    already been called for every finished item.
    """
    if jobs != 1 or scheduler is not None:
        raise ParameterError("parallel and distributed batches are not available yet")
    rows = []
    for item in items:
        if on_start is not None:
            on_start(item)
        row = pipeline.process_item(
            item, options, out, force=force, skip_existing=skip_existing, progress=on_progress
        )
        rows.append(row)
        if on_done is not None:
            on_done(row)
    return rows
