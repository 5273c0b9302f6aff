"""Multilayer NMF over a collection held in column blocks: streamed from disk or spread on workers.

H's columns only ever need their own columns of X; W's update needs X H^T and
H H^T, sums over column blocks (ALGORITHMS.md, "Beyond memory"). Every step
below is either a *pass* (a function applied to each block of columns,
returning the block's new columns and its partial sums) or a small update on
r x m and r x r matrices. A pass is run by an executor: :class:`LocalBlocks`
reads each block from a :class:`BlockFile` on disk and writes it back;
``distributed.DaskBlocks`` keeps the blocks on Dask workers and reduces the
partial sums as a tree. Both give the same numbers up to summation order.

The iteration is plain HALS (W, then H), with a fixed number of sweeps on each
block of H so that the result does not depend on how the columns are cut;
fine-tuning is block coordinate descent (W1 and HL by HALS, inner W's by
accelerated projected gradient), as the engine's, without its extrapolation.
Pure NumPy; no terminal.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlnmf_cli.engine._deep import apg
from mlnmf_cli.engine._init import INIT_POWER_ITER
from mlnmf_cli.engine._single import DELTA, Momentum, RowSweeper, n_sweeps
from mlnmf_cli.engine.model import chain
from mlnmf_cli.engine.options import DEFAULTS
from mlnmf_cli.errors import OutputError, ParameterError

HEADER = 128  # bytes reserved for the .npy header of a cache file
OMEGA_CHUNK = 64  # columns per independently seeded chunk of random numbers
MIN_BLOCK = 64  # the fewest columns a block may hold
OVERSAMPLE = 10
REFIT_SWEEPS = 30
APG_STEPS = 30
PATIENCE = 5
FT_TOL_FACTOR = 0.1
MB = 1 << 20
PER_IMAGE = 160  # bytes kept per image whatever the blocks: its name (twice referenced)

# (stage, iteration, error) per iteration, as the engine's callback; ("pass", block, blocks)
# per block of a pass.
Progress = Callable[[str, int, float], Any]


# --------------------------------------------------------------------------- cache files


class BlockFile:
    """A rows x cols matrix stored column after column in a Fortran-order ``.npy`` file.

    A block of columns is one contiguous byte range, read with ``pread`` into a
    fresh array (no memory map: the pages read never count as this process's
    memory) and written back with ``pwrite``. ``np.load(path, mmap_mode="r")``
    opens the finished file as the (rows, cols) matrix.
    """

    def __init__(self, path: Path, rows: int, cols: int, dtype: Any, *, create: bool) -> None:
        self.path = Path(path)
        self.rows, self.cols, self.dtype = int(rows), int(cols), np.dtype(dtype)
        try:
            self.fd = os.open(self.path, (os.O_RDWR | os.O_CREAT) if create else os.O_RDWR, 0o600)
        except OSError as exc:
            raise cache_error(self.path, exc) from None
        if create:
            self.write_header()

    def write_header(self) -> None:
        import io

        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": True,
                  "shape": (self.rows, self.cols)}
        )  # fmt: skip
        header = buf.getvalue()
        if len(header) > HEADER:  # pragma: no cover - shapes beyond 10**40
            raise ParameterError(f"matrix too large for a cache file: {self.rows} x {self.cols}")
        # Pad inside the header dict's trailing spaces so the data start at HEADER.
        header = header[:-1] + b" " * (HEADER - len(header)) + b"\n"
        header = header[:8] + (HEADER - 10).to_bytes(2, "little") + header[10:]
        self._pwrite(header, 0)

    def _pwrite(self, data: Any, offset: int) -> None:
        view = memoryview(data).cast("B")
        try:
            while view.nbytes:
                done = os.pwrite(self.fd, view, offset)
                view, offset = view[done:], offset + done
        except OSError as exc:
            raise cache_error(self.path, exc) from None

    def _offset(self, j: int) -> int:
        return HEADER + j * self.rows * self.dtype.itemsize

    def read(self, j0: int, j1: int) -> np.ndarray:
        """Columns j0:j1 as a rows x (j1 - j0) array (Fortran order, a copy)."""
        buf = np.empty((j1 - j0, self.rows), self.dtype)
        view = memoryview(buf).cast("B")  # type: ignore[arg-type]
        offset = self._offset(j0)
        try:
            while view.nbytes:
                got = os.preadv(self.fd, [view], offset)
                if got == 0:
                    raise OSError(5, "the cache file is shorter than expected")
                view, offset = view[got:], offset + got
        except OSError as exc:
            raise cache_error(self.path, exc) from None
        return buf.T

    def write(self, j0: int, block: np.ndarray) -> None:
        data = np.ascontiguousarray(np.asarray(block, dtype=self.dtype).T)
        self._pwrite(data, self._offset(j0))

    def columns(self, idx: Sequence[int]) -> np.ndarray:
        """A few chosen columns (rows x len(idx)), float64."""
        out = np.empty((self.rows, len(idx)))
        for k, j in enumerate(idx):
            out[:, k] = self.read(int(j), int(j) + 1)[:, 0]
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def cache_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{path.parent}: cannot use the cache folder ({exc.strerror or exc})")


def block_edges(n: int, step: int) -> list[tuple[int, int]]:
    step = max(1, int(step))
    return [(j, min(j + step, n)) for j in range(0, n, step)]


# --------------------------------------------------------------------------- memory plan


@dataclass(frozen=True)
class Plan:
    """How many columns per block fit in ``memory`` bytes for these sizes and ranks."""

    block: int
    per_column: int
    fixed: int

    @property
    def minimum_mb(self) -> int:
        return math.ceil((self.fixed + MIN_BLOCK * self.per_column) / MB)


def plan_blocks(m: int, n: int, ranks: Sequence[int], itemsize: int, memory: int) -> Plan:
    """Columns per block: ``memory`` covers one block's arrays plus the small matrices.

    Per column: the block of X, its float64 temporaries in the error pass (about
    4 more copies at the working precision) and a few copies of each layer's
    codes; fixed: the r x m sums and the range finder's m x q matrices, in float64,
    and per image of the collection its name and its errors (kept whole).
    """
    r1 = int(ranks[0])
    q = min(r1 + OVERSAMPLE, m, n)
    per_column = 5 * itemsize * m + 8 * 8 * sum(int(r) for r in ranks)
    fixed = 8 * m * (6 * q + 8 * sum(int(r) for r in ranks)) + 8 * 16 * r1 * r1
    fixed += n * (PER_IMAGE + 16 * len(ranks))  # names and per-image errors, kept whole
    block = (memory - fixed) // per_column
    if block < MIN_BLOCK:
        plan = Plan(block=0, per_column=per_column, fixed=fixed)
        raise ParameterError(
            f"--memory {memory // MB} MB is too small for one block of {MIN_BLOCK} columns "
            f"of {m} values at ranks {','.join(map(str, ranks))}: the minimum is "
            f"{plan.minimum_mb} MB"
        )
    return Plan(block=int(min(block, n)), per_column=per_column, fixed=fixed)


# --------------------------------------------------------------------------- executors


Partials = tuple[Any, ...]
BlockFn = Callable[..., tuple[dict[str, np.ndarray], Partials]]


def add_partials(a: Partials | None, b: Partials) -> Partials:
    """a + b term by term in float64 (a copy of b when a is None)."""
    if a is None:
        return tuple(np.array(x, dtype=np.float64, copy=True) for x in b)
    return tuple(
        np.asarray(x, dtype=np.float64) + np.asarray(y, dtype=np.float64)
        for x, y in zip(a, b, strict=True)
    )


class TreeSum:
    """Partial sums added as a balanced binary tree over the blocks in order, keeping
    O(log blocks) of them: the same tree as the pairwise reduction on Dask
    (``(p0 + p1) + (p2 + p3)``, ...), so both executors round alike."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, Partials]] = []

    def add(self, partials: Partials) -> None:
        node = (0, partials)
        while self.stack and self.stack[-1][0] == node[0]:
            level, earlier = self.stack.pop()
            node = (level + 1, add_partials(earlier, node[1]))
        self.stack.append(node)

    def total(self) -> Partials:
        while len(self.stack) > 1:
            lb, b = self.stack.pop()
            la, a = self.stack.pop()
            self.stack.append((max(la, lb) + 1, add_partials(a, b)))
        return add_partials(None, self.stack[0][1])


