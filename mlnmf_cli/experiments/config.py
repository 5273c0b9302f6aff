"""Configurations of an experiment: ``"ranks=64,32,16 method=nmf fine_tune=on"`` -> options.

The keys, their types and their rules come from the option declarations
(:class:`mlnmf_cli.options.Options`); nothing here restates a default. Imports
without NumPy (the command line reads the constants here to build its options).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from mlnmf_cli.engine.options import option_fields
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.options import Options, explain, parse_value, value_text

KINDS = ("features", "coefficients")
MEASURES = ("subspace", "matched")
DISTRIBUTIONS = ("uniform", "normal", "binary")
_FIELDS = {f.name: f for f in option_fields(Options, "config")}
CONFIG_KEYS = tuple(sorted(_FIELDS, key=lambda name: name != "ranks"))
"""The ``--config`` keys: every option that shapes a decomposition (ranks first)."""

#: The setup of the 2017 write-up's code (the "seed" of this project) (its ``appr_seminmf``: the SVD-based Semi-NMF start with
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
MAX_NULL_DRAWS = 10_000
"""More draws than this would take hours and then memory: refused as usage."""


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    """One column of the grid: a label the user recognises and the options it stands for."""

    label: str
    options: Options


class ConfigError(ParameterError):
    """A ``--config`` that cannot be read: ``spec`` as given and the ``problem`` with it."""

    def __init__(self, spec: str, problem: str = "") -> None:
        super().__init__(f"configuration {spec!r}: {problem}" if problem else spec)
        self.spec = spec
        self.problem = problem


def parse_config(spec: str, base: Options | None = None) -> Config:
    """``"ranks=64,32,16 method=nmf fine_tune=on"`` -> a :class:`Config`.

    Keys are :class:`~mlnmf_cli.options.Options` field names (``-`` may stand
    for ``_``); values are read by :func:`mlnmf_cli.options.parse_value`
    (booleans on/off/true/false/yes/no/1/0; ``target_error`` and ``channels``
    accept ``none``). Raises :class:`ConfigError` naming the key or value at
    fault, as the configuration spells it (``method=magic is not one of nmf, semi``).
    """
    base = Options() if base is None else base
    changes: dict[str, Any] = {}
    for token in spec.split():
        key, sep, value = token.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(spec, f"expected key=value, got {token!r}")
        if key not in CONFIG_KEYS:
            raise ConfigError(spec, f"unknown key {key!r} (allowed: {', '.join(CONFIG_KEYS)})")
        if key in changes:  # the last would win without a word
            raise ConfigError(spec, f"{key} is given twice (keep one)")
        try:
            changes[key] = parse_value(key, value, "config")
        except ParameterError as exc:
            raise ConfigError(spec, str(exc)) from None
    try:
        options = replace(base, **changes)
    except ParameterError as exc:
        raise ConfigError(spec, explain(exc, "config")) from None
    label = " ".join(spec.split()) or "defaults"
    return Config(label, options)


def like_seed_config(ranks: Sequence[int]) -> Config:
    """The 2017 write-up's setup (see :data:`LIKE_SEED`) with the given ranks."""
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
        raise ParameterError(f"{text!r} is not HEIGHTxWIDTH, e.g. 128x128") from None
    if height < 1 or width < 1:
        raise ParameterError(f"{text} is not HEIGHTxWIDTH of at least 1x1, e.g. 128x128")
    return height, width


def check_fits(configs: Sequence[Config], shape: tuple[int, int], where: str) -> None:
    """Raise :class:`ConfigError` unless every configuration's ranks fit a matrix of
    ``shape``; ``where`` names it for the user (``"the 8x8 images"``)."""
    for config in configs:
        try:
            config.options.check_fits(shape, style="config", where=where)
        except ParameterError as exc:
            raise ConfigError(config.label, str(exc)) from None
