"""Running a batch of inputs: in this process, in worker processes, or on a Dask cluster.

Whatever runs the inputs, the same rules hold:

* every input gets one row, and a failing input never stops the others;
* rows reach ``on_done`` in input order, always in this (the parent) process;
* a result folder appears whole or not at all (``storage.staged_folder``);
  after an interrupt nothing half-written is left behind;
* one run at a time writes into an output folder (``storage.output_lock``),
  and a run first repairs what a killed run left there
  (``storage.recover_output``); summary files mlnmf did not write stop the
  run before it starts;
* the numbers do not depend on where an input ran: each decomposition uses the
  same number of BLAS threads (:data:`BLAS_THREADS`) wherever it runs, because
  the order of a sum in BLAS, and with it the last bits of a result, can
  depend on how many threads share the work.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mlnmf_cli import pipeline, storage
from mlnmf_cli.batch.inputs import BatchItem
from mlnmf_cli.batch.rows import Row, ok_row, process_item, refuse_foreign_summaries
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.options import Options
from mlnmf_cli.threads import BLAS_THREADS, THREAD_VARIABLES

OnStart = Callable[[BatchItem], Any]
OnDone = Callable[[Row], Any]


def run_batch(
    items: Sequence[BatchItem],
    options: Options,
    out: Path,
    *,
    force: bool = False,
    skip_existing: bool = False,
    jobs: int = 1,
    scheduler: str | None = None,
    on_start: OnStart | None = None,
    on_progress: pipeline.Progress | None = None,
    on_done: OnDone | None = None,
) -> list[Row]:
    """Process every item into ``out``; rows come back in input order.

    ``jobs > 1`` runs the inputs in that many worker processes; ``scheduler``
    (a Dask scheduler address) runs them on a cluster. Per-iteration progress
    (``on_progress``) is reported only when the inputs run in this process.

    A failing input becomes a failed row and the batch goes on. An interrupt
    (KeyboardInterrupt) propagates after the inputs in progress have been
    abandoned without leaving anything half-written; ``on_done`` has then
    already been called, in input order, for every finished item.
    """
    if jobs < 1:
        raise ParameterError(f"jobs must be at least 1, got {jobs}")
    out = Path(out)
    with storage.output_lock(out):
        storage.recover_output(out)
        refuse_foreign_summaries(out)
        runner = Runner(items, options, out, force, skip_existing, on_start, on_done)
        try:
            if scheduler is not None:
                from mlnmf_cli.batch.dask import run_dask

                run_dask(runner, scheduler)
            elif jobs == 1 or runner.pending_count() <= 1:
                _run_here(runner, on_progress)
            else:
                from mlnmf_cli.batch.pool import run_pool

                run_pool(runner, jobs)
        finally:
            # Whatever was cut short (an interrupt, a killed worker) is ours: no other
            # run writes here while we hold the lock.
            storage.recover_output(out)
    return runner.rows()


class Runner:
    """Book-keeping shared by every mode: which items still need work, and in-order delivery."""

    def __init__(
        self,
        items: Sequence[BatchItem],
        options: Options,
        out: Path,
        force: bool,
        skip_existing: bool,
        on_start: OnStart | None,
        on_done: OnDone | None,
    ) -> None:
        self.items = list(items)
        self.options = options
        self.out = out
        self.force = force
        self.skip_existing = skip_existing
        self.on_start = on_start
        self.on_done = on_done
        self.results: dict[int, Row] = {}
        self.delivered = 0
        self.started = time.time()
        self.existed = {i for i, item in enumerate(self.items) if os.path.lexists(out / item.name)}

    def is_trivial(self, item: BatchItem) -> bool:
        """Items answered without decoding anything: listing problems and skipped folders."""
        if item.problem is not None:
            return True
        return self.skip_existing and not self.force and os.path.lexists(self.out / item.name)

    def pending_count(self) -> int:
        return sum(1 for item in self.items if not self.is_trivial(item))

    def start(self, index: int) -> None:
        if self.on_start is not None:
            self.on_start(self.items[index])

    def finish(self, index: int, row: Row) -> None:
        """Record a row and hand every row now complete from the front on to ``on_done``."""
        self.results[index] = row
        while self.delivered in self.results:
            if self.on_done is not None:
                self.on_done(self.results[self.delivered])
            self.delivered += 1

    def flush(self) -> None:
        """After an interrupt: deliver the rows that are finished, in input order, gaps skipped.

        A worker may have put a complete result folder in place just before the
        interrupt stopped its answer from arriving: the folder on disk is the
        truth, so such an input is listed from its report (:meth:`found_on_disk`).
        """
        for index in range(self.delivered, len(self.items)):
            if index not in self.results:
                row = self.found_on_disk(index)
                if row is None:
                    continue
                self.results[index] = row
            if self.on_done is not None:
                self.on_done(self.results[index])
        self.delivered = len(self.items)

    def found_on_disk(self, index: int) -> Row | None:
        """The row of an input whose result folder this batch wrote, or None."""
        item = self.items[index]
        folder = self.out / item.name
        if item.problem is not None:
            return None
        try:
            if index in self.existed and (folder / "report.json").stat().st_mtime < self.started:
                return None  # an older result this batch did not replace
            report = json.loads((folder / "report.json").read_text())
            return ok_row(item, folder, report, seconds=None)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def run_trivial(self) -> list[int]:
        """Answer trivial items here and return the indices that need real work, in order."""
        work = []
        for index, item in enumerate(self.items):
            if self.is_trivial(item):
                self.start(index)
                self.finish(index, self.process(item))
            else:
                work.append(index)
        return work

    def process(self, item: BatchItem, progress: pipeline.Progress | None = None) -> Row:
        return process_item(
            item,
            self.options,
            self.out,
            force=self.force,
            skip_existing=self.skip_existing,
            progress=progress,
        )

    def rows(self) -> list[Row]:
        return [self.results[i] for i in sorted(self.results)]


# --------------------------------------------------------------------------- here


def _run_here(runner: Runner, on_progress: pipeline.Progress | None) -> None:
    """One input after another in this process, BLAS limited as in a worker when possible."""
    with blas_limit(BLAS_THREADS):
        for index, item in enumerate(runner.items):
            runner.start(index)
            runner.finish(index, runner.process(item, on_progress))


@contextlib.contextmanager
def blas_limit(threads: int) -> Iterator[None]:
    """Limit BLAS threads in this process, via threadpoolctl when it is installed.

    NumPy reads the thread variables only when it loads, so without
    threadpoolctl the limit holds only for worker processes (see
    :func:`thread_environment`); results then can differ from a worker's in
    the last bits.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=threads):
        yield


@contextlib.contextmanager
def thread_environment(threads: int) -> Iterator[None]:
    """Set the BLAS/OpenMP thread variables while worker processes are started, then restore."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    try:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(threads)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def remove_partial_folders(out: Path, names: Sequence[str]) -> list[Path]:
    """Remove staging folders (``.<name>.XXXXXXXX.partial``) left in ``out`` by killed workers."""
    wanted = {n for n in names if n}
    if not wanted or not Path(out).is_dir():
        return []
    patterns = [
        re.compile(re.escape(storage.hidden_prefix(n)) + r"[a-z0-9_]{8}\.partial") for n in wanted
    ]
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(out):
            if entry.name.endswith(".partial") and any(p.fullmatch(entry.name) for p in patterns):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
    return removed
