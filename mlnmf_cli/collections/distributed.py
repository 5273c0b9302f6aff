"""The blocked passes of :mod:`.blocks` on a Dask cluster (``learn --scheduler``).

Each worker loads its own columns of the cache (``X.npy``: the cache folder must
be visible to the workers at the same path, e.g. the same machine or a shared
filesystem) and keeps its blocks of H_1 ... H_L in memory between passes. Per
pass only the small arguments travel to the workers (scattered once) and the
partial sums (r x m and r x r) come back, added pairwise as a tree. The numbers
are those of :class:`.blocks.LocalBlocks` up to the order of that sum.

A worker lost mid-run: Dask recomputes a lost block from its lineage when it
can (deterministically: the same numbers); when it cannot, the run stops with a
one-line error and nothing is written. ``dask[distributed]`` is imported only here.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlnmf_cli.collections.blocks import BlockFile, Partials, add_partials, block_edges
from mlnmf_cli.errors import InputError, MlnmfError

LOST_TIMEOUT = 30.0  # seconds without any worker before a pass is given up


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
    from mlnmf_cli.batch import connect as batch_connect

    return batch_connect(scheduler)


def _load(path: str, rows: int, cols: int, dtype: str, j0: int, j1: int) -> dict[str, np.ndarray]:
    from pathlib import Path

    try:
        f = BlockFile(Path(path), rows, cols, dtype, create=False)
    except MlnmfError:
        raise InputError(
            f"{path}: a Dask worker cannot read the block cache (the cache folder must be "
            "on a filesystem every worker sees at the same path; choose one with --cache)"
        ) from None
    try:
        return {"X": np.ascontiguousarray(f.read(j0, j1))}
    finally:
        f.close()


def _apply(
    state: dict[str, np.ndarray], j0: int, fn: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[dict[str, np.ndarray], Partials]:
    updates, partials = fn(state, j0, *args)
    return {**state, **updates}, partials


def _column_block(state: dict[str, np.ndarray], name: str) -> np.ndarray:
    return state[name]


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
        self.shapes: dict[str, tuple[int, Any]] = {"X": (X.rows, X.dtype)}
        self.local: dict[str, BlockFile] = {}
        self.states = [
            self.client.submit(_load, str(X.path), X.rows, X.cols, X.dtype.str, j0, j1, pure=False)
            for j0, j1 in self.edges
        ]

    def add(self, name: str, rows: int, dtype: Any) -> None:
        self.shapes[name] = (rows, np.dtype(dtype))

    def _wait(self, future: Any, what: str) -> Any:
        """The future's result; a lost cluster or a failed task is one line."""
        lonely_since: float | None = None
        while True:
            try:
                return future.result(timeout=2.0)
            except MlnmfError:
                raise
            except TimeoutError:
                workers = self.client.scheduler_info().get("workers", {})
                if workers:
                    lonely_since = None
                    continue
                lonely_since = lonely_since or time.monotonic()
                if time.monotonic() - lonely_since > LOST_TIMEOUT:
                    raise MlnmfError(
                        f"the Dask cluster at {self.scheduler} has had no workers for "
                        f"{LOST_TIMEOUT:g} s during {what}; nothing was written"
                    ) from None
            except Exception as exc:
                raise MlnmfError(
                    f"a Dask worker failed during {what} ({type(exc).__name__}: {exc}); "
                    "the run was stopped and nothing was written"
                ) from None

    def run(self, fn: Callable[..., Any], needs: Sequence[str], *args: Any) -> Partials:
        self.passes += 1
        client = self.client
        [shared] = client.scatter([args], broadcast=True, hash=False)
        done = [
            client.submit(_apply, st, j0, fn, shared, pure=False)
            for st, (j0, _) in zip(self.states, self.edges, strict=True)
        ]
        self.states = [client.submit(operator.getitem, f, 0, pure=False) for f in done]
        parts = [client.submit(operator.getitem, f, 1, pure=False) for f in done]
        if self.on_block is not None:
            for k, _ in enumerate(self.dd.as_completed(done), start=1):
                self.on_block(k, len(done))
        while len(parts) > 1:
            pairs = [
                client.submit(add_partials, parts[i], parts[i + 1], pure=False)
                for i in range(0, len(parts) - 1, 2)
            ]
            parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
        total = self._wait(parts[0], f"pass {self.passes}")
        return add_partials(None, total)

    def file(self, name: str) -> BlockFile:
        """The blocks of ``name`` brought back into a local cache file, one at a time."""
        if name not in self.local:
            rows, dtype = self.shapes[name]
            f = BlockFile(self.folder / f"{name}.npy", rows, self.n, dtype, create=True)
            for st, (j0, _) in zip(self.states, self.edges, strict=True):
                block = self._wait(
                    self.client.submit(_column_block, st, name, pure=False), f"fetching {name}"
                )
                f.write(j0, block)
            self.local[name] = f
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
