"""Configurations of an experiment: ``"ranks=64,32,16 method=nmf fine_tune=on"`` -> options.

The keys, their types and their rules come from the option declarations
(:class:`mlnmf_cli.options.Options`); nothing here restates a default. Imports
without NumPy (the command line reads the constants here to build its options).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from mlnmf_cli.engine.options import Boolean, Choice, Integer, Ranks, Real, option_fields
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.options import Options

KINDS = ("features", "coefficients")
MEASURES = ("subspace", "matched")
DISTRIBUTIONS = ("uniform", "normal", "binary")
_FIELDS = {f.name: f for f in option_fields(Options, "config")}
CONFIG_KEYS = tuple(sorted(_FIELDS, key=lambda name: name != "ranks"))
"""The ``--config`` keys: every option that shapes a decomposition (ranks first)."""
_TRUE = frozenset({"on", "true", "yes", "1"})
_FALSE = frozenset({"off", "false", "no", "0"})

#: The seed's own setup (its ``appr_seminmf``: the SVD-based Semi-NMF start with
#: no iteration after it, layers stacked greedily with no normalisation and no
#: joint fine-tuning). Its code
#: factors each colour channel on its own (``channels=separate``) with rank
#: 100 and then ``min(shape) - 20`` = 80 for the second layer; its random-pixel
#: experiment is one layer of rank 80 on a 100 x 100 image of uniform noise.
LIKE_SEED: dict[str, Any] = {
    "method": "semi",
    "init": "svd",
    "max_iter": 0,
    "normalize": False,
    "refit": False,
    "fine_tune": False,
    "channels": "separate",
}
LIKE_SEED_IMAGE_RANKS = (100, 80)
LIKE_SEED_RANDOM_RANKS = (80,)
LIKE_SEED_RANDOM_SIZE = (100, 100)

DEFAULT_NULL_DRAWS = 20


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    """One column of the grid: a label the user recognises and the options it stands for."""

    label: str
    options: Options


def parse_config(spec: str, base: Options | None = None) -> Config:
    """``"ranks=64,32,16 method=nmf fine_tune=on"`` -> a :class:`Config`.

    Keys are :class:`~mlnmf_cli.options.Options` field names (``-`` may stand
    for ``_``); booleans accept on/off/true/false/yes/no/1/0; ``target_error``
    and ``channels`` accept ``none``. Raises :class:`ParameterError` naming the
    key or value at fault.
    """
    base = Options() if base is None else base
    changes: dict[str, Any] = {}
    for token in spec.split():
        key, sep, value = token.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ParameterError(f"configuration {spec!r}: expected key=value, got {token!r}")
        if key not in CONFIG_KEYS:
            raise ParameterError(
                f"configuration {spec!r}: unknown key {key!r} (allowed: {', '.join(CONFIG_KEYS)})"
            )
        changes[key] = _config_value(spec, key, value)
    try:
        options = replace(base, **changes)
    except ParameterError as exc:
        raise ParameterError(f"configuration {spec!r}: {exc}") from None
    label = " ".join(spec.split()) or "defaults"
    return Config(label, options)


def _config_value(spec: str, key: str, value: str) -> Any:
    """``value`` read as the type of option ``key`` (its rule says which)."""

    def bad(rule: str) -> ParameterError:
        return ParameterError(f"configuration {spec!r}: {key} must be {rule}, got {value!r}")

    low = value.strip().lower()
    rule = _FIELDS[key].metadata["rule"]
    if isinstance(rule, Ranks):
        try:
            ranks = tuple(int(p) for p in value.split(","))
        except ValueError:
            raise bad("whole numbers separated by commas") from None
        if not ranks or min(ranks) < 1:
            raise bad("whole numbers of at least 1 separated by commas")
        return ranks
    if isinstance(rule, Boolean):
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise bad("on/off/true/false")
    if getattr(rule, "optional", False) and (
        low == "none" or (isinstance(rule, Choice) and low == "auto")
    ):
        return None
    if isinstance(rule, Integer):
        try:
            return int(value)
        except ValueError:
            raise bad("a whole number") from None
    if isinstance(rule, Real):
        try:
            number = float(value)
        except ValueError:
            raise bad("a number") from None
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    return value


def like_seed_config(ranks: Sequence[int]) -> Config:
    """The seed's setup (see :data:`LIKE_SEED`) with the given ranks."""
    options = replace(Options(), ranks=tuple(ranks), **LIKE_SEED)
    settings = " ".join(f"{k}={value_text(v)}" for k, v in LIKE_SEED.items())
    spec = f"like-seed: ranks={','.join(map(str, ranks))} {settings}"
    return Config(spec, options)


def parse_size(text: str) -> tuple[int, int]:
    """``"128x96"`` -> ``(128, 96)`` (height, width)."""
    pieces = text.lower().replace("\u00d7", "x").split("x")
    try:
        height, width = (int(p) for p in pieces)
    except ValueError:
        raise ParameterError(f"size must be HEIGHTxWIDTH, e.g. 128x128, got {text!r}") from None
    if height < 1 or width < 1:
        raise ParameterError(f"size must be at least 1x1, got {text!r}")
    return height, width


def value_text(value: Any) -> str:
    """An option's value as a ``--config`` would spell it."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
