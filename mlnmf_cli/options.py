"""The options of one decomposition: the engine's options plus what images need.

:class:`Options` extends :class:`~mlnmf_cli.engine.options.EngineOptions` with
the fields that are not the engine's (ranks, working dtype, colour channels,
pixel limit), declared the same way (default, rule, help text in one place).
Imports without NumPy, so that the command line can build its options from it.

The one place where the engine's errors about options are said in a user's
words: :func:`explain` names the option as the user spelled it (``--max-iter 5``
on the command line, ``max_iter=5`` in a ``compare --config``), the value, and
what would work; :func:`parse_value` reads an option's value from text.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from mlnmf_cli.engine.options import (
    Boolean,
    Choice,
    EngineOptions,
    Integer,
    OptionError,
    RankError,
    Ranks,
    Real,
    check_ranks,
    engine_options,
    option,
)
from mlnmf_cli.errors import ParameterError

DTYPES = ("float32", "float64")
CHANNEL_MODES = ("gray", "stack", "separate")
DEFAULT_RANKS = (64, 32, 16)


@dataclass(frozen=True)
class Options(EngineOptions):
    """Every choice that shapes a decomposition; recorded in each report and model."""

    ranks: tuple[int, ...] = option(
        DEFAULT_RANKS,
        Ranks(),
        "Rank of each layer, non-increasing (each at most the one before), e.g. 64,32,16. "
        "[default: 64,32,16]",
        cli=False,  # parsed with --layers by the command line
    )
    dtype: str = option("float32", Choice(DTYPES), "Working precision.")
    channels: str | None = option(
        None,
        Choice(CHANNEL_MODES, optional=True),
        "Colour images: gray (luminance), stack (R,G,B side by side, shared features), "
        "separate (one model per channel). [default: stack]",
    )
    max_pixels: int | None = option(
        None,
        Integer(1, optional=True),
        "Refuse images with more pixels than this. [default: Pillow's limit, 89478485]",
        config=False,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # The rank limits that depend on an image's size are checked per image.
        object.__setattr__(self, "ranks", check_ranks(self.ranks, init=self.init))

    @property
    def engine(self) -> EngineOptions:
        """The engine's part of these options."""
        return engine_options(self)

    def channels_for(self, image: Any) -> str:
        """The channel mode for a loaded image (``stack`` for colour when not chosen)."""
        if self.channels is not None:
            return self.channels
        return "stack" if image.is_color else "gray"

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        return {"ranks": d.pop("ranks"), **d}

    def check_fits(
        self,
        shape: tuple[int, int],
        image_size: tuple[int, int] | None = None,
        style: Style = "flag",
        where: str | None = None,
    ) -> None:
        """Raise :class:`ParameterError`, in the words of ``style``, unless the ranks fit a
        matrix of ``shape``: that of an image of ``image_size`` when given; ``where``
        names what the user knows it as (default ``"the 8x8 image"``)."""
        try:
            check_ranks(self.ranks, shape, self.init)
        except RankError as exc:
            where = where or matrix_text(shape, image_size)
            raise ParameterError(explain(exc, style, fitted=where)) from None


# --------------------------------------------------------------------------- in the user's words

Style = Literal["flag", "config"]
"""How the user spelled an option: ``--max-iter 5`` (``flag``) or ``max_iter=5`` (``config``)."""

FIELDS = {f.name: f for f in dataclasses.fields(Options)}
_TRUE = frozenset({"on", "true", "yes", "1"})
_FALSE = frozenset({"off", "false", "no", "0"})


def flag(name: str) -> str:
    """The command-line option of field ``name``: ``--max-iter``; ``--fine-tune`` for
    ``--fine-tune/--no-fine-tune``; ``--ranks`` for the engine's ``rank`` too."""
    name = "ranks" if name == "rank" else name
    f = FIELDS.get(name)
    declared = f.metadata["flag"] if f is not None else None
    return (declared or "--" + name.replace("_", "-")).split("/")[0]


