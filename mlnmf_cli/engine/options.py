"""Every option of a factorisation, declared once: name, default, rule and help text.

:class:`EngineOptions` is a frozen dataclass whose fields carry their rule (one
of the rule classes below) and their help text in ``field.metadata``. The
command line's options, ``compare --config`` keys, the report's
``parameters`` and the options saved with a model are all derived from these
fields (see :func:`option_fields`); nothing else restates a default.

Each error message names the parameter, the rule and the value it got.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlnmf_cli.errors import ParameterError

METHODS = ("nmf", "semi")
SOLVERS = ("hals", "mu")
INITS = ("nndsvda", "nndsvd", "random", "svd")

Callback = Callable[[str, int, float], Any] | None
"""``callback(stage, iteration, error)`` after each iteration of a layer ("layer1",
..., "layerL") or of the joint fine-tuning ("fine-tune"); a True return stops that
stage. ``error`` is the stage's relative error (float)."""


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if not isinstance(value, str) or value not in self.options:
            allowed = ", ".join(repr(o) for o in self.options)
            raise ParameterError(f"{name} must be one of {allowed}, got {value!r}")


@dataclass(frozen=True)
class Integer:
    low: int
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ParameterError(f"{name} must be an integer >= {self.low}, got {value!r}")
        if value < self.low:
            raise ParameterError(f"{name} must be an integer >= {self.low}, got {value!r}")


