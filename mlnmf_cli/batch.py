"""Running a batch of inputs: in this process, in worker processes, or on a Dask cluster.

Whatever runs the inputs, the same rules hold:

* every input gets one row, and a failing input never stops the others;
* rows reach ``on_done`` in input order, always in this (the parent) process;
* a result folder appears whole or not at all (``storage.staged_folder``);
  after an interrupt nothing half-written is left behind;
* the numbers do not depend on where an input ran: each decomposition uses the
  same number of BLAS threads (:data:`BLAS_THREADS`) wherever it runs, because
  the order of a sum in BLAS, and with it the last bits of a result, can
  depend on how many threads share the work.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mlnmf_cli import pipeline
from mlnmf_cli.errors import MlnmfError, ParameterError

OnStart = Callable[[pipeline.BatchItem], Any]
OnDone = Callable[[dict[str, Any]], Any]

BLAS_THREADS = 1
"""BLAS threads per decomposition, in every mode (see the module docstring)."""

THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
CONNECT_TIMEOUT = 8.0  # seconds to reach a Dask scheduler and see a worker
WORKER_EXIT_TIMEOUT = 10.0  # seconds a terminated worker gets to clean up before SIGKILL
MAX_ATTEMPTS = 2  # an input whose worker process dies is tried once more in a fresh worker

DIED = "the worker process died while decomposing this input (out of memory, or killed?)"


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
    runner = _Runner(items, options, out, force, skip_existing, on_start, on_done)
    try:
        if scheduler is not None:
            _run_dask(runner, scheduler)
        elif jobs == 1 or runner.pending_count() <= 1:
            _run_here(runner, on_progress)
        else:
            _run_pool(runner, jobs)
    finally:
        remove_partial_folders(out, [item.name for item in items])
    return runner.rows()


class _Runner:
    """Book-keeping shared by every mode: which items still need work, and in-order delivery."""

    def __init__(
        self,
        items: Sequence[pipeline.BatchItem],
        options: pipeline.Options,
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
        self.results: dict[int, dict[str, Any]] = {}
        self.delivered = 0
        self.started = time.time()
        self.existed = {i for i, item in enumerate(self.items) if (out / item.name).exists()}

    def is_trivial(self, item: pipeline.BatchItem) -> bool:
        """Items answered without decoding anything: listing problems and skipped folders."""
        if item.problem is not None:
            return True
        return self.skip_existing and not self.force and (self.out / item.name).exists()

    def pending_count(self) -> int:
        return sum(1 for item in self.items if not self.is_trivial(item))

    def start(self, index: int) -> None:
        if self.on_start is not None:
            self.on_start(self.items[index])

    def finish(self, index: int, row: dict[str, Any]) -> None:
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

    def found_on_disk(self, index: int) -> dict[str, Any] | None:
        """The row of an input whose result folder this batch wrote, or None."""
        item = self.items[index]
        folder = self.out / item.name
        if item.problem is not None:
            return None
        try:
            if index in self.existed and (folder / "report.json").stat().st_mtime < self.started:
                return None  # an older result this batch did not replace
            report = json.loads((folder / "report.json").read_text())
            return pipeline.ok_row(item, folder, report, seconds=None)
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

    def process(
        self, item: pipeline.BatchItem, progress: pipeline.Progress | None = None
    ) -> dict[str, Any]:
        return process_item(
            item,
            self.options,
            self.out,
            force=self.force,
            skip_existing=self.skip_existing,
            progress=progress,
        )

    def rows(self) -> list[dict[str, Any]]:
        return [self.results[i] for i in sorted(self.results)]


def process_item(
    item: pipeline.BatchItem,
    options: pipeline.Options,
    out: Path,
    *,
    force: bool = False,
    skip_existing: bool = False,
    progress: pipeline.Progress | None = None,
) -> dict[str, Any]:
    """``pipeline.process_item``, with a bug in one input turned into a failed row.

    An unattended batch must go on; the row says the error is mlnmf's own.
    """
    try:
        return pipeline.process_item(
            item, options, out, force=force, skip_existing=skip_existing, progress=progress
        )
    except Exception as exc:
        return {
            "input": str(item.path),
            "status": "failed",
            "folder": str(Path(out) / item.name),
            "error": f"internal error, please report it: {type(exc).__name__}: {exc}",
        }


def failed_row(item: pipeline.BatchItem, out: Path, error: str) -> dict[str, Any]:
    return {
        "input": str(item.path),
        "status": "failed",
        "folder": str(Path(out) / item.name),
        "error": error,
    }


# --------------------------------------------------------------------------- here


def _run_here(runner: _Runner, on_progress: pipeline.Progress | None) -> None:
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


# --------------------------------------------------------------------------- worker processes

_in_task = False
_limits: Any = None


def _init_worker(threads: int) -> None:
    """Runs first in every worker: the parent handles Ctrl-C; SIGTERM abandons the input cleanly."""
    global _limits
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _limits = threadpool_limits(limits=threads)


def _on_sigterm(signum: int, frame: Any) -> None:
    if _in_task:
        # Unwinds through staged_folder, which removes the half-written folder.
        raise SystemExit(128 + signum)
    os._exit(128 + signum)


def _work(
    item: pipeline.BatchItem,
    options: pipeline.Options,
    out: Path,
    force: bool,
    skip_existing: bool,
) -> dict[str, Any]:
    global _in_task
    _in_task = True
    try:
        return process_item(item, options, out, force=force, skip_existing=skip_existing)
    except BaseException:
        # Terminated: the cleanup has run; leave before the pool hands us another input.
        os._exit(143)
    finally:
        _in_task = False


def _run_pool(runner: _Runner, jobs: int) -> None:
    """Inputs in ``jobs`` spawned worker processes, at most one input per worker at a time."""
    queue = runner.run_trivial()
    attempts = dict.fromkeys(queue, 0)
    while queue:
        workers = min(jobs, len(queue))
        with thread_environment(BLAS_THREADS):
            pool = cf.ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(BLAS_THREADS,),
            )
            try:
                queue = _drive_pool(pool, runner, queue, attempts, workers)
            except BaseException:
                _terminate(pool)
                runner.flush()
                raise
            pool.shutdown(wait=True)


def _drive_pool(
    pool: cf.ProcessPoolExecutor,
    runner: _Runner,
    queue: list[int],
    attempts: dict[int, int],
    workers: int,
) -> list[int]:
    """Feed ``queue`` through ``pool``; return what is left if a worker died, else []."""
    queue = list(queue)
    inflight: dict[cf.Future[dict[str, Any]], int] = {}
    while queue or inflight:
        while queue and len(inflight) < workers:
            index = queue.pop(0)
            item = runner.items[index]
            if attempts[index] == 0:
                runner.start(index)
            attempts[index] += 1
            future = pool.submit(
                _work, item, runner.options, runner.out, runner.force, runner.skip_existing
            )
            inflight[future] = index
        done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
        broken = []
        for future in done:
            index = inflight.pop(future)
            try:
                row = future.result()
            except cf.process.BrokenProcessPool:
                broken.append(index)
                continue
            runner.finish(index, row)
        if broken:
            # The pool is unusable: every input still in it goes back in line for a fresh one.
            broken += list(inflight.values())
            _terminate(pool)
            retry = []
            for index in sorted(broken):
                # A worker may have put its folder in place and died before answering.
                found = runner.found_on_disk(index)
                if found is not None:
                    runner.finish(index, found)
                elif attempts[index] >= MAX_ATTEMPTS:
                    runner.finish(index, failed_row(runner.items[index], runner.out, DIED))
                else:
                    retry.append(index)
            remove_partial_folders(runner.out, [runner.items[i].name for i in broken])
            return retry + queue
    return []


def _terminate(pool: cf.ProcessPoolExecutor) -> None:
    """Stop every worker now: SIGTERM (each cleans up its input), then SIGKILL stragglers."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        process.join(WORKER_EXIT_TIMEOUT)
        if process.is_alive():
            process.kill()
            process.join()


