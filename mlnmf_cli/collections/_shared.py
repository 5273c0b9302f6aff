"""What collections reuse from the rest of the package, imported in this one place:
the options, the engine's entry point, the batch's input expansion, the
experiments' resizing and the single-image report's per-depth numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mlnmf_cli import engine
from mlnmf_cli.batch.inputs import expand_inputs
from mlnmf_cli.experiments.config import parse_size
from mlnmf_cli.experiments.subjects import resize_image
from mlnmf_cli.options import Options
from mlnmf_cli.pipeline import Decomposition, pixel_errors

__all__ = [
    "Options",
    "depth_rows",
    "expand_inputs",
    "factorize_deep",
    "parse_size",
    "pixel_errors",
    "resize_image",
]


def factorize_deep(
    X: np.ndarray, options: Options, callback: Callable[[str, int, float], Any] | None
) -> Any:
    """The one engine call: X in the working dtype, the engine's deep model out."""
    return engine.factorize_deep(
        X.astype(np.dtype(options.dtype), copy=False),
        options.ranks,
        options=options.engine,
        callback=callback,
    )


def depth_rows(X: np.ndarray, options: Options, result: Any) -> list[dict[str, Any]]:
    """Per depth: rank, relative error, PSNR, greedy error and the rank's SVD floor.

    The single-image report's numbers apply as they are to a collection's matrix
    (one grey "image" whose columns are the images): computed by the same code.
    """
    d = Decomposition(image=None, options=options, channels="gray", target=X, parts=[result])  # type: ignore[arg-type]
    return list(d.depth_rows())


def layer_rows(X: np.ndarray, options: Options, result: Any) -> list[dict[str, Any]]:
    """Per layer: rank, the layer's own error, iterations, convergence, sparsity."""
    d = Decomposition(image=None, options=options, channels="gray", target=X, parts=[result])  # type: ignore[arg-type]
    return d.layer_stats()
