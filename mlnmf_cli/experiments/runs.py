"""Running an experiment's grid: every input with every configuration, and a self baseline."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mlnmf_cli import engine, pipeline
from mlnmf_cli.engine import metrics
from mlnmf_cli.engine.model import Model
from mlnmf_cli.errors import MlnmfError, ParameterError
from mlnmf_cli.experiments.config import Config
from mlnmf_cli.experiments.subjects import Subject, check_shapes, model_mismatch

Step = Callable[[str], Any]


@dataclass
class Factors:
    """The factors of one decomposition: one :class:`Model` per decomposed matrix.

    In ``separate`` mode there are three parts (R, G, B); they are compared
    part by part (R with R, ...) and the similarities averaged. (Put side by
    side, 3r features could fill the whole space and make every comparison
    trivially 1.) Products are taken in float64.
    """

    parts: list[Model]

    @property
    def depth(self) -> int:
        return self.parts[0].depth

    def features(self, depth: int) -> np.ndarray:
        return _joined(self.factor("features", depth), axis=1)

    def coefficients(self, depth: int) -> np.ndarray:
        return _joined(self.factor("coefficients", depth), axis=0)

    def factor(self, kind: str, depth: int) -> list[np.ndarray]:
        """Per part: the effective features W1...Wl, or the coefficients Hl."""
        if kind == "features":
            return [p.effective_features(depth, np.float64) for p in self.parts]
        return [p.coefficients(depth, np.float64) for p in self.parts]


def _joined(mats: list[np.ndarray], axis: int) -> np.ndarray:
    return mats[0] if len(mats) == 1 else np.concatenate(mats, axis=axis)


@dataclass
class Run:
    """One cell of the grid: one input decomposed with one configuration."""

    subject: Subject
    config: Config
    factors: Factors
    depths: list[dict[str, Any]]
    seconds: float | None
    source: str  # "computed" or "saved model"
    decomposition: pipeline.Decomposition | None = None
    self_factors: Factors | None = None

    def reconstruction(self, depth: int) -> np.ndarray:
        if self.decomposition is not None:
            return self.decomposition.reconstruction(depth)
        assert self.subject.model is not None
        return pipeline.rebuild(self.subject.model, depth)

    def original(self) -> np.ndarray | None:
        return None if self.decomposition is None else self.decomposition.target

    def row(self) -> dict[str, Any]:
        return {
            "input": self.subject.name,
            "path": str(self.subject.path),
            "config": self.config.label,
            "source": self.source,
            "seconds": None if self.seconds is None else round(self.seconds, 4),
            "depths": self.depths,
        }


def run_grid(
    subjects: Sequence[Subject],
    configs: Sequence[Config],
    *,
    self_baseline: bool = True,
    step: Step | None = None,
) -> list[list[Run]]:
    """Decompose every input with every configuration: ``runs[config][input]``.

    Images go through :func:`pipeline.decompose_image`; with ``self_baseline``
    each is decomposed a second time from a random start (seed + 1). A saved
    model is used as it is when its parameters match the configuration; a
    model cannot be re-run (its image is not stored), so a mismatch is an
    error, and it has no self baseline.
    """
    for config in configs:
        check_shapes(subjects, config)
        for s in subjects:
            if s.model is not None:
                diffs = model_mismatch(s.model, config.options)
                if diffs:
                    raise ParameterError(
                        f"{s.path}: saved model does not match configuration "
                        f"{config.label!r} in {'; '.join(diffs)}, and it cannot be re-run "
                        "because the original image is not stored in it"
                    )
    grid = []
    for config in configs:
        row = []
        for s in subjects:
            if step is not None:
                step(f"{s.name} [{config.label}]")
            try:
                row.append(_run_one(s, config, self_baseline))
            except MlnmfError as exc:
                raise type(exc)(f"{s.path} with configuration {config.label!r}: {exc}") from None
        grid.append(row)
    return grid


def _run_one(subject: Subject, config: Config, self_baseline: bool) -> Run:
    if subject.model is not None:
        factors = Factors(list(subject.model.parts))
        return Run(
            subject, config, factors, _saved_depths(subject, factors), _saved_seconds(subject),
            "saved model",
        )  # fmt: skip
    assert subject.image is not None
    d = pipeline.decompose_image(subject.image, config.options)
    factors = Factors(list(d.parts))
    depths = [
        {**row, **_sparsity(factors, depth)} for depth, row in enumerate(d.depth_rows(), start=1)
    ]
    self_factors = None
    if self_baseline:
        # A random start left as it is would be noise, not a decomposition: when the
        # configuration runs no iterations (the seed's setup), the self run does.
        iterations = config.options.max_iter or engine.DEFAULTS.max_iter
        other = replace(
            config.options, seed=config.options.seed + 1, init="random", max_iter=iterations
        )
        again = pipeline.decompose_image(subject.image, other)
        self_factors = Factors(list(again.parts))
    return Run(
        subject, config, factors, depths, d.seconds.get("factorize"), "computed", d, self_factors
    )


def _sparsity(factors: Factors, depth: int) -> dict[str, float]:
    return {
        "sparsity_features": float(metrics.hoyer_sparsity(factors.features(depth))),
        "sparsity_coefficients": float(metrics.hoyer_sparsity(factors.coefficients(depth))),
        "top_feature_share": top_column_share(factors.factor("features", depth)),
    }


def top_column_share(parts: Sequence[np.ndarray]) -> float:
    """Largest share of a factor's squared norm held by one column (worst part).

    Near 1 when one column dominates, as with the seed's SVD start: a picture
    drawn on one colour scale then shows that column and little else.
    """
    shares = []
    for M in parts:
        energy = np.sum(np.square(M), axis=0)
        total = float(energy.sum())
        shares.append(float(energy.max()) / total if total > 0 else 0.0)
    return max(shares)


def _saved_depths(subject: Subject, factors: Factors) -> list[dict[str, Any]]:
    """Per-depth numbers of a saved model: errors from its report.json when it has one."""
    known: dict[int, Mapping[str, Any]] = {}
    if subject.report is not None:
        for saved in subject.report.get("depths") or []:
            if isinstance(saved, dict) and "depth" in saved:
                known[int(saved["depth"])] = saved
    rows = []
    for depth in range(1, factors.depth + 1):
        rep = known.get(depth, {})
        row: dict[str, Any] = {
            "depth": depth,
            "rank": int(factors.coefficients(depth).shape[0] // len(factors.parts)),
            "relative_error": rep.get("relative_error"),
            "psnr": rep.get("psnr"),
            "greedy_relative_error": rep.get("greedy_relative_error"),
            "svd_floor": None,
        }
        row.update(_sparsity(factors, depth))
        rows.append(row)
    return rows


def _saved_seconds(subject: Subject) -> float | None:
    seconds = (subject.report or {}).get("seconds") or {}
    value = seconds.get("factorize") if isinstance(seconds, dict) else None
    return float(value) if isinstance(value, (int, float)) else None