_PARTIAL = r"\.{name}\.[a-z0-9_]{{8}}\.partial"


def remove_partial_folders(out: Path, names: Sequence[str]) -> list[Path]:
    """Remove staging folders (``.<name>.XXXXXXXX.partial``) left in ``out`` by killed workers."""
    wanted = {n for n in names if n}
    if not wanted or not Path(out).is_dir():
        return []
    patterns = [re.compile(_PARTIAL.format(name=re.escape(n))) for n in wanted]
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(out):
            if entry.name.endswith(".partial") and any(p.fullmatch(entry.name) for p in patterns):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
    return removed


# --------------------------------------------------------------------------- Dask


def _run_dask(runner: _Runner, scheduler: str) -> None:
    """Inputs as tasks on a Dask distributed cluster; paths must be valid on the workers."""
    try:
        import distributed
    except ImportError:
        raise MlnmfError(
            "--scheduler needs Dask's distributed scheduler: pip install 'mlnmf[dask]'"
        ) from None
    client = connect(scheduler)
    try:
        out = runner.out.resolve()
        queue = runner.run_trivial()
        futures: dict[Any, int] = {}
        try:
            for index in queue:
                item = runner.items[index]
                absolute = pipeline.BatchItem(item.path.resolve(), item.name, item.problem)
                runner.start(index)
                future = client.submit(
                    process_item,
                    absolute,
                    runner.options,
                    out,
                    force=runner.force,
                    skip_existing=runner.skip_existing,
                    pure=False,
                    key=f"mlnmf-{index}-{item.name}-{os.urandom(4).hex()}",
                )
                futures[future] = index
            for future in distributed.as_completed(list(futures), loop=client.loop):
                index = futures[future]
                item = runner.items[index]
                try:
                    row = future.result()
                except Exception as exc:
                    row = failed_row(item, runner.out, f"the Dask task failed: {exc}")
                else:
                    row["input"] = str(item.path)
                    if row.get("folder"):
                        row["folder"] = str(runner.out / item.name)
                runner.finish(index, row)
        except BaseException:
            # Tasks already running finish (a cluster cannot stop them midway), atomically.
            with contextlib.suppress(Exception):
                client.cancel(list(futures), force=True)
            runner.flush()
            raise
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=CONNECT_TIMEOUT)


