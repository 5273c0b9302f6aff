"""The blocked passes of :mod:`.blocks` on a Dask cluster (``learn --scheduler``).

Each worker loads its own columns of the cache (``X.npy``: the cache folder must
be visible to the workers at the same path, e.g. the same machine or a shared
filesystem) and keeps its blocks of H_1 ... H_L in memory between passes. Per
pass only the small arguments travel to the workers (with each block's task) and the
partial sums (r x m and r x r) come back, added pairwise as a tree. The numbers
are those of :class:`.blocks.LocalBlocks` up to the order of that sum.

A worker lost mid-run: Dask recomputes a lost block from the tasks that made
it (at most :data:`LINEAGE` passes back) when it can. Besides, every pass writes
the blocks it changed into the cache (a second copy per matrix, alternating, so the last complete version is
never overwritten). When a pass fails, every block is reloaded from the last
complete version and the pass is run again (at most :data:`RETRIES` times): the
passes are deterministic, so the numbers are those of an undisturbed run. When
that fails too, the run stops with a one-line error and nothing is written.
``dask[distributed]`` is imported only here.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlnmf_cli.collections.blocks import BlockFile, Partials, add_partials, block_edges
from mlnmf_cli.errors import InputError, MlnmfError

LOST_TIMEOUT = 30.0  # seconds without any worker before a pass is given up
RETRIES = 2  # times a failed pass is run again from the saved blocks
# Every LINEAGE passes the blocks are reloaded from the saved copies, which ends
# the chain of tasks the scheduler keeps to recompute a lost block.
LINEAGE = 25


def _import() -> Any:
    try:
        import distributed
    except ImportError:
        raise MlnmfError(
            "--scheduler needs Dask's distributed scheduler: pip install 'mlnmf[dask]'"
        ) from None
    return distributed


def connect(scheduler: str) -> Any:
    """A client of ``scheduler`` (as ``decompose --scheduler``: timeout, version check)."""
    _import()
    from mlnmf_cli.batch.dask import connect as batch_connect

    return batch_connect(scheduler)


def _open(path: str, rows: int, cols: int, dtype: str, create: bool) -> BlockFile:
    from pathlib import Path

    try:
        return BlockFile(Path(path), rows, cols, dtype, create=create)
    except MlnmfError:
        raise InputError(
            f"{path}: a Dask worker cannot use the block cache (the cache folder must be "
            "on a filesystem every worker sees at the same path; choose one with --cache)"
        ) from None


def _load(files: dict[str, tuple[str, int, int, str]], j0: int, j1: int) -> dict[str, np.ndarray]:
    """A block's state: its columns of every matrix, from the cache files."""
    state = {}
    for name, (path, rows, cols, dtype) in files.items():
        f = _open(path, rows, cols, dtype, create=False)
        try:
            state[name] = f.read(j0, j1)  # the layout a local pass reads
        finally:
            f.close()
    return state


def _state(prev: Any) -> dict[str, np.ndarray]:
    """A block's state: as loaded, or the first item of a previous pass's result."""
    return prev if isinstance(prev, dict) else prev[0]


def _partials(item: Any) -> Partials:
    """A pass's partial sums: a block's (second item of its result) or already added."""
    return item[1] if len(item) == 3 and isinstance(item[0], dict) else item


def _add(a: Any, b: Any) -> Partials:
    return add_partials(_partials(a), _partials(b))


def _apply(
    prev: Any,
    j0: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    targets: dict[str, str],
    cols: int,
) -> tuple[dict[str, np.ndarray], Partials, list[str]]:
    """Run a pass on one block; save the columns it changed to ``targets[name]``."""
    state = _state(prev)
    updates, partials = fn(state, j0, *args)
    for name, value in updates.items():
        f = _open(targets[name], value.shape[0], cols, value.dtype.str, create=True)
        try:
            f.write(j0, value)
        finally:
            f.close()
    # Kept in the layout a local pass would read back (Fortran order): the same
    # products, the same rounding, whichever executor runs the blocks.
    kept = {name: np.asfortranarray(value) for name, value in updates.items()}
    return {**state, **kept}, partials, sorted(updates)