@dataclass(frozen=True)
class Real:
    low: float
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        rule = f"a finite number >= {self.low:g}" + (" or None" if self.optional else "")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ParameterError(f"{name} must be {rule}, got {value!r}")
        if not math.isfinite(float(value)) or float(value) < self.low:
            raise ParameterError(f"{name} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class Boolean:
    def check(self, name: str, value: Any) -> None:
        numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
        if not isinstance(value, bool) and not numpy_bool:
            raise ParameterError(f"{name} must be True or False, got {value!r}")


@dataclass(frozen=True)
class Ranks:
    """A sequence of non-increasing positive ranks (the size limits need the data's shape)."""

    def check(self, name: str, value: Any) -> None:
        check_ranks(value)


Rule = Choice | Integer | Real | Boolean | Ranks


def option(
    default: Any,
    rule: Rule,
    help: str = "",
    *,
    flag: str | None = None,
    cli: bool = True,
    config: bool = True,
    recorded: bool = True,
) -> Any:
    """A dataclass field with its rule and help text.

    ``flag``: the command-line spelling when it is not ``--name`` (e.g.
    ``--fine-tune/--no-fine-tune``); ``cli``: offered on the command line;
    ``config``: a ``compare --config`` key; ``recorded``: written into reports
    and saved models.
    """
    meta = {
        "rule": rule,
        "help": help,
        "flag": flag,
        "cli": cli,
        "config": config,
        "recorded": recorded,
    }
    return field(default=default, metadata=meta)


def option_fields(cls: Any, flag: str) -> list[dataclasses.Field[Any]]:
    """The fields of an options dataclass with ``metadata[flag]`` true (``cli``, ``config``,
    ``recorded``), in declaration order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get(flag)]


class Validated:
    """Mixin: ``__post_init__`` checks every field against the rule in its metadata."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            rule = f.metadata.get("rule")
            if rule is not None:
                rule.check(f.name, getattr(self, f.name))

    def as_dict(self) -> dict[str, Any]:
        """The recorded fields as plain JSON values (tuples become lists)."""
        out = {}
        for f in option_fields(type(self), "recorded"):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


# --------------------------------------------------------------------------- the options


@dataclass(frozen=True)
class EngineOptions(Validated):
    """Every choice the engine makes, validated when built (:class:`ParameterError`)."""

    method: str = option("nmf", Choice(METHODS), "nmf: W >= 0; semi: W unconstrained.")
    solver: str = option("hals", Choice(SOLVERS), "hals: fast; mu: multiplicative updates.")
    init: str = option("nndsvda", Choice(INITS), "Initialisation (svd: the seed's Semi-NMF start).")
    fine_tune: bool = option(
        True,
        Boolean(),
        "Jointly fine-tune all layers after greedy training.",
        flag="--fine-tune/--no-fine-tune",
    )
    fine_tune_iter: int = option(150, Integer(0), "Iterations of joint fine-tuning.")
    normalize: bool = option(
        True,
        Boolean(),
        "Scale W columns to unit norm between layers.",
        flag="--normalize/--no-normalize",
    )
    refit: bool = option(
        True,
        Boolean(),
        "Greedy training: re-fit each deeper layer's coefficients to the image itself "
        "(not with --max-iter 0).",
        flag="--refit/--no-refit",
    )
    max_iter: int = option(
        200,
        Integer(0),
        "Iterations per layer at most (0: keep the initialisation, as the seed's pipeline did).",
    )
    tol: float = option(
        1e-5, Real(0.0), "Stop a layer when its relative improvement falls below this."
    )
    target_error: float | None = option(
        None, Real(0.0, optional=True), "Stop a layer as soon as its relative error reaches this."
    )
    seed: int = option(0, Integer(0), "Random seed; recorded in every report.")
    # Solver knobs: arguments with defaults, not offered on the command line nor recorded.
    max_sweeps: int = option(
        6, Integer(1), "HALS: sweeps over W's rows per update at most.", cli=False, config=False,
        recorded=False,
    )  # fmt: skip
    extrapolate: bool = option(
        True, Boolean(), "HALS on NMF: extrapolated (momentum) iterates.", cli=False,
        config=False, recorded=False,
    )  # fmt: skip


DEFAULTS = EngineOptions()
"""The default options (one instance; read ``DEFAULTS.max_iter`` etc.)."""


def engine_options(options: Any) -> EngineOptions:
    """The :class:`EngineOptions` part of any options object that has its fields."""
    if type(options) is EngineOptions:
        return options
    names = [f.name for f in dataclasses.fields(EngineOptions)]
    return EngineOptions(**{name: getattr(options, name) for name in names})


# --------------------------------------------------------------------------- ranks


def _check_integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _as_sequence(ranks: Any) -> list[Any]:
    if isinstance(ranks, (str, bytes)) or not (
        isinstance(ranks, Sequence) or type(ranks).__name__ == "ndarray"
    ):
        raise ParameterError(f"ranks must be a sequence of integers, got {ranks!r}")
    return list(ranks)


def check_rank(rank: Any, shape: tuple[int, int], init: str) -> int:
    """Check a single-layer rank against the shape of X (and the svd init)."""
    r = _check_integer("rank", rank)
    limit = min(shape)
    if not 1 <= r <= limit:
        raise ParameterError(f"rank must be between 1 and min(m, n) = {limit}, got {r}")
    if init == "svd" and r < 2:
        raise ParameterError(
            "rank must be >= 2 for init 'svd' (the Gillis-Kumar start builds r "
            f"non-negative coefficients from a rank-(r-1) SVD), got {r}"
        )
    return r


def check_ranks(
    ranks: Any,
    shape: tuple[int, int] | None = None,
    init: str | None = None,
    layers: int | None = None,
) -> tuple[int, ...]:
    """Check the ranks of a deep model and return them as a tuple of ints.

    Always: a non-empty sequence of non-increasing integers >= 1 (>= 2 for
    ``init="svd"``), as many as ``layers`` when given. With ``shape`` (m, n):
    ranks[0] <= min(m, n) and each deeper rank <= n as well.
    """
    values = _as_sequence(ranks)
    if not values:
        raise ParameterError("ranks must not be empty, got []")
    out = tuple(_check_integer(f"ranks[{i}]", v) for i, v in enumerate(values))
    if layers is not None and layers != len(out):
        raise ParameterError(f"layers must equal len(ranks) = {len(out)}, got {layers}")
    for i, r in enumerate(out):
        if i == 0:
            limit, rule = None, ""
            if shape is not None:
                limit, rule = min(shape), f"min(m, n) = {min(shape)}"
        else:
            if r > out[i - 1]:
                raise ParameterError(
                    f"ranks must be non-increasing, got ranks[{i}] = {r} > "
                    f"ranks[{i - 1}] = {out[i - 1]} in {list(out)}"
                )
            if shape is None:
                limit, rule = None, ""
            else:
                limit = min(out[i - 1], shape[1])
                rule = f"min(ranks[{i - 1}], n) = {limit}"
        if limit is None:
            if r < 1:
                raise ParameterError(f"ranks[{i}] must be at least 1, got {r}")
        elif not 1 <= r <= limit:
            raise ParameterError(f"ranks[{i}] must be between 1 and {rule}, got {r}")
        if init == "svd" and r < 2:
            raise ParameterError(
                f"ranks[{i}] must be >= 2 for init 'svd' (the Gillis-Kumar start builds r "
                f"non-negative coefficients from a rank-(r-1) SVD), got {r}"
            )
    return out
