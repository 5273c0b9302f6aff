"""The seed's equivariance experiments as measurements: ``compare`` and ``random-test``.

The seed write-up claims, from pictures, that the *features* of different
images (even of random pixels) look alike while the *coefficients* differ.
Here that becomes numbers: every input is decomposed with every
configuration (through :func:`mlnmf_cli.pipeline.decompose_image`, the code
``decompose`` runs), and for each configuration and depth the effective
features ``W1...Wl`` and the coefficients ``Hl`` of every pair of inputs are
compared with a measure that ignores component order and scale. Every
similarity comes with two baselines computed the same way:

* the **null** baseline: the same statistic on independent random
  non-negative matrices of the same shapes (what "alike" means by chance);
* the **self** baseline: the same input decomposed again from a random start
  (``init=random``, seed + 1, and iterations even where the configuration
  runs none): how alike two decompositions of *one* image are.
  Another seed alone would not do: the SVD-based starts are deterministic (or
  nearly), so it would often print a meaningless 1.

Nothing here prints; functions return data and the command line renders it.

The package, one module per concern: ``config`` (``--config`` specs and the
seed's setup), ``subjects`` (inputs), ``runs`` (the grid), ``comparison``
(similarity matrices, baselines, :func:`compare`), ``statistics`` (intervals and the
verdict), ``outputs`` (files and montages), ``random_images`` (``random-test``).
Names are loaded on first use, so that the command line can read the constants
in ``config`` without NumPy.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "config": (
        "CONFIG_KEYS", "DEFAULT_NULL_DRAWS", "DISTRIBUTIONS", "KINDS", "LIKE_SEED",
        "LIKE_SEED_IMAGE_RANKS", "LIKE_SEED_RANDOM_RANKS", "LIKE_SEED_RANDOM_SIZE", "MEASURES",
        "Config", "like_seed_config", "parse_config", "parse_size", "value_text",
    ),
    "subjects": (
        "Subject", "check_shapes", "check_size", "is_model_input", "load_subjects", "model_mismatch",
        "resize_image",
    ),
    "runs": ("Factors", "Run", "Step", "run_grid", "top_column_share"),
    "comparison": (
        "CSV_FIELDS", "CompareResult", "chance_corrected", "compare", "compare_runs",
        "null_draws", "off_diagonal", "part_similarity", "similarity", "similarity_matrix",
        "summarise",
    ),
    "statistics": (
        "EQUAL_MARGIN", "interval_text", "mean_interval", "point_stats", "pooled_stats",
        "similarity_rows", "stats_over_repeats", "verdict", "verdicts",
    ),
    "outputs": (
        "RUN_FIELDS", "depths_of", "montage", "planned_files", "prepare_output",
        "refuse_existing_files", "write_outputs",
    ),
    "random_images": (
        "RandomTest", "random_image_names", "random_pixels", "random_test", "random_test_files",
        "write_random_test",
    ),
}  # fmt: skip
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"mlnmf_cli.experiments.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'mlnmf_cli.experiments' has no attribute {name!r}")


__all__ = sorted(_WHERE)
