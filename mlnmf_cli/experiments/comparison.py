"""Similarity of factors across inputs, with its null and self baselines: ``compare``'s numbers."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlnmf_cli import storage
from mlnmf_cli.batch.run import BLAS_THREADS, blas_limit
from mlnmf_cli.engine import metrics
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.experiments.config import (
    DEFAULT_NULL_DRAWS,
    KINDS,
    MEASURES,
    Config,
    check_fits,
)
from mlnmf_cli.experiments.runs import Run, Step, run_grid
from mlnmf_cli.experiments.statistics import point_stats, verdict
from mlnmf_cli.experiments.subjects import Subject, check_shapes
from mlnmf_cli.options import matrix_text


def similarity(A: np.ndarray, B: np.ndarray, kind: str, measure: str = "subspace") -> float:
    """How alike two factors are, ignoring the order and scale of their components.

    Features (m x r) are compared by their columns, coefficients (r x n) by
    their rows. ``subspace``: mean cosine of the principal angles between the
    spanned subspaces; ``matched``: mean cosine of columns matched one to one.
    """
    if kind not in KINDS:
        raise ParameterError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "coefficients":
        A, B = A.T, B.T
    if measure == "subspace":
        return float(metrics.subspace_similarity(A, B))
    if measure == "matched":
        return float(metrics.matched_cosine(A, B))
    raise ParameterError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")


def part_similarity(
    A: Sequence[np.ndarray], B: Sequence[np.ndarray], kind: str, measure: str = "subspace"
) -> float:
    """Mean :func:`similarity` of corresponding parts (one part unless channels=separate)."""
    if len(A) != len(B):
        raise ParameterError(f"cannot compare {len(A)} part(s) with {len(B)}")
    return float(np.mean([similarity(a, b, kind, measure) for a, b in zip(A, B, strict=True)]))


def similarity_matrix(
    factors: Sequence[Sequence[np.ndarray]],
    kind: str,
    measure: str,
    diagonal: Sequence[float | None],
) -> np.ndarray:
    """Pairwise similarities; the diagonal holds ``diagonal`` (the self baseline, or NaN)."""
    n = len(factors)
    out = np.full((n, n), np.nan)
    for i in range(n):
        value = diagonal[i]
        out[i, i] = np.nan if value is None else value
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = part_similarity(factors[i], factors[j], kind, measure)
    return out


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(matrix.shape[0], k=1)
    return matrix[i, j]


def null_draws(
    shape: tuple[int, int],
    n_inputs: int,
    kind: str,
    measure: str,
    draws: int,
    rng: np.random.Generator,
    parts: int = 1,
) -> np.ndarray:
    """The across-input statistic on random data: ``draws`` values of the mean pairwise
    similarity of ``max(n_inputs, 2)`` independent sets of ``parts`` uniform
    non-negative matrices of ``shape``."""
    n = max(n_inputs, 2)
    values = np.empty(draws)
    for k in range(draws):
        sets = [[rng.random(shape) for _ in range(parts)] for _ in range(n)]
        values[k] = np.mean(
            [
                part_similarity(sets[i], sets[j], kind, measure)
                for i in range(n)
                for j in range(i + 1, n)
            ]
        )
    return values


def chance_corrected(value: float | None, null: float) -> float | None:
    """``(value - null) / (1 - null)``: 0 at chance, 1 when identical; None if undefined."""
    if value is None or 1.0 - null < 1e-9:
        return None
    return (value - null) / (1.0 - null)


def summarise(
    matrix: np.ndarray,
    null: np.ndarray,
    self_values: Sequence[float | None],
    trivial: bool,
    control: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """The numbers of one similarity matrix, each beside its baselines.

    ``across`` is over pairs of inputs that are not controls; ``control`` is the
    mean similarity between a control input and the others.
    """
    is_control = np.zeros(matrix.shape[0], dtype=bool) if control is None else np.asarray(control)
    main = np.flatnonzero(~is_control)
    pairs = off_diagonal(matrix[np.ix_(main, main)])
    control_pairs = matrix[np.ix_(np.flatnonzero(is_control), main)].ravel()
    across = None
    if pairs.size:
        across = {
            "mean": float(pairs.mean()),
            "min": float(pairs.min()),
            "max": float(pairs.max()),
        }
    known_self = [v for v in self_values if v is not None]
    null_mean = float(null.mean())
    return {
        "across": across,
        "null": {
            "mean": null_mean,
            "sd": float(null.std(ddof=1)) if null.size > 1 else 0.0,
            "low": float(np.percentile(null, 2.5)),
            "high": float(np.percentile(null, 97.5)),
            "draws": int(null.size),
        },
        "self": (
            {
                "mean": float(np.mean(known_self)),
                "min": float(np.min(known_self)),
                "max": float(np.max(known_self)),
            }
            if known_self
            else None
        ),
        "corrected": chance_corrected(None if across is None else across["mean"], null_mean),
        "control": float(control_pairs.mean()) if control_pairs.size else None,
        "trivial": trivial,
    }


@dataclass
class CompareResult:
    """Everything ``compare`` measured; ``to_json`` is what goes into compare.json."""

    subjects: list[Subject]
    configs: list[Config]
    runs: list[list[Run]]
    measure: str
    similarities: list[dict[str, Any]]
    null_draws: int
    seconds: float = 0.0

    def entries(self, config_index: int, depth: int) -> dict[str, dict[str, Any]]:
        return {
            e["kind"]: e
            for e in self.similarities
            if e["config_index"] == config_index and e["depth"] == depth
        }

    def verdict_stats(self, config_index: int, depth: int) -> dict[str, Any]:
        entries = self.entries(config_index, depth)
        return {
            "config": self.configs[config_index].label,
            "depth": depth,
            "measure": self.measure,
            "repeats": 1,
            **{kind: point_stats(entries[kind]) for kind in KINDS},
        }

    def verdicts(self, depth: int | None = None) -> list[dict[str, Any]]:
        out = []
        for ci, config in enumerate(self.configs):
            d = min(depth or 1, len(config.options.ranks))
            stats = self.verdict_stats(ci, d)
            out.append({"config": config.label, "depth": d, "verdict": verdict(stats)})
        return out

    def to_json(self, verdict_depth: int | None = None) -> dict[str, Any]:
        return {
            "version": storage.REPORT_VERSION,
            "versions": storage.versions(),
            "measure": self.measure,
            "null_draws": self.null_draws,
            "inputs": [
                {
                    "name": s.name,
                    "path": str(s.path),
                    "kind": s.kind,
                    "control": s.control,
                    "notes": list(s.notes),
                }
                for s in self.subjects
            ],
            "configs": [
                {"label": c.label, "parameters": c.options.as_dict()} for c in self.configs
            ],
            "runs": [run.row() for row in self.runs for run in row],
            "similarities": [_public(e) for e in self.similarities],
            "verdicts": self.verdicts(verdict_depth),
            "seconds": round(self.seconds, 3),
        }

    def csv_rows(self) -> list[dict[str, Any]]:
        rows = []
        names = [s.name for s in self.subjects]
        for e in self.similarities:
            base = {
                "config": e["config"],
                "depth": e["depth"],
                "rank": e["rank"],
                "kind": e["kind"],
                "measure": self.measure,
                "null_mean": _round(e["null"]["mean"]),
                "null_low": _round(e["null"]["low"]),
                "null_high": _round(e["null"]["high"]),
                "self_mean": _round(e["self"]["mean"]) if e["self"] else None,
                "trivial": e["trivial"],
            }
            matrix = np.asarray(e["matrix"], dtype=float)
            for i in range(len(names)):
                for j in range(i + 1, len(names)):
                    rows.append(
                        {
                            **base,
                            "input_a": names[i],
                            "input_b": names[j],
                            "similarity": _round(matrix[i, j]),
                            "self_a": _round(matrix[i, i]),
                            "self_b": _round(matrix[j, j]),
                            "corrected": _round(
                                chance_corrected(float(matrix[i, j]), e["null"]["mean"])
                            ),
                        }
                    )
            if e["across"] is not None:
                rows.append(
                    {
                        **base,
                        "input_a": "(mean of pairs)",
                        "input_b": "",
                        "similarity": _round(e["across"]["mean"]),
                        "corrected": _round(e["corrected"]),
                    }
                )
        return rows


CSV_FIELDS = (
    "config", "depth", "rank", "kind", "measure", "input_a", "input_b", "similarity",
    "null_mean", "null_low", "null_high", "self_a", "self_b", "self_mean", "corrected", "trivial",
)  # fmt: skip


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in entry.items() if k != "config_index"}
    out["matrix"] = [[_round(v) for v in row] for row in np.asarray(entry["matrix"], dtype=float)]
    return out


def compare_runs(
    subjects: Sequence[Subject],
    configs: Sequence[Config],
    runs: Sequence[Sequence[Run]],
    *,
    measure: str = "subspace",
    draws: int = DEFAULT_NULL_DRAWS,
    seed: int = 0,
) -> CompareResult:
    """Similarity matrices, null and self baselines for every configuration and depth."""
    if measure not in MEASURES:
        raise ParameterError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if draws < 2:
        raise ParameterError(f"null draws must be at least 2, got {draws}")
    rng = np.random.default_rng(seed)
    sims: list[dict[str, Any]] = []
    for ci, (config, row) in enumerate(zip(configs, runs, strict=True)):
        depth = min(run.factors.depth for run in row)
        for d in range(1, depth + 1):
            for kind in KINDS:
                mats = [run.factors.factor(kind, d) for run in row]
                selfs = [
                    None
                    if run.self_factors is None
                    else part_similarity(mats[i], run.self_factors.factor(kind, d), kind, measure)
                    for i, run in enumerate(row)
                ]
                matrix = similarity_matrix(mats, kind, measure, selfs)
                shape = (int(mats[0][0].shape[0]), int(mats[0][0].shape[1]))
                controls = [s.control for s in subjects]
                n_main = len(mats) - sum(controls)
                null = null_draws(shape, n_main, kind, measure, draws, rng, len(mats[0]))
                space, rank = (shape[0], shape[1]) if kind == "features" else (shape[1], shape[0])
                entry = summarise(matrix, null, selfs, trivial=rank >= space, control=controls)
                entry.update(
                    config=config.label,
                    config_index=ci,
                    depth=d,
                    rank=int(config.options.ranks[d - 1]),
                    kind=kind,
                    shape=list(shape),
                    parts=len(mats[0]),
                    labels=[s.name for s in subjects],
                    matrix=matrix,
                )
                sims.append(entry)
    return CompareResult(
        list(subjects), list(configs), [list(r) for r in runs], measure, sims, draws
    )


def check_grid(subjects: Sequence[Subject], configs: Sequence[Config]) -> None:
    """Raise :class:`ParameterError` unless :func:`compare` can run: at least two inputs
    besides controls, and under every configuration one matrix shape that its ranks
    fit (a :class:`~mlnmf_cli.experiments.config.ConfigError`). Nothing is decomposed."""
    main = [s for s in subjects if not s.control]
    if len(main) < 2:
        listed = "".join(f": {s.path}" for s in main)
        raise ParameterError(
            f"compare needs at least two inputs to compare, got {len(main)}{listed}"
        )
    first: dict[str, object] = {}
    for s in main:  # the same file twice would be measured alike with itself
        given = first.setdefault(os.path.realpath(s.path), s.path)
        if given is not s.path:
            again = "" if str(given) == str(s.path) else f" (as {given} and {s.path})"
            raise ParameterError(
                f"{given} is given twice{again}: compare needs different inputs, "
                "an image compared with itself is alike by construction"
            )
    images = [s for s in subjects if s.image is not None]
    for config in configs:
        check_shapes(subjects, config)
        if images:
            shape = images[0].part_shapes(config.options)[0]
            where = matrix_text(shape, images[0].image.size, "images")  # type: ignore[union-attr]
            check_fits([config], shape, where)


def compare(
    subjects: Sequence[Subject],
    configs: Sequence[Config],
    *,
    measure: str = "subspace",
    draws: int = DEFAULT_NULL_DRAWS,
    seed: int = 0,
    self_baseline: bool = True,
    step: Step | None = None,
) -> CompareResult:
    """Run the grid and measure it: the whole of ``mlnmf compare`` without files.

    Everything is checked (:func:`check_grid`) before the first decomposition."""
    check_grid(subjects, configs)
    start = time.perf_counter()
    # Decompositions use as many BLAS threads as a decompose batch does, so the
    # factors are the ones ``decompose`` would write (and BLAS threads do not
    # fight over the cores with other busy processes).
    with blas_limit(BLAS_THREADS):
        runs = run_grid(subjects, configs, self_baseline=self_baseline, step=step)
        result = compare_runs(subjects, configs, runs, measure=measure, draws=draws, seed=seed)
    result.seconds = time.perf_counter() - start
    return result
