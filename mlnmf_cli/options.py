"""The options of one decomposition: the engine's options plus what images need.

:class:`Options` extends :class:`~mlnmf_cli.engine.options.EngineOptions` with
the fields that are not the engine's (ranks, working dtype, colour channels,
pixel limit), declared the same way (default, rule, help text in one place).
Imports without NumPy, so that the command line can build its options from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlnmf_cli.engine.options import (
    Choice,
    EngineOptions,
    Integer,
    Ranks,
    check_ranks,
    engine_options,
    option,
)

DTYPES = ("float32", "float64")
CHANNEL_MODES = ("gray", "stack", "separate")
DEFAULT_RANKS = (64, 32, 16)


@dataclass(frozen=True)
class Options(EngineOptions):
    """Every choice that shapes a decomposition; recorded in each report and model."""

    ranks: tuple[int, ...] = option(
        DEFAULT_RANKS,
        Ranks(),
        "Rank of each layer, decreasing, e.g. 64,32,16. [default: 64,32,16]",
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
