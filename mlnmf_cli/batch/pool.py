"""Running a batch in spawned worker processes (``--jobs N``), one input per worker at a time.

A worker ignores Ctrl-C (the parent handles it); SIGTERM makes it abandon its
input cleanly; a worker that dies is replaced and its input tried once more.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

from mlnmf_cli.batch.inputs import BatchItem
from mlnmf_cli.batch.rows import Row, failed_row, process_item
from mlnmf_cli.batch.run import BLAS_THREADS, Runner, remove_partial_folders, thread_environment
from mlnmf_cli.batch.signals import die_with_parent
from mlnmf_cli.options import Options

WORKER_EXIT_TIMEOUT = 10.0  # seconds a terminated worker gets to clean up before SIGKILL
MAX_ATTEMPTS = 2  # an input whose worker process dies is tried once more in a fresh worker

DIED = "the worker process died while decomposing this input (out of memory, or killed?)"

_in_task = False
_limits: Any = None


def _init_worker(threads: int) -> None:
    """Runs first in every worker: the parent handles Ctrl-C; SIGTERM abandons the input cleanly."""
    global _limits
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    die_with_parent(signal.SIGTERM)
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
    item: BatchItem,
    options: Options,
    out: Path,
    force: bool,
    skip_existing: bool,
) -> Row:
    global _in_task
    _in_task = True
    try:
        return process_item(item, options, out, force=force, skip_existing=skip_existing)
    except BaseException:
        # Terminated: the cleanup has run; leave before the pool hands us another input.
        os._exit(143)
    finally:
        _in_task = False


def run_pool(runner: Runner, jobs: int) -> None:
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
    runner: Runner,
    queue: list[int],
    attempts: dict[int, int],
    workers: int,
) -> list[int]:
    """Feed ``queue`` through ``pool``; return what is left if a worker died, else []."""
    queue = list(queue)
    inflight: dict[cf.Future[Row], int] = {}
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
