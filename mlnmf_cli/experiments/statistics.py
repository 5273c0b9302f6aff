"""Statistics of an experiment and the verdict sentence derived from them alone."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlnmf_cli.experiments.config import KINDS

if TYPE_CHECKING:
    from mlnmf_cli.experiments.comparison import CompareResult

#: Features and coefficients count as "about equally alike" when their
#: chance-corrected similarities differ by less than this in a single run.
EQUAL_MARGIN = 0.05


def point_stats(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One run's numbers in the shape :func:`verdict` reads.

    ``across`` is the observed mean over pairs (a point); ``null`` spans the
    2.5-97.5 percentiles of the same statistic on random matrices.
    """
    across = entry["across"]
    null = entry["null"]
    return {
        "across": None if across is None else _interval(across["mean"]),
        "null": {"mean": null["mean"], "low": null["low"], "high": null["high"]},
        "self": None if entry["self"] is None else _interval(entry["self"]["mean"]),
        "corrected": None if entry["corrected"] is None else _interval(entry["corrected"]),
        "control": None if entry.get("control") is None else _interval(entry["control"]),
        "trivial": bool(entry["trivial"]),
    }


def _interval(x: float) -> dict[str, float]:
    return {"mean": float(x), "low": float(x), "high": float(x)}


def interval_text(stat: Mapping[str, float] | None, repeats: int) -> str:
    """A statistic for tables: "mean [low, high]" over several repeats, the mean
    alone for one, "n/a" when there is none; 3 decimals."""
    if stat is None:
        return "n/a"
    if repeats > 1:
        return f"{stat['mean']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"
    return f"{stat['mean']:.3f}"


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def mean_interval(values: Sequence[float]) -> dict[str, float]:
    """Mean with a 95% Student-t interval (a point when there is one value)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if x.size < 2:
        return _interval(mean)
    t = _T95[x.size - 2] if x.size - 1 <= len(_T95) else 1.96
    half = t * float(x.std(ddof=1)) / math.sqrt(x.size)
    return {"mean": mean, "low": mean - half, "high": mean + half}


def pooled_stats(per_repeat: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Verdict statistics over repeats: each quantity as a mean with a 95% interval.

    ``per_repeat`` holds :meth:`CompareResult.verdict_stats` of each repeat.
    """
    first = per_repeat[0]
    out: dict[str, Any] = {
        "config": first["config"],
        "depth": first["depth"],
        "measure": first["measure"],
        "repeats": len(per_repeat),
    }
    for kind in KINDS:
        stats: dict[str, Any] = {"trivial": any(r[kind]["trivial"] for r in per_repeat)}
        for key in ("across", "null", "self", "corrected", "control"):
            values = [r[kind][key]["mean"] for r in per_repeat if r[kind][key] is not None]
            stats[key] = mean_interval(values) if len(values) == len(per_repeat) else None
        out[kind] = stats
    diffs = [
        r["features"]["corrected"]["mean"] - r["coefficients"]["corrected"]["mean"]
        for r in per_repeat
        if r["features"]["corrected"] is not None and r["coefficients"]["corrected"] is not None
    ]
    out["difference"] = mean_interval(diffs) if len(diffs) == len(per_repeat) else None
    return out


