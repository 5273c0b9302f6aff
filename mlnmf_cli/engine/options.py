"""Every option of a factorisation, declared once: name, default, rule and help text.

:class:`EngineOptions` is a frozen dataclass whose fields carry their rule (one
of the rule classes below) and their help text in ``field.metadata``. The
command line's options, ``compare --config`` keys, the report's
``parameters`` and the options saved with a model are all derived from these
fields (see :func:`option_fields`); nothing else restates a default.

Each error message names the parameter, the rule and the value it got; the
error (:class:`OptionError`, :class:`RankError`) also carries them as
attributes, so that a command line can say the same in its own words.
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

Callback = Callable[..., Any] | None
"""``callback(stage, iteration, error)`` after each iteration of a layer ("layer1",
..., "layerL") or of the joint fine-tuning ("fine-tune"); a True return stops that
stage. ``error`` is the stage's relative error (float).

A callback that takes a fourth argument (without a default, or ``*args``) is called as
``callback(stage, iteration, error, factors)``: ``factors()`` returns copies of the
current factors, ``(W, H)`` of the layer (its input is the previous layer's
coefficients) or, while fine-tuning, the whole :class:`~mlnmf_cli.engine.model.Model`;
they are at the engine's working scale (the data's, unless its magnitude is beyond
2**±16, see :func:`~mlnmf_cli.engine.factorize`). Nothing is copied unless it is called.
"""

Notify = Callable[[str, int, float, Callable[[], Any]], bool]
"""The engine's side of a callback: always four arguments (see :func:`notifier`)."""


def notifier(callback: Callback) -> Notify | None:
    """The user's ``callback`` as the engine calls it, with or without the factors."""
    if callback is None:
        return None
    import inspect

    try:
        params = list(inspect.signature(callback).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    # A fourth positional parameter without a default, or *args, asks for the factors.
    wants_factors = any(p.kind == p.VAR_POSITIONAL for p in params) or (
        len(positional) >= 4 and positional[3].default is inspect.Parameter.empty
    )
    if wants_factors:
        return lambda stage, it, err, factors: bool(callback(stage, it, err, factors))
    return lambda stage, it, err, factors: bool(callback(stage, it, err))


# --------------------------------------------------------------------------- errors


class OptionError(ParameterError):
    """An option broke its rule: ``option`` (the field name), the ``value`` it got and
    ``expected``, what would do (e.g. ``"one of nmf, semi"``)."""

    def __init__(
        self, message: str, *, option: str = "", value: Any = None, expected: str = ""
    ) -> None:
        super().__init__(message)
        self.option = option
        self.value = value
        self.expected = expected


class RankError(OptionError):
    """Ranks that do not work: ``reason`` is ``"order"`` (not non-increasing), ``"svd"``
    (a rank below 2 with ``init="svd"``), ``"size"`` (more than the matrix of ``shape``
    allows) or ``"value"`` (not positive integers); ``suggestion``: ranks like them that
    would pass (:func:`fitting_ranks`), None when there are none."""

    def __init__(
        self,
        message: str,
        *,
        ranks: Any = None,
        reason: str = "value",
        shape: tuple[int, int] | None = None,
        init: str | None = None,
        option: str = "ranks",
    ) -> None:
        super().__init__(message, option=option, value=ranks, expected=RANKS_EXPECTED)
        self.reason = reason
        self.shape = shape
        self.init = init
        self.limit = None if shape is None else min(shape)
        self.suggestion: tuple[int, ...] | None = None
        if reason != "value" and ranks is not None:
            self.suggestion = fitting_ranks(ranks, self.limit, init)


RANKS_EXPECTED = "a list of positive whole numbers separated by commas, e.g. 64,32,16"


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
            raise OptionError(
                f"{name} must be one of {allowed}, got {value!r}",
                option=name, value=value, expected=self.expected,
            )  # fmt: skip

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(self.options)


@dataclass(frozen=True)
class Integer:
    low: int
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < self.low:
            raise OptionError(
                f"{name} must be an integer >= {self.low}, got {value!r}",
                option=name, value=value, expected=self.expected,
            )  # fmt: skip

    @property
    def expected(self) -> str:
        return f"a whole number of at least {self.low}"


@dataclass(frozen=True)
class Real:
    low: float
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        rule = f"a finite number >= {self.low:g}" + (" or None" if self.optional else "")
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(float(value))
            or float(value) < self.low
        ):
            raise OptionError(
                f"{name} must be {rule}, got {value!r}",
                option=name, value=value, expected=self.expected,
            )  # fmt: skip

    @property
    def expected(self) -> str:
        return f"a finite number of at least {self.low:g}"


@dataclass(frozen=True)
class Boolean:
    def check(self, name: str, value: Any) -> None:
        numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
        if not isinstance(value, bool) and not numpy_bool:
            raise OptionError(
                f"{name} must be True or False, got {value!r}",
                option=name, value=value, expected=self.expected,
            )  # fmt: skip

    expected = "on or off"