class LocalBlocks:
    """Blocks read from and written to :class:`BlockFile` s in a cache folder, one at a time."""

    def __init__(
        self,
        folder: Path,
        X: BlockFile,
        step: int,
        on_block: Callable[[int, int], Any] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.files: dict[str, BlockFile] = {"X": X}
        self.n = X.cols
        self.step = int(step)
        self.edges = block_edges(self.n, step)
        self.on_block = on_block
        self.passes = 0

    def add(self, name: str, rows: int, dtype: Any) -> None:
        if name not in self.files:
            self.files[name] = BlockFile(
                self.folder / f"{name}.npy", rows, self.n, dtype, create=True
            )

    def run(self, fn: BlockFn, needs: Sequence[str], *args: Any) -> Partials:
        total = TreeSum()
        self.passes += 1
        for b, (j0, j1) in enumerate(self.edges):
            block = {name: self.files[name].read(j0, j1) for name in needs}
            updates, partials = fn(block, j0, *args)
            for name, value in updates.items():
                self.files[name].write(j0, value)
            total.add(partials)
            if self.on_block is not None:
                self.on_block(b + 1, len(self.edges))
        return total.total()

    def file(self, name: str) -> BlockFile:
        return self.files[name]

    def close(self) -> None:
        for f in self.files.values():
            f.close()


# --------------------------------------------------------------------------- small pieces


def omega(seed: int, layer: int, j0: int, j1: int, q: int, dtype: Any) -> np.ndarray:
    """Rows j0:j1 of an n x q standard normal matrix, the same whatever the blocks."""
    c0, c1 = j0 // OMEGA_CHUNK, -(-j1 // OMEGA_CHUNK)
    parts = [
        np.random.default_rng([seed, layer, c]).standard_normal((OMEGA_CHUNK, q))
        for c in range(c0, c1)
    ]
    full = np.concatenate(parts, axis=0)
    s = j0 - c0 * OMEGA_CHUNK
    return np.ascontiguousarray(full[s : s + (j1 - j0)], dtype=dtype)


def hals(V: np.ndarray, P: np.ndarray, G: np.ndarray, sweeps: int, delta: float = 0.0) -> int:
    """HALS sweeps over the rows of V (r x p, in place): V ~ argmin ||Xo - V^T U||, P = U Xo^T,
    G = U U^T; the engine's sweeps (:class:`~mlnmf_cli.engine._single.RowSweeper`).
    With ``delta`` > 0, stop once a sweep changes V by less than delta times the first
    sweep's change. Returns the number of sweeps.
    """
    return RowSweeper(V).update(P, G, sweeps, delta)


def _orth(Y: np.ndarray) -> np.ndarray:
    return np.linalg.qr(Y)[0]


# --------------------------------------------------------------------------- passes
# Module-level functions (picklable for Dask): block dict and small arguments in,
# (new columns, partial sums) out. Products in the data's dtype, sums in float64.


SUB_ELEMENTS = 1 << 17  # float64 temporaries of a pass are made this many values at a time


def sub_blocks(rows: int, cols: int) -> list[tuple[int, int]]:
    """Column ranges of a block holding about :data:`SUB_ELEMENTS` values each."""
    return block_edges(cols, max(1, SUB_ELEMENTS // max(1, rows)))


def _sq_sum(Xb: np.ndarray) -> tuple[float, float]:
    """(sum of squares, sum) of a block in float64, a sub-block at a time."""
    sq = total = 0.0
    for a, b in sub_blocks(*Xb.shape):
        x = Xb[:, a:b].astype(np.float64)
        sq += float(np.vdot(x, x))
        total += float(x.sum())
    return sq, total


def pass_range(block: dict[str, np.ndarray], j0: int, src: str, seed: int, layer: int,
               q: int) -> tuple[dict[str, np.ndarray], Partials]:  # fmt: skip
    Xb = block[src]
    Om = omega(seed, layer, j0, j0 + Xb.shape[1], q, Xb.dtype)
    return {}, (Xb @ Om, *_sq_sum(Xb))


def pass_power(
    block: dict[str, np.ndarray], j0: int, src: str, Q: np.ndarray
) -> tuple[dict, Partials]:
    Xb = block[src]
    Z = Xb.T @ Q.astype(Xb.dtype)
    return {}, (Xb @ Z, Z.T.astype(np.float64) @ Z)


def pass_project(
    block: dict[str, np.ndarray], j0: int, src: str, Q: np.ndarray
) -> tuple[dict, Partials]:
    B = (Q.T.astype(block[src].dtype) @ block[src]).astype(np.float64)
    return {}, (B @ B.T,)


def pass_vnorms(
    block: dict[str, np.ndarray], j0: int, src: str, Ut: np.ndarray
) -> tuple[dict, Partials]:
    V = (Ut.astype(block[src].dtype) @ block[src]).astype(np.float64)
    pos, neg = np.maximum(V, 0.0), np.maximum(-V, 0.0)
    return {}, (np.einsum("ij,ij->i", pos, pos), np.einsum("ij,ij->i", neg, neg))


def pass_init_h(
    block: dict[str, np.ndarray], j0: int, src: str, dst: str, Ut: np.ndarray,
    coef: np.ndarray, use_neg: np.ndarray, fill: float | None, seed: int, layer: int,
    avg: float,
) -> tuple[dict[str, np.ndarray], Partials]:  # fmt: skip
    """H's columns from the SVD (NNDSVD rows: coef * positive or negative part of v) or
    seeded random numbers (coef None); partial sums H X^T and H H^T."""
    Xb = block[src]
    if Ut.size:
        V = (Ut.astype(Xb.dtype) @ Xb).astype(np.float64)
        part = np.where(use_neg[:, None], np.maximum(-V, 0.0), np.maximum(V, 0.0))
        H = coef[:, None] * part
        if fill is not None:
            H[H == 0] = fill
    else:
        H = avg * np.abs(omega(seed + 7919, layer, j0, j0 + Xb.shape[1], coef.size, np.float64).T)
    H = np.ascontiguousarray(H, dtype=Xb.dtype)
    H64 = H.astype(np.float64)
    return {dst: H}, ((H @ Xb.T).astype(np.float64), H64 @ H64.T)


def pass_hals(
    block: dict[str, np.ndarray],
    j0: int,
    src: str,
    dst: str,
    Wt: np.ndarray,
    G: np.ndarray,
    sweeps: int,
) -> tuple[dict[str, np.ndarray], Partials]:
    """One HALS step on H's block (fixed sweeps) and the sums for the next W step."""
    Xb, H = block[src], np.ascontiguousarray(block[dst])
    dt = Xb.dtype
    Ph = Wt.astype(dt) @ Xb
    hals(H, Ph, G.astype(dt), sweeps)
    H64 = H.astype(np.float64)
    return {dst: H}, (
        (H @ Xb.T).astype(np.float64),
        H64 @ H64.T,
        float(np.vdot(Ph.astype(np.float64), H64)),
    )


def pass_refit(
    block: dict[str, np.ndarray], j0: int, src: str, dst: str, A: np.ndarray, AtA: np.ndarray,
    scale: np.ndarray, sweeps: int,
) -> tuple[dict[str, np.ndarray], Partials]:  # fmt: skip
    """H's block rescaled by ``scale`` (rows), then (sweeps > 0) re-fitted to X with A fixed."""
    Xb = block[src]
    H = np.ascontiguousarray(block[dst] * scale[:, None].astype(Xb.dtype))
    if sweeps:
        np.maximum(H, 0, out=H)
        hals(H, A.T.astype(Xb.dtype) @ Xb, AtA.astype(Xb.dtype), sweeps)
    return {dst: H}, ()


def pass_finetune(
    block: dict[str, np.ndarray], j0: int, src: str, dst: str, Ws: list[np.ndarray],
    scale: np.ndarray, sweeps: int,
) -> tuple[dict[str, np.ndarray], Partials]:  # fmt: skip
    """A fine-tuning round's H step and the sums for the next round's W steps.

    H's block is rescaled (the Ws were normalised), swept against A = W1...WL
    (``sweeps`` may be 0: sums only), and the round's error terms and, for every
    layer l, B_l = W(l+1)...WL H: B_0 X^T and X B_l^T with B_l B_l^T are returned.
    """
    Xb = block[src]
    dt = Xb.dtype
    H = np.ascontiguousarray(block[dst] * scale[:, None].astype(dt))
    A = chain(Ws)
    AtX = A.T.astype(dt) @ Xb
    if sweeps:
        hals(H, AtX, (A.T @ A).astype(dt), sweeps)
    H64 = H.astype(np.float64)
    out: list[Any] = [H64 @ H64.T, float(np.vdot(AtX.astype(np.float64), H64))]
    rights = [H]
    for W in reversed(Ws[1:]):
        rights.append(W.astype(dt) @ rights[-1])
    rights.reverse()
    B0 = rights[0]
    out += [(B0 @ Xb.T).astype(np.float64), B0.astype(np.float64) @ B0.T.astype(np.float64)]
    for B in rights[1:]:
        B64 = B.astype(np.float64)
        out += [(Xb @ B.T).astype(np.float64), B64 @ B64.T]
    return {dst: H}, tuple(out)


def pass_gram_errors(
    block: dict[str, np.ndarray], j0: int, src: str, names: list[str], As: list[np.ndarray]
) -> tuple[dict[str, np.ndarray], Partials]:
    """Per depth d: <A_d^T X, H_d> and H_d H_d^T (A_d = W1...Wd), for ||X - A_d H_d||^2
    from products: no pixel-sized temporary."""
    Xb = block[src]
    out: list[Any] = []
    for A, name in zip(As, names, strict=True):
        H = block[name].astype(np.float64)
        out += [float(np.vdot((A.T.astype(Xb.dtype) @ Xb).astype(np.float64), H)), H @ H.T]
    return {}, tuple(out)


def pass_errors(
    block: dict[str, np.ndarray], j0: int, src: str, names: list[str], Ws: list[np.ndarray]
) -> tuple[dict[str, np.ndarray], Partials]:
    """Per depth: squared residual, clipped squared error, the codes' L1 and squared L2
    sums, the layer's own squared residual and its input's; each column's error per
    depth goes to "E". Float64 temporaries are made a sub-block at a time."""
    Xb = block[src]
    L = len(names)
    As = [chain(Ws[: d + 1]) for d in range(L)]
    sums = np.zeros(1 + 6 * L)
    rel = np.empty((L, Xb.shape[1]))
    for a, b in sub_blocks(*Xb.shape):
        x64 = Xb[:, a:b].astype(np.float64)
        colnorm = np.einsum("ij,ij->j", x64, x64)
        sums[0] += float(colnorm.sum())
        safe = np.where(colnorm > 0, np.sqrt(colnorm), 1.0)
        prev = x64
        for d, name in enumerate(names):
            H = block[name][:, a:b].astype(np.float64)
            R = As[d] @ H  # the model's pixels
            np.subtract(x64, R, out=R)
            col = np.einsum("ij,ij->j", R, R)
            np.subtract(x64, R, out=R)  # the model again
            np.clip(R, 0.0, 1.0, out=R)
            R -= x64
            rel[d, a:b] = np.where(colnorm > 0, np.sqrt(col) / safe, np.where(col > 0, np.inf, 0.0))
            Rl = prev - Ws[d] @ H
            sums[1 + 6 * d : 7 + 6 * d] += (
                float(col.sum()), float(np.vdot(R, R)), float(np.abs(H).sum()),
                float(np.vdot(H, H)), float(np.vdot(Rl, Rl)), float(np.vdot(prev, prev)),
            )  # fmt: skip
            prev = H
    return {"E": rel}, tuple(float(v) for v in sums)


# --------------------------------------------------------------------------- the solver


@dataclass
class LayerResult:
    W: np.ndarray
    errors: list[float]
    n_iter: int
    converged: bool
    svals: np.ndarray
    normX2: float


@dataclass
class BlockedResult:
    """What the streamed ``learn`` reports: small factors here, H_l in the executor's files."""

    Ws: list[np.ndarray]
    H_names: list[str]
    layers: list[LayerResult]
    greedy_errors: list[float]
    fine_tune_errors: list[float] = field(default_factory=list)
    fine_tune_n_iter: int = 0
    converged: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


def _stop(errors: list[float], tol: float, target: float | None) -> bool:
    it = len(errors) - 1
    err = errors[-1]
    k = min(it, PATIENCE)
    old = errors[-1 - k]
    return (target is not None and err <= target) or err == 0.0 or (old - err <= k * tol * old)


def init_layer(
    ex: Any, src: str, dst: str, m: int, n: int, r: int, dtype: Any, init: str, seed: int,
    layer: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:  # fmt: skip
    """Blocked NNDSVD(a) or random start: (W, Pw = H X^T, H H^T, ||X||^2, leading singular
    values from a randomized range finder with seeded, block-independent test columns)."""
    q = min(r + OVERSAMPLE, m, n)
    Y, normX2, total = ex.run(pass_range, [src], src, seed, layer, q)
    avg = max(total / (m * n), 0.0)
    Q = _orth(Y)
    for _ in range(INIT_POWER_ITER):
        Yp, ZtZ = ex.run(pass_power, [src], src, Q)
        lam, vec = np.linalg.eigh(ZtZ)
        keep = lam > lam[-1] * 1e-12 if lam[-1] > 0 else np.zeros(lam.size, bool)
        Q = _orth(Yp @ (vec[:, keep] / np.sqrt(lam[keep]))) if keep.any() else Q
    (BBt,) = ex.run(pass_project, [src], src, Q)
    lam, vec = np.linalg.eigh(BBt)
    lam, vec = lam[::-1], vec[:, ::-1]
    k = min(r, Q.shape[1])
    s = np.sqrt(np.maximum(lam[:k], 0.0))
    U = Q @ vec[:, :k]
    idx = np.argmax(np.abs(U), axis=0)
    U *= np.where(U[idx, np.arange(k)] < 0, -1.0, 1.0)
    good = s > s[0] * 1e-10 if s.size and s[0] > 0 else np.zeros(k, bool)
    Ut = np.zeros((r, m))
    a_rand = 0.0
    Ut[:k][good] = (U[:, good] / s[good]).T
    if init == "random":
        rng = np.random.default_rng([seed, layer])
        a_rand = a = np.sqrt(avg / r)
        W = a * np.abs(rng.standard_normal((m, r)))
        coef = np.full(r, a)
        Ut_used = np.zeros((0, m))
        use_neg = np.zeros(r, bool)
        fill = None
    else:
        pos2, neg2 = ex.run(pass_vnorms, [src], src, Ut)
        W = np.zeros((m, r))
        coef = np.zeros(r)
        use_neg = np.zeros(r, bool)
        for j in range(k):
            if not good[j]:
                continue
            x = U[:, j]
            xp, xn = np.maximum(x, 0), np.maximum(-x, 0)
            xpn, xnn = np.linalg.norm(xp), np.linalg.norm(xn)
            ypn, ynn = math.sqrt(pos2[j]), math.sqrt(neg2[j])
            mp, mn = xpn * ypn, xnn * ynn
            if j == 0:
                W[:, 0] = math.sqrt(s[0]) * np.abs(x)
                coef[0] = math.sqrt(s[0])  # v is non-negative: |v| = its positive part
                use_neg[0] = float(pos2[0]) < float(neg2[0])
                continue
            if mp > mn:
                u, scale, sig = xp / xpn, 1.0 / ypn, mp
            elif mn > 0:
                u, scale, sig, use_neg[j] = xn / xnn, 1.0 / ynn, mn, True
            else:
                continue
            lbd = math.sqrt(s[j] * sig)
            W[:, j] = lbd * u
            coef[j] = lbd * scale
        fill = avg if init == "nndsvda" else None
        if fill is not None:
            W[W == 0] = avg
        Ut_used = Ut
    Pw, HHt = ex.run(
        pass_init_h, [src], src, dst, Ut_used, coef, use_neg, fill, seed, layer, float(a_rand)
    )  # fmt: skip
    # Rescale W by <X, W H> / ||W H||^2 (the engine's start does the same).
    num = float(np.vdot(W.T, Pw))
    den = float(np.vdot(W.T @ W, HHt))
    if den > 0 and num > 0:
        W *= num / den
    return W, Pw, HHt, normX2, s


def pass_xhals(
    block: dict[str, np.ndarray], j0: int, src: str, dst: str, Wy: np.ndarray, G: np.ndarray,
    sweeps: int, beta: float, pending: str | None,
) -> tuple[dict[str, np.ndarray], Partials]:  # fmt: skip
    """One extrapolated HALS step on H's block: H swept against Wy, Hy = max(0, H + beta
    (H - H_old)); the sums for both candidates (H X^T, H H^T, <Wy X, H> and Hy's). The
    best iterate so far (``pending``: "n" the stored H, "y" the stored Hy) is saved first."""
    Xb = block[src]
    dt = Xb.dtype
    updates: dict[str, np.ndarray] = {}
    if pending is not None:
        updates[dst + "best"] = block[dst if pending == "n" else dst + "y"]
    H = np.ascontiguousarray(block[dst])
    Hprev = H.copy()
    Ph = Wy.astype(dt) @ Xb
    hals(H, Ph, G.astype(dt), sweeps)
    Hy = np.maximum(H + dt.type(beta) * (H - Hprev), dt.type(0))
    P2 = (np.vstack([H, Hy]) @ Xb.T).astype(np.float64)
    H64, Hy64, Ph64 = H.astype(np.float64), Hy.astype(np.float64), Ph.astype(np.float64)
    updates[dst], updates[dst + "y"] = H, Hy
    return updates, (
        P2, H64 @ H64.T, Hy64 @ Hy64.T, float(np.vdot(Ph64, H64)), float(np.vdot(Ph64, Hy64)),
    )  # fmt: skip


def pass_keep(
    block: dict[str, np.ndarray], j0: int, dst: str, pending: str | None
) -> tuple[dict[str, np.ndarray], Partials]:
    """H's block becomes the best iterate's."""
    name = dst + "best" if pending is None else (dst if pending == "n" else dst + "y")
    return {dst: block[name]}, ()


def solve_layer(
    ex: Any, src: str, dst: str, m: int, n: int, r: int, dtype: Any, *, init: str, seed: int,
    layer: int, max_iter: int, tol: float, target_error: float | None,
    callback: Progress | None,
) -> LayerResult:  # fmt: skip
    """One layer src ~ W dst by blocked accelerated HALS (Ang & Gillis's extrapolation with
    restart, as the engine's); dst's columns are written by the executor. The best pair
    seen is kept, so the error history does not rise."""
    W, Pw, HHt, normX2, s = init_layer(ex, src, dst, m, n, r, dtype, init, seed, layer)
    Wt = np.ascontiguousarray(W.T)
    if normX2 == 0.0:
        return LayerResult(W=np.zeros((m, r)), errors=[0.0], n_iter=0, converged=True,
                           svals=s, normX2=0.0)  # fmt: skip
    ex.add(dst + "y", r, dtype)
    ex.add(dst + "best", r, dtype)

    def error(inner: float, G: np.ndarray, HH: np.ndarray) -> float:
        return math.sqrt(max(normX2 - 2 * inner + float(np.vdot(G, HH)), 0.0) / normX2)

    G = Wt @ Wt.T
    best = prev_y = error(float(np.vdot(Wt, Pw)), G, HHt)
    errors = [best]
    bestW = Wt.copy()
    pending: str | None = "n"  # the start is the best so far (saved by the next pass)
    momentum = Momentum()
    nsw_w, nsw_h = n_sweeps(m, n, r), n_sweeps(n, m, r)
    it = 0
    converged = False
    for it in range(1, max_iter + 1):
        Wprev = Wt.copy()
        hals(Wt, Pw, HHt, nsw_w, DELTA)
        Wy = np.maximum(Wt + momentum.beta * (Wt - Wprev), 0.0)
        G = Wy @ Wy.T
        needs = [src, dst] + ([dst + "y"] if pending == "y" else [])
        P2, HnHn, HyHy, in_n, in_y = ex.run(
            pass_xhals, needs, src, dst, Wy, G, nsw_h, momentum.beta, pending
        )
        pending = None
        err_n, err_y = error(in_n, G, HnHn), error(in_y, G, HyHy)
        if err_y > prev_y:  # drop the extrapolation of H for this step
            Pw, HHt, err_y, hy_usable = P2[:r], HnHn, err_n, False
            momentum.failure()
        else:
            Pw, HHt, hy_usable = P2[r:], HyHy, True
            momentum.success()
        prev_y = err_y
        if min(err_n, err_y) < best:
            bestW = Wy.copy()
            pending = "y" if hy_usable and err_y < err_n else "n"
            best = min(err_n, err_y)
        # The next step's H is the swept one; its W sums come from Hy (or H).
        errors.append(best)
        stop = bool(callback(f"layer{layer}", it, best)) if callback else False
        if _stop(errors, tol, target_error):
            converged = True
            break
        if stop:
            break
    needs = (
        [dst]
        + ([dst + "y"] if pending == "y" else [])
        + ([dst + "best"] if pending is None else [])
    )
    ex.run(pass_keep, needs, dst, pending)
    return LayerResult(W=np.ascontiguousarray(bestW.T), errors=errors, n_iter=it,
                       converged=converged, svals=s, normX2=normX2)  # fmt: skip


def _unit_columns(Ws: list[np.ndarray]) -> np.ndarray:
    """Scale every W's columns to unit norm, moving the scale into the next factor;
    returns the scale for H's rows."""
    s = np.ones(Ws[0].shape[1])
    for i, W in enumerate(Ws):
        s = np.sqrt(np.einsum("ij,ij->j", W, W))
        s[s == 0] = 1.0
        W /= s
        if i + 1 < len(Ws):
            Ws[i + 1] *= s[:, None]
    return s


def report_sums(ex: Any, result: BlockedResult) -> Partials:
    """The report's sums (see :func:`pass_errors`); each column's errors go to "E"."""
    ex.add("E", len(result.Ws), np.float64)
    return ex.run(pass_errors, ["X", *result.H_names], "X", result.H_names, result.Ws)


def learn_blocked(
    ex: Any,
    m: int,
    n: int,
    ranks: Sequence[int],
    *,
    dtype: Any = np.float32,
    init: str = DEFAULTS.init,
    seed: int = DEFAULTS.seed,
    max_iter: int = DEFAULTS.max_iter,
    tol: float = DEFAULTS.tol,
    target_error: float | None = DEFAULTS.target_error,
    fine_tune: bool = DEFAULTS.fine_tune,
    fine_tune_iter: int = DEFAULTS.fine_tune_iter,
    normalize: bool = DEFAULTS.normalize,
    refit: bool = DEFAULTS.refit,
    callback: Progress | None = None,
    **_ignored: Any,
) -> BlockedResult:
    """Greedy layers, refits and fine-tuning over the blocks of ``ex`` ("X" and new "H1".."HL")."""
    import time

    t0 = time.perf_counter()
    Ws: list[np.ndarray] = []
    layers: list[LayerResult] = []
    names = [f"H{i + 1}" for i in range(len(ranks))]
    src, rows = "X", m
    for li, r in enumerate(ranks):
        ex.add(names[li], r, dtype)
        res = solve_layer(
            ex, src, names[li], rows, n, r, dtype, init=init, seed=seed, layer=li + 1,
            max_iter=max_iter, tol=tol, target_error=target_error, callback=callback,
        )  # fmt: skip
        layers.append(res)
        W = res.W.copy()
        scale = np.ones(r)
        if normalize:
            scale = np.sqrt(np.einsum("ij,ij->j", W, W))
            scale[scale == 0] = 1.0
            W /= scale
        Ws.append(W)
        if (refit and li > 0 and max_iter > 0) or normalize:
            A = chain(Ws)
            sweeps = REFIT_SWEEPS if refit and li > 0 and max_iter > 0 else 0
            ex.run(pass_refit, ["X", names[li]], "X", names[li], A, A.T @ A, scale, sweeps)
        src, rows = names[li], r
    As = [chain(Ws[: d + 1]) for d in range(len(ranks))]
    sums = ex.run(pass_gram_errors, ["X", *names], "X", names, As)
    normX2 = layers[0].normX2
    greedy = [
        math.sqrt(max(normX2 - 2 * sums[2 * d] + float(np.vdot(A.T @ A, sums[2 * d + 1])), 0.0)
                  / normX2) if normX2 > 0 else 0.0
        for d, A in enumerate(As)
    ]  # fmt: skip
    t1 = time.perf_counter()
    result = BlockedResult(Ws=Ws, H_names=names, layers=layers, greedy_errors=greedy)
    result.converged = all(r.converged for r in layers)
    if fine_tune and fine_tune_iter > 0:
        _fine_tune(ex, result, names[-1], n, fine_tune_iter, tol, target_error, normalize,
                   callback, refit_sweeps=REFIT_SWEEPS)  # fmt: skip
    result.seconds = {"greedy": t1 - t0, "fine_tune": time.perf_counter() - t1}
    return result


def _fine_tune(
    ex: Any, result: BlockedResult, hname: str, n: int, max_iter: int, tol: float,
    target: float | None, normalize: bool, callback: Progress | None, refit_sweeps: int,
) -> None:  # fmt: skip
    Ws = [W.copy() for W in result.Ws]
    L = len(Ws)
    m, r1 = Ws[0].shape
    rL = Ws[-1].shape[1]
    nsw_w, nsw_h = n_sweeps(m, n, r1), n_sweeps(n, m, rL)
    ones = np.ones(rL)
    sums = ex.run(pass_finetune, ["X", hname], "X", hname, Ws, ones, 0)
    normX2 = result.layers[0].normX2
    if normX2 == 0.0:
        return
    A = chain(Ws)

    def error(s: Partials, A: np.ndarray) -> float:
        e2 = normX2 - 2 * s[1] + float(np.vdot(A.T @ A, s[0]))
        return math.sqrt(max(e2, 0.0) / normX2)

    errors = [error(sums, A)]
    it = 0
    result.converged = False
    for it in range(1, max_iter + 1):
        P, G = sums[2], sums[3]
        W1t = np.ascontiguousarray(Ws[0].T)
        hals(W1t, P, G, nsw_w, DELTA)
        Ws[0] = W1t.T.copy()
        A = Ws[0]
        for li in range(1, L):
            XBt, BBt = sums[4 + 2 * (li - 1)], sums[5 + 2 * (li - 1)]
            Ws[li] = apg(Ws[li], A.T @ A, BBt, A.T @ XBt, APG_STEPS)
            A = A @ Ws[li]
        scale = _unit_columns(Ws) if normalize else ones
        A = chain(Ws)
        sums = ex.run(pass_finetune, ["X", hname], "X", hname, Ws, scale, nsw_h)
        errors.append(error(sums, A))
        stop = bool(callback("fine-tune", it, errors[-1])) if callback else False
        prev, err = errors[-2], errors[-1]
        if (
            (target is not None and err <= target)
            or err == 0.0
            or prev - err <= (FT_TOL_FACTOR * tol * prev)
        ):
            result.converged = True
            break
        if stop:
            break
    result.Ws = Ws
    result.fine_tune_errors = errors
    result.fine_tune_n_iter = it
    # Shallower codes re-fitted to X with W1...Wd fixed, warm-started at W(d+1)...WL HL.
    for d in range(1, L):
        A = chain(Ws[:d])
        ex.run(pass_rebuild, ["X", result.H_names[d - 1], hname], "X", result.H_names[d - 1],
               hname, A, Ws[d:], refit_sweeps)  # fmt: skip


def pass_rebuild(
    block: dict[str, np.ndarray], j0: int, src: str, dst: str, deep: str, A: np.ndarray,
    rest: list[np.ndarray], sweeps: int,
) -> tuple[dict[str, np.ndarray], Partials]:  # fmt: skip
    Xb = block[src]
    dt = Xb.dtype
    H = np.ascontiguousarray(np.maximum(chain([*rest, block[deep].astype(np.float64)]), 0))
    H = H.astype(dt)
    hals(H, A.T.astype(dt) @ Xb, (A.T @ A).astype(dt), sweeps)
    return {dst: H}, ()


def check_streamable(method: str, solver: str, init: str) -> None:
    if method != "nmf" or solver != "hals" or init not in ("nndsvda", "nndsvd", "random"):
        raise ParameterError(
            "a streamed or distributed collection is factorised by blocked HALS: it needs "
            f"--method nmf --solver hals and --init nndsvda, nndsvd or random (got --method "
            f"{method} --solver {solver} --init {init}); give more --memory to factor it in memory"
        )


__all__ = [
    "BlockFile",
    "BlockedResult",
    "LocalBlocks",
    "Plan",
    "TreeSum",
    "check_streamable",
    "learn_blocked",
    "plan_blocks",
    "report_sums",
]
