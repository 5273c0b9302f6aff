"""benchmarks/tables.py (`make tables`): marked regions are re-rendered from results, and
nothing else is touched; a renderer survives results of another schema."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import tables  # noqa: E402

ENGINE = {
    "engine": {
        "single_layer": [
            {"matrix": "grey 8x8", "rank": 2, "dtype": "float32", "sklearn_seconds": 1.0,
             "mlnmf_seconds": 0.25, "mlnmf_n_iter": 7, "ratio": 0.25, "per_iter_ratio": 1.5,
             "plain_hals_iter_ratio": 1.25}
        ],
        "deep": [
            {"image": "grey", "shape": [8, 8], "ranks": [4, 2], "greedy_errors": [0.1, 0.3],
             "fine_tuned_errors": [0.2, 0.25], "svd_floors": [0.05, 0.2]}
        ],
    }
}  # fmt: skip


def test_only_the_marked_region_changes() -> None:
    text = "before 1.23\n<!-- table:engine-speed -->\nold | table\n<!-- /table -->\nafter 4.56\n"
    new = tables.render_text(text, ENGINE)
    assert new.startswith("before 1.23\n<!-- table:engine-speed -->\n| matrix |")
    assert new.endswith("<!-- /table -->\nafter 4.56\n")
    assert "| grey 8x8 | 2 | float32 | 1.000 s | 0.250 s (7 it) | 0.25 | 1.50x | 1.25x |" in new
    assert "old | table" not in new
    assert tables.render_text(new, ENGINE) == new  # a second run changes nothing


def test_fine_tuning_sentence_follows_the_data() -> None:
    text = tables.RENDERERS["engine-deep-summary"](ENGINE)
    assert "the error at depth 1 rises and at depth 2 it falls" in text


def test_missing_and_malformed_results_render_dashes() -> None:
    broken = {"engine": {"single_layer": [{"matrix": "m", "ratio": "fast"}], "deep": 3}}
    for results in ({}, broken, {"engine": [], "batch": "x", "cli": None, "experiments": 1}):
        for name, render in tables.RENDERERS.items():
            assert isinstance(render(results), str), name
    row = tables.RENDERERS["engine-speed"](broken).splitlines()[2]
    assert row == "| m | — | — | — | — (— it) | — | — | — |"


def test_an_unknown_table_name_is_one_clear_error() -> None:
    with pytest.raises(SystemExit, match=r"x.md: no renderer for <!-- table:nope -->"):
        tables.render_text("<!-- table:nope -->\n<!-- /table -->\n", {}, "x.md")


def _mutate(x: object, rng: random.Random) -> object:
    """Drop about a tenth of the keys and items and swap leaves for values of other types."""
    if isinstance(x, dict):
        return {k: _mutate(v, rng) for k, v in x.items() if rng.random() > 0.1}
    if isinstance(x, list):
        return [_mutate(v, rng) for v in x if rng.random() > 0.1]
    return rng.choice([x, x, None, "s", 1, [1], {"a": 1}, True])


def test_renderers_survive_results_of_another_schema() -> None:
    results = tables.load_results()
    assert results, "benchmarks/results/*.json are part of the repository"
    for seed in range(60):
        changed = _mutate(results, random.Random(seed))
        for name, render in tables.RENDERERS.items():
            assert isinstance(render(changed), str), (seed, name)  # type: ignore[arg-type]