def connect(scheduler: str, timeout: float | None = None) -> Any:
    """A Dask client for ``scheduler`` with at least one worker that runs this mlnmf version."""
    import logging

    from distributed import Client

    from mlnmf_cli import __version__

    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        client = Client(scheduler, timeout=timeout, set_as_default=False)
    except Exception as exc:
        raise MlnmfError(
            f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s "
            f"({type(exc).__name__}: {exc})"
        ) from None
    finally:
        quiet.setLevel(level)
    try:
        client.wait_for_workers(1, timeout=timeout)
        versions = client.run(_worker_version)
    except Exception as exc:
        client.close()
        if isinstance(exc, TimeoutError | cf.TimeoutError):
            raise MlnmfError(
                f"the Dask scheduler at {scheduler} has no workers (waited {timeout:g} s)"
            ) from None
        raise MlnmfError(
            f"the Dask workers at {scheduler} cannot run mlnmf ({type(exc).__name__}: {exc}); "
            f"install mlnmf {__version__} on every worker"
        ) from None
    wrong = sorted({v for v in versions.values() if v != __version__})
    if wrong:
        client.close()
        raise MlnmfError(
            f"the Dask workers at {scheduler} run mlnmf {', '.join(wrong)}, "
            f"this is mlnmf {__version__}; install the same version everywhere"
        )
    return client


def _worker_version() -> str:
    from mlnmf_cli import __version__

    return __version__


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