def verdict(stats: Mapping[str, Any]) -> str:
    """One sentence saying what the numbers show, derived from them alone.

    ``stats`` has ``depth``, ``repeats`` and, for ``features`` and
    ``coefficients``, intervals (``mean``, ``low``, ``high``) for ``across``,
    ``null``, ``self`` and ``corrected`` (chance-corrected similarity), plus
    ``trivial`` (rank equals the dimension). A factor *beats its null
    baseline* when its interval lies wholly above the null's; features and
    coefficients differ when the interval of the difference of their
    chance-corrected scores excludes zero (over repeats) or, for one run,
    when they differ by at least :data:`EQUAL_MARGIN`.
    """
    depth = stats["depth"]
    F, C = stats["features"], stats["coefficients"]
    where = f"At depth {depth}"
    if stats.get("repeats", 1) > 1:
        where += f" over {stats['repeats']} repeats"
    if F["across"] is None or C["across"] is None:
        return f"{where} there is nothing to compare: similarity across inputs needs at least two inputs."
    trivial = [k for k, s in (("features", F), ("coefficients", C)) if s["corrected"] is None]
    if trivial:
        names = " and ".join(trivial)
        verb = "span" if len(trivial) > 1 else "spans"
        return (
            f"{where} the {names} {verb} the whole space (rank equals dimension), so any two "
            f"inputs score {F['across']['mean']:.2f}/{C['across']['mean']:.2f} "
            f"(features/coefficients) exactly like random matrices "
            f"({F['null']['mean']:.2f}/{C['null']['mean']:.2f}) and the comparison says nothing."
        )
    beats_f = F["across"]["low"] > F["null"]["high"]
    beats_c = C["across"]["low"] > C["null"]["high"]
    cf, cc = F["corrected"]["mean"], C["corrected"]["mean"]
    diff = stats.get("difference")
    if diff is not None and stats.get("repeats", 1) > 1:
        differ = diff["low"] > 0 or diff["high"] < 0
    else:
        differ = abs(cf - cc) >= EQUAL_MARGIN
    numbers = (
        f"{cf:.2f} vs {cc:.2f} above chance; raw {stats['measure']} similarity "
        f"{F['across']['mean']:.2f} vs {C['across']['mean']:.2f}, "
        f"null {F['null']['mean']:.2f} vs {C['null']['mean']:.2f}"
    )
    if differ:
        more, less = ("features", "coefficients") if cf > cc else ("coefficients", "features")
        head = f"{where}, {more} are more alike across inputs than {less} ({numbers})"
    else:
        head = (
            f"{where}, features and coefficients are about equally alike across inputs ({numbers})"
        )
    if beats_f and beats_c:
        tail = "and both beat their null baselines"
    elif beats_f:
        tail = "and only the features beat their null baseline"
    elif beats_c:
        tail = "and only the coefficients beat their null baseline"
    else:
        tail = "and neither beats its null baseline"
    return f"{head}, {tail}."


def stats_over_repeats(
    results: Sequence[CompareResult], config_index: int, depth: int
) -> dict[str, Any]:
    """Verdict statistics for one configuration and depth: one run, or pooled over repeats."""
    per_repeat = [r.verdict_stats(config_index, depth) for r in results]
    if len(per_repeat) == 1:
        stats = dict(per_repeat[0])
        F, C = stats["features"], stats["coefficients"]
        stats["difference"] = (
            None
            if F["corrected"] is None or C["corrected"] is None
            else _interval(F["corrected"]["mean"] - C["corrected"]["mean"])
        )
        return stats
    return pooled_stats(per_repeat)


def similarity_rows(results: Sequence[CompareResult]) -> list[dict[str, Any]]:
    """One row per configuration, depth and kind with every number beside its baselines."""
    first = results[0]
    rows = []
    for ci, config in enumerate(first.configs):
        for depth in range(1, len(config.options.ranks) + 1):
            stats = stats_over_repeats(results, ci, depth)
            entries = first.entries(ci, depth)
            for kind in KINDS:
                across = entries[kind]["across"]
                rows.append(
                    {
                        "config": config.label,
                        "config_index": ci,
                        "depth": depth,
                        "rank": int(config.options.ranks[depth - 1]),
                        "kind": kind,
                        "repeats": len(results),
                        "pair_range": None if across is None else [across["min"], across["max"]],
                        **stats[kind],
                    }
                )
    return rows


def verdicts(results: Sequence[CompareResult], depth: int | None = None) -> list[dict[str, Any]]:
    """One verdict sentence per configuration, at ``depth`` (default 1, the seed's one layer)."""
    out = []
    for ci, config in enumerate(results[0].configs):
        d = min(depth or 1, len(config.options.ranks))
        stats = stats_over_repeats(results, ci, d)
        out.append({"config": config.label, "depth": d, "verdict": verdict(stats), "stats": stats})
    return out