class DaskBlocks:
    """The executor of :mod:`.blocks` whose blocks live on a Dask cluster's workers."""

    def __init__(
        self,
        scheduler: str,
        X: BlockFile,
        step: int,
        *,
        on_block: Callable[[int, int], Any] | None = None,
        client: Any = None,
    ) -> None:
        self.dd = _import()
        self.scheduler = scheduler
        self.client = client if client is not None else connect(scheduler)
        self.own_client = client is None
        self.X = X
        self.folder = X.path.parent
        self.n = X.cols
        self.step = int(step)
        self.edges = block_edges(self.n, step)
        self.on_block = on_block
        self.passes = 0
        self.retried = 0
        self.shapes: dict[str, tuple[int, np.dtype]] = {"X": (X.rows, X.dtype)}
        self.version: dict[str, int] = {}  # saved versions per matrix (X: none)
        self.local: dict[str, BlockFile] = {}
        self._reload()

    def _path(self, name: str, version: int) -> str:
        if name == "X":
            return str(self.X.path)
        return str(self.folder / f"{name}.{version % 2}.npy")

    def _reload(self) -> None:
        """Every block's state from the last complete version of each matrix."""
        files = {
            name: (self._path(name, self.version.get(name, 0)), rows, self.n, dtype.str)
            for name, (rows, dtype) in self.shapes.items()
            if name == "X" or name in self.version
        }
        self.states = [
            self.client.submit(_load, files, j0, j1, pure=False) for j0, j1 in self.edges
        ]

    def add(self, name: str, rows: int, dtype: Any) -> None:
        self.shapes[name] = (rows, np.dtype(dtype))

    def _wait(self, future: Any, what: str) -> Any:
        """The future's result; a cluster without workers for LOST_TIMEOUT is an error."""
        lonely_since: float | None = None
        while True:
            try:
                return future.result(timeout=2.0)
            except TimeoutError:
                if self.client.scheduler_info().get("workers", {}):
                    lonely_since = None
                    continue
                lonely_since = lonely_since or time.monotonic()
                if time.monotonic() - lonely_since > LOST_TIMEOUT:
                    raise MlnmfError(
                        f"the Dask cluster at {self.scheduler} has had no workers for "
                        f"{LOST_TIMEOUT:g} s during {what}; nothing was written"
                    ) from None

    def run(self, fn: Callable[..., Any], needs: Sequence[str], *args: Any) -> Partials:
        self.passes += 1
        what = f"pass {self.passes}"
        if self.passes % LINEAGE == 0:
            self._reload()
        for attempt in range(RETRIES + 1):
            try:
                return self._run_once(fn, args, what)
            except MlnmfError:
                raise
            except Exception as exc:
                if attempt == RETRIES:
                    raise MlnmfError(
                        f"a Dask worker failed during {what} ({type(exc).__name__}: {exc}), "
                        f"{RETRIES + 1} times; the run was stopped and nothing was written"
                    ) from None
                self.retried += 1
                self._reload()
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_once(self, fn: Callable[..., Any], args: tuple[Any, ...], what: str) -> Partials:
        client = self.client
        targets = {
            name: self._path(name, self.version.get(name, 0) + 1)
            for name in self.shapes
            if name != "X"
        }
        done = [
            client.submit(_apply, st, j0, fn, args, targets, self.n, pure=False)
            for st, (j0, _) in zip(self.states, self.edges, strict=True)
        ]
        parts = list(done)
        changed = client.submit(operator.getitem, done[0], 2, pure=False)
        while len(parts) > 1:
            pairs = [
                client.submit(_add, parts[i], parts[i + 1], pure=False)
                for i in range(0, len(parts) - 1, 2)
            ]
            parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
        if self.on_block is not None:
            self._report_blocks(done)
        total = self._wait(
            parts[0] if len(parts) > 1 or len(done) > 1 else client.submit(_partials, parts[0]),
            what,
        )
        for name in self._wait(changed, what):
            self.version[name] = self.version.get(name, 0) + 1
        self.states = done  # the next pass takes each block's state from its result
        return add_partials(None, total)

    def _report_blocks(self, done: list[Any]) -> None:
        """Blocks finished so far, by polling the futures' status (no data is fetched,
        and no default client is needed)."""
        assert self.on_block is not None
        reported = 0
        while reported < len(done):
            states = [f.status for f in done]
            finished = sum(st == "finished" for st in states)
            if finished > reported:
                reported = finished
                self.on_block(finished, len(done))
            if any(st in ("error", "cancelled", "lost") for st in states):
                return  # the wait for the sums says what went wrong
            if reported < len(done):
                time.sleep(0.05)

    def file(self, name: str) -> BlockFile:
        """The last complete version of ``name``, saved in the cache by the workers."""
        if name not in self.local:
            rows, dtype = self.shapes[name]
            path = Path(self._path(name, self.version.get(name, 0)))
            self.local[name] = BlockFile(path, rows, self.n, dtype, create=False)
        return self.local[name]

    def close(self) -> None:
        for f in self.local.values():
            f.close()
        self.states = []
        if self.own_client:
            try:
                self.client.close()
            except Exception:  # pragma: no cover - closing a broken connection
                pass
