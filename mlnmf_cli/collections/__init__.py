"""Collections: one multilayer dictionary learned over many images, applied to new ones.

Each image (or patch) is a column of X = pixels x images, so the features
W1, W1 W2, ... are images themselves (parts) and H holds each image's code.

From arrays::

    from mlnmf_cli.collections import learn, encode
    learned = learn(X, ranks=(49, 25, 9))        # X: pixels x images, >= 0
    codes = encode(learned, X_new, depth=3)      # NNLS with W1 W2 W3 held fixed

``learn`` takes every engine option of ``factorize_deep`` (method, solver,
init, fine_tune, seed, ...) plus ``dtype``; its result holds the engine's
deep model in ``.result`` (``Ws``, ``Hs``, ``reconstruct(depth)``,
``effective_features(depth)``). ``mlnmf_cli.collections.swimmer`` generates
the swimmer collection, a check with a known answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlnmf_cli.collections._shared import Options
from mlnmf_cli.collections.dictionary import Encoded, Learned, encode_matrix, learn_matrix

__all__ = ["Encoded", "Learned", "encode", "learn"]


def learn(X: Any, ranks: tuple[int, ...] | list[int], **options: Any) -> Learned:
    """Learn a multilayer dictionary over the columns of X (pixels x images)."""
    return learn_matrix(np.asarray(X), Options(ranks=tuple(ranks), **options))


def encode(model: Any, X: Any, depth: int | None = None, **kwargs: Any) -> Encoded:
    """Codes H >= 0 of the columns of X with W1 ... W_depth fixed (default: deepest).

    ``model`` is anything with ``Ws`` (a :class:`Learned`, the engine's deep
    result, a collection model read from disk) or the list W1 ... WL itself.
    """
    return encode_matrix(list(getattr(model, "Ws", model)), np.asarray(X), depth, **kwargs)
