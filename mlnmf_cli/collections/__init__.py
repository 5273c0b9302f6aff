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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlnmf_cli.collections.dictionary import Encoded, Learned

__all__ = ["LEARN_DEFAULTS", "Encoded", "Learned", "encode", "learn"]

# Where learning a collection's dictionary defaults differently from decompose, and why.
# init "nndsvd" (zeros kept) instead of "nndsvda" (zeros filled with the mean): on the
# swimmer, whose rank (13) is below its 17 parts, the filled start more often leads the
# extrapolated HALS to another exact factorisation: the 16 limb positions were recovered
# in 10 of 20 runs (10 seeds x 2 dtypes) from the plain start and 5 of 20 from the filled
# one (scikit-learn's NNDSVDa + CD: 13 of 20). On lfw faces (ranks 40,20,10) the two fit
# alike (21.91% vs 21.78%), digits too.
# deep_weight 4 instead of 2: a dictionary is judged by its deepest codes (issue 13's
# target: lfw faces at ranks 40,20,10 within 1.02x scikit-learn's rank-10 NMF). Measured
# on that matrix (deepest / scikit-learn rank 10; depth 1 / its greedy error): weight 2
# 1.041x / 1.009x, 4 1.018x / 1.024x, 8 1.011x / 1.050x, 100 1.004x / 1.121x: 4 is the
# smallest that meets the target and keeps depth 1 within 1.05x of its greedy error.
# dtype float64 instead of float32: collections are small matrices (a few hundred to a few
# thousand pixels a column), where float64 costs little, and it does a little better on
# both measured cases: rank 17 on the swimmer recovered every limb in 9 of 10 seeds in
# float64 against 8 of 10 in float32 (1 of 10 before the NNDSVD start left the
# components beyond the data's rank at zero instead of rounding noise); lfw faces
# 40,20,10: 1.015x scikit-learn's rank 10 in float64, 1.018x in float32.
# benchmarks/bench_collections.py measures both. No NumPy here: the CLI reads it at import.
LEARN_DEFAULTS: dict[str, Any] = {"init": "nndsvd", "deep_weight": 4.0, "dtype": "float64"}


def learn(X: Any, ranks: tuple[int, ...] | list[int], **options: Any) -> Learned:
    """Learn a multilayer dictionary over the columns of X (pixels x images).

    ``options`` are the engine's (method, solver, init, fine_tune, seed, ...) and
    ``dtype``; :data:`LEARN_DEFAULTS` fills those not given.
    """
    import numpy as np

    from mlnmf_cli.collections._shared import Options
    from mlnmf_cli.collections.dictionary import learn_matrix

    return learn_matrix(np.asarray(X), Options(ranks=tuple(ranks), **{**LEARN_DEFAULTS, **options}))


def encode(model: Any, X: Any, depth: int | None = None, **kwargs: Any) -> Encoded:
    """Codes H >= 0 of the columns of X with W1 ... W_depth fixed (default: deepest).

    ``model`` is anything with ``Ws`` (a :class:`Learned`, the engine's deep
    result, a collection model read from disk) or the list W1 ... WL itself.
    """
    import numpy as np

    from mlnmf_cli.collections.dictionary import encode_matrix

    return encode_matrix(list(getattr(model, "Ws", model)), np.asarray(X), depth, **kwargs)


def __getattr__(name: str) -> Any:
    if name in ("Encoded", "Learned"):
        from mlnmf_cli.collections import dictionary

        return getattr(dictionary, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