@dataclass(frozen=True)
class Ranks:
    """A sequence of non-increasing positive ranks (the size limits need the data's shape)."""

    def check(self, name: str, value: Any) -> None:
        check_ranks(value)

    expected = RANKS_EXPECTED


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
    init: str = option(
        "nndsvda", Choice(INITS), "Initialisation (svd: the 2017 write-up's Semi-NMF start)."
    )
    fine_tune: bool = option(
        True,
        Boolean(),
        "Jointly fine-tune all layers after greedy training.",
        flag="--fine-tune/--no-fine-tune",
    )
    # 120 rounds (was 150), from the measured frontier (bench_engine.py --parts rounds:
    # camera, astronaut, coffee, chelsea, both dtypes): the deep model's time drops by
    # 14-17%; every depth stays within 1.040x greedy (1.037x at 150), the deepest error
    # rises by 0.04-0.8% (at most 1.084x scikit-learn's rank 16). 100 rounds (22-26%
    # less time) would cost up to 1.1% and lift camera's past tests/test_engine.py's
    # bound (1.04x a rank-16 NMF).
    fine_tune_iter: int = option(120, Integer(0), "Iterations of joint fine-tuning.")
    # 2 from the measured frontier (benchmarks/results/engine.json, "frontier"): the
    # largest weight that keeps every depth within 1.05x its greedy error.
    deep_weight: float = option(
        2.0,
        Real(0.0),
        "Fine-tuning: weight of the deepest model's error against the shallower depths' "
        "(larger favours the deepest, e.g. 100; 2 keeps every depth near its greedy error).",
    )
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
        "Iterations per layer at most (0: keep the initialisation, as the 2017 write-up's "
        "code did).",
    )
    tol: float = option(
        1e-5, Real(0.0), "Stop a layer when its relative improvement falls below this."
    )
    target_error: float | None = option(
        None, Real(0.0, optional=True), "Stop a layer as soon as its relative error reaches this."
    )
    seed: int = option(0, Integer(0), "Random seed; recorded in every report.")
    # Solver knobs: arguments with defaults, not offered on the command line nor recorded.
    # Gillis & Glineur's bound asks for up to 15 sweeps on wide matrices. Measured against
    # scikit-learn (benchmarks/bench_engine.py, same process), a cap of 8 instead of 6 reaches
    # its error 15-35% sooner on hubble (where 6 stops short of it), digits and coffee, 3-8%
    # later on faces and astronaut RGB; but the deep model's deepest error rises to 1.036-1.056x
    # a long rank-16 fit (from 1.019-1.041x): 6 stays.
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


def _check_integer(name: str, value: Any, ranks: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RankError(f"{name} must be an integer, got {value!r}", ranks=ranks)
    return int(value)


def _as_sequence(ranks: Any) -> list[Any]:
    if isinstance(ranks, (str, bytes)) or not (
        isinstance(ranks, Sequence) or type(ranks).__name__ == "ndarray"
    ):
        raise RankError(f"ranks must be a sequence of integers, got {ranks!r}", ranks=ranks)
    return list(ranks)


_SVD_REASON = "(the Gillis-Kumar start builds r non-negative coefficients from a rank-(r-1) SVD)"


def check_rank(rank: Any, shape: tuple[int, int], init: str) -> int:
    """Check a single-layer rank against the shape of X (and the svd init)."""
    r = _check_integer("rank", rank, [rank])
    limit = min(shape)
    if not 1 <= r <= limit:
        raise RankError(
            f"rank must be between 1 and min(m, n) = {limit}, got {r}",
            ranks=[r], reason="size" if r > limit else "value", shape=shape, init=init,
            option="rank",
        )  # fmt: skip
    if init == "svd" and r < 2:
        raise RankError(
            f"rank must be >= 2 for init 'svd' {_SVD_REASON}, got {r}",
            ranks=[r], reason="svd", shape=shape, init=init, option="rank",
        )  # fmt: skip
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
    ranks[0] <= min(m, n) and each deeper rank <= n as well. Raises
    :class:`RankError`.
    """
    values = _as_sequence(ranks)
    if not values:
        raise RankError("ranks must not be empty, got []", ranks=[])
    out = tuple(_check_integer(f"ranks[{i}]", v, values) for i, v in enumerate(values))
    if layers is not None and layers != len(out):
        raise OptionError(
            f"layers must equal len(ranks) = {len(out)}, got {layers}",
            option="layers", value=layers, expected=f"{len(out)}, one per rank",
        )  # fmt: skip

    def error(message: str, reason: str) -> RankError:
        return RankError(message, ranks=out, reason=reason, shape=shape, init=init)

    for i, r in enumerate(out):
        if i == 0:
            limit, rule = None, ""
            if shape is not None:
                limit, rule = min(shape), f"min(m, n) = {min(shape)}"
        else:
            if r > out[i - 1]:
                raise error(
                    f"ranks must be non-increasing, got ranks[{i}] = {r} > "
                    f"ranks[{i - 1}] = {out[i - 1]} in {list(out)}",
                    "order",
                )
            if shape is None:
                limit, rule = None, ""
            else:
                limit = min(out[i - 1], shape[1])
                rule = f"min(ranks[{i - 1}], n) = {limit}"
        if limit is None:
            if r < 1:
                raise error(f"ranks[{i}] must be at least 1, got {r}", "value")
        elif not 1 <= r <= limit:
            raise error(
                f"ranks[{i}] must be between 1 and {rule}, got {r}",
                "size" if r > limit else "value",
            )
        if init == "svd" and r < 2:
            raise error(f"ranks[{i}] must be >= 2 for init 'svd' {_SVD_REASON}, got {r}", "svd")
    return out


def fitting_ranks(
    ranks: Sequence[int], limit: int | None = None, init: str | None = None
) -> tuple[int, ...] | None:
    """Ranks like ``ranks`` that :func:`check_ranks` accepts for a matrix whose smaller side
    is ``limit``: sorted non-increasing, scaled down in proportion when the first is
    above ``limit`` (64,32,16 -> 8,4,2 for 8), at least 2 for ``init="svd"``.
    None when no ranks fit (``limit`` below the smallest rank allowed)."""
    low = 2 if init == "svd" else 1
    values = sorted((int(r) for r in ranks), reverse=True)
    if not values or (limit is not None and limit < low):
        return None
    if limit is not None and values[0] > limit:
        values = [r * limit // values[0] for r in values]
    return tuple(max(low, r) for r in values)