def value_text(value: Any) -> str:
    """An option's value as a ``--config`` (and mostly the command line) spells it."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def spell(name: str, value: Any, style: Style = "flag") -> str:
    """Option ``name`` set to ``value`` as the user would write it."""
    name = "ranks" if name == "rank" else name
    text = value_text(value)
    if style == "config":
        return f"{name}={text}"
    if isinstance(value, bool):
        return flag(name) if value else flag(name).replace("--", "--no-", 1)
    return f"{flag(name)} {quoted(text)}"


def quoted(text: Any) -> str:
    """A value as shown in a message: numbers (and lists of them) as they are, other
    text quoted (``'rgb'``)."""
    text = value_text(text)
    return text if all(map(_is_number, text.split(","))) else repr(text)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def matrix_text(
    shape: tuple[int, int], image_size: tuple[int, int] | None = None, noun: str = "image"
) -> str:
    """``"the 8x8 image"``, or ``"the 16x16 image (decomposed as 16x48)"``."""
    matrix = f"{shape[0]}x{shape[1]}"
    if image_size is None:
        return f"the {matrix} matrix"
    image = f"{image_size[0]}x{image_size[1]}"
    return f"the {image} {noun}" + ("" if image == matrix else f" (decomposed as {matrix})")


def explain(exc: ParameterError, style: Style = "flag", fitted: str | None = None) -> str:
    """The message of an option's error in the user's words: the option as they spelled
    it, its value, and what would work. ``fitted``: what the ranks did not fit
    (e.g. ``"the 8x8 image"``). Other errors keep their message."""
    if isinstance(exc, RankError) and exc.reason != "value":
        ranks = spell("ranks", exc.value, style)
        tip = "" if exc.suggestion is None else f" (try {spell('ranks', exc.suggestion, style)})"
        if exc.reason == "order":
            return f"{ranks} must be non-increasing, each rank at most the one before it{tip}"
        if exc.reason == "svd":
            init = spell("init", "svd", style).replace("'", "")
            return f"{ranks} has a rank below 2, which {init} cannot start from{tip}"
        assert exc.shape is not None
        where = fitted or matrix_text(exc.shape)
        return f"{ranks} does not fit {where}: every rank must be at most {exc.limit}{tip}"
    if isinstance(exc, OptionError) and exc.option:
        return f"{spell(exc.option, exc.value, style)} is not {exc.expected}"
    return str(exc)


def parse_value(name: str, text: Any, style: Style = "flag") -> Any:
    """``text`` read as the value of option ``name`` and checked by its rule (a value
    that is not text is only checked). Raises :class:`ParameterError` in the words
    of ``style``. Booleans read on/off/true/false/yes/no/1/0; an optional option
    reads ``none`` (and a choice ``auto``) as None."""
    rule = FIELDS[name].metadata["rule"]
    if isinstance(text, str):
        value = _read(rule, text.strip())
        if value is _BAD:
            raise ParameterError(f"{spell(name, text, style)} is not {rule.expected}")
    else:
        value = text
    try:
        rule.check(name, value)
    except OptionError as exc:
        if isinstance(text, str) and exc.option == name:
            exc.value = text.strip()  # as the user wrote it
        raise ParameterError(explain(exc, style)) from None
    return value


_BAD = object()


def _read(rule: Any, text: str) -> Any:
    low = text.lower()
    if getattr(rule, "optional", False) and (
        low == "none" or (isinstance(rule, Choice) and low == "auto")
    ):
        return None
    try:
        if isinstance(rule, Ranks):
            return tuple(int(p) for p in text.split(","))
        if isinstance(rule, Integer):
            return int(text)
        if isinstance(rule, Real):
            number = float(text)
            return number if math.isfinite(number) else _BAD
    except ValueError:
        return _BAD
    if isinstance(rule, Boolean):
        return True if low in _TRUE else False if low in _FALSE else _BAD
    return text
