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
        "targets": {"ratio_photo": 0.25, "per_iter_512": 3.0, "deep_time": 1.5,
                    "deep_vs_single": 1.01, "depth_vs_greedy": 1.05},
        "defaults": {"max_sweeps": 6, "deep_weight": 2.0, "middle_weight": 0.25},
        "single_layer": [
            {"matrix": "grey 8x8", "kind": "photo", "tuned_on": False, "rank": 2,
             "dtype": "float32", "sklearn_seconds": 1.0, "mlnmf_seconds": 0.25,
             "mlnmf_n_iter": 7, "reached": True, "ratio": 0.25, "ratio_target": 0.25,
             "ratio_met": True, "seeds": 5, "reached_seeds": 4, "sklearn_error": 0.1,
             "sklearn_error_range": [0.09, 0.11]},
            {"matrix": "grey 8x8", "kind": "photo", "tuned_on": False, "rank": 2,
             "dtype": "float64", "sklearn_seconds": 1.0, "mlnmf_seconds": None,
             "mlnmf_n_iter": 9, "reached": False, "sklearn_error": 0.1, "mlnmf_error": 0.2,
             "ratio": 0.5, "ratio_target": 0.25, "ratio_met": False, "seeds": 5,
             "reached_seeds": 2},
        ],
        "deep": [
            {"image": "grey", "dtype": "float32", "ranks": [4, 2],
             "full_greedy_errors": [0.1, 0.3], "fine_tuned_errors": [0.102, 0.25],
             "depth_over_full_greedy": [1.02, 0.8333], "svd_floors": [0.05, 0.2],
             "depth_met": True, "deepest_over_sklearn_rank16": 1.02, "deepest_met": False,
             "no_dead_met": True, "time_ratio": 1.2, "time_met": True},
        ],
        "frontier": {
            "by_weight": [
                {"middle_weight": 0.25, "deep_weight": 2.0, "worst_shallow_ratio": 1.03,
                 "worst_deepest_over_sklearn_rank16": 1.08},
                {"middle_weight": 0.25, "deep_weight": 4.0, "worst_shallow_ratio": 1.06,
                 "worst_deepest_over_sklearn_rank16": 1.06},
                {"middle_weight": 0.25, "deep_weight": "inf", "worst_shallow_ratio": 2.5,
                 "worst_deepest_over_sklearn_rank16": 1.005, "runs_with_dead_components": 1,
                 "runs": 4},
            ]
        },
    }
}  # fmt: skip


def test_only_the_marked_region_changes() -> None:
    text = "before 1.23\n<!-- table:engine-speed -->\nold | table\n<!-- /table -->\nafter 4.56\n"
    new = tables.render_text(text, ENGINE)
    assert new.startswith("before 1.23\n<!-- table:engine-speed -->\n| matrix |")
    assert new.endswith("<!-- /table -->\nafter 4.56\n")
    assert (
        "| grey 8x8 | no | 2 | float32 | 1.000 s | 0.1000 (0.0900-0.1100) | "
        "0.250 s (7 it), 4/5 seeds | 0.250 | 0.25 | yes |" in new
    )
    assert "old | table" not in new
    assert tables.render_text(new, ENGINE) == new  # a second run changes nothing


def test_a_run_short_of_the_reference_error_is_said_and_counts_as_not_met() -> None:
    table = tables.RENDERERS["engine-speed"](ENGINE)
    assert "| 3 of 5 seeds stopped at 0.2000 > 0.1000 (median) | 0.500 | 0.25 | no |" in table
    text = tables.RENDERERS["engine-speed-summary"](ENGINE)
    assert "Photos: 1 of 2 runs reach" in text
    assert "is not met, worst 0.50 (grey 8x8 float64)" in text
    assert (
        "Seeds that stopped short of the error (counted as infinitely slow): "
        "grey 8x8 float32 (1 of 5) and grey 8x8 float64 (3 of 5)." in text
    )
    assert (
        "Stopped short of scikit-learn's error (counted as not met): grey 8x8 (1 of 2 runs)" in text
    )


def test_targets_are_met_only_when_every_run_meets_them() -> None:
    met = tables.RENDERERS["engine-deep-summary"](ENGINE)
    assert "Every depth within 1.05x its greedy error" in met
    assert "in 1 of 1 runs, met, worst 1.020x at depth 1 (grey float32)" in met
    assert "the 1.01x target is met in 0 of 1 runs, not met" in met
    assert "at depth 1 in 0 of 1 and depth 2 in 1 of 1 runs" in met
    time = tables.RENDERERS["engine-deep-time"](ENGINE)
    assert "1 of 1 runs, met." in time


def test_the_default_weights_are_checked_against_the_frontier() -> None:
    text = tables.RENDERERS["engine-frontier"](ENGINE)
    assert "| 0.25 | 2 (default) | 1.030x |" in text
    assert (
        "every shallower depth within 1.05x in every run is 2; the default deep weight is 2, that one."
        in text
    )
    assert "reach 2.50x its greedy error and leaves a dead component in 1 of 4 runs" in text
    other = {
        "engine": {**ENGINE["engine"], "defaults": {"deep_weight": 4.0, "middle_weight": 0.25}}
    }
    text = tables.RENDERERS["engine-frontier"](other)
    assert "| 0.25 | 4 (default) |" in text and "the default deep weight is 4." in text


def test_missing_and_malformed_results_render_dashes() -> None:
    broken = {"engine": {"single_layer": [{"matrix": "m", "ratio": "fast"}], "deep": 3}}
    for results in ({}, broken, {"engine": [], "batch": "x", "cli": None, "experiments": 1}):
        for name, render in tables.RENDERERS.items():
            assert isinstance(render(results), str), name
    row = tables.RENDERERS["engine-speed"](broken).splitlines()[2]
    assert row == "| m | — | — | — | — | — | — (— it) | — | — | — |"


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


LIKE_SEED = {
    "like_seed": {
        "cases": [
            {"case": "grey", "runs": 4, "depths": [
                {"depth": 1, "ours_inside_writeup_range": 4,
                 "writeup": {"median": 0.1}, "ours": {"median": 0.1}},
                {"depth": 2, "ours_inside_writeup_range": 3,
                 "writeup": {"min": 0.2, "median": 0.3, "max": 0.4},
                 "ours": {"min": 0.25, "median": 0.35, "max": 0.45}},
            ]},
            {"case": "colour", "runs": 4, "depths": [
                {"depth": 2, "ours_inside_writeup_range": 1,
                 "writeup": {"median": 0.3}, "ours": {"median": 0.2}},
            ]},
        ]
    }
}  # fmt: skip


def test_like_seed_counts_only_the_depths_with_ties() -> None:
    text = tables.RENDERERS["like-seed-summary"](LIKE_SEED)
    assert text.startswith("Beyond depth 1, 4 of 8 of our like-seed errors fall inside")
    assert "(grey 3 of 4; colour 1 of 4); our median is above the write-up's in 1 of 2 rows" in text
    table = tables.RENDERERS["like-seed-spread"](LIKE_SEED)
    assert (
        "| grey | — | 2 | — | 0.2000 / 0.3000 / 0.4000 | 0.2500 / 0.3500 / 0.4500 | 3 of 4 |"
        in table
    )


def _random_entry(depth: int, kind: str, low: float, high: float) -> dict[str, object]:
    return {"config": "defaults", "depth": depth, "kind": kind,
            "corrected": {"mean": (low + high) / 2, "low": low, "high": high},
            "null": {"mean": 0.5}, "control": {"mean": 0.503}}  # fmt: skip


def test_an_interval_off_zero_is_named_with_its_side() -> None:
    results = {
        "experiments": {
            "repeats": 10,
            "random": {"summary": [_random_entry(1, "features", -0.01, 0.01),
                                   _random_entry(3, "features", -0.02, -0.01)]},
            "random_like_seed": {"summary": [_random_entry(1, "coefficients", 0.01, 0.03)]},
        }
    }  # fmt: skip
    text = tables.RENDERERS["experiments-random-claim"](results)
    assert "above chance lies between -0.015 and 0.020 (3 numbers" in text
    assert "1 of 3 95% intervals contain 0" in text
    assert "ours, depth 3 features, -0.015 [-0.020, -0.010], below chance" in text
    assert "like the seed, depth 1 coefficients, 0.020 [0.010, 0.030], above chance" in text
    assert "within 0.003 of the null in every row" in text


def test_error_claims_are_means_over_the_inputs() -> None:
    def run(config: str, errors: list[float]) -> dict[str, object]:
        return {"config": config, "depths": [
            {"depth": d + 1, "rank": 4 >> d, "relative_error": e, "svd_floor": 0.01 * (d + 1),
             "top_feature_share": 0.25} for d, e in enumerate(errors)]}  # fmt: skip

    results = {
        "experiments": {
            "samples": {
                "configs": [
                    {"label": "tuned", "parameters": {"fine_tune": True}},
                    {"label": "greedy", "parameters": {"fine_tune": False}},
                ],
                "runs": [run("tuned", [0.1, 0.2]), run("tuned", [0.3, 0.4]),
                         run("greedy", [0.1, 0.5]), run("greedy", [0.1, 0.7])],
            },
        }
    }  # fmt: skip
    text = tables.RENDERERS["experiments-errors-claim"](results)
    assert "greedy error 10.0%, 60.0% against SVD floors 1.0%, 2.0%" in text
    assert (
        "with the default fine-tuning 20.0%, 30.0% (depth 2: 28.0 points above its floor)" in text
    )


def test_caps_above_the_cost_bound_are_called_the_same_computation() -> None:
    caps = [
        {"matrix": "m", "dtype": "float32", "max_sweeps": c, "ratio": t, "per_iter_ratio": p,
         "n_iter": n}
        for c, t, p, n in ((1, 0.5, 1.5, 90), (2, 0.2, 2.5, 40), (6, 0.15, 4.0, 20),
                           (8, 0.1, 3.5, 20))
    ]  # fmt: skip
    results = {
        "engine": {
            "targets": {"ratio_photo": 0.25, "per_iter_512": 3.0},
            "defaults": {"max_sweeps": 6},
            "single_layer": [{"matrix": "m", "sweeps_per_factor": [6, 5]}],
            "sweep_tradeoff": caps,
        }
    }
    text = tables.RENDERERS["engine-sweeps"](results)
    assert "| 6 (default) | 4.0x | 0.15 | 20 |" in text
    assert "soonest: float32: cap 8 (0.10)" in text
    assert "does not rise steadily with the cap in float32" in text
    assert "Caps 6 and 8 run the same computation here" in text
    assert "(0.10-0.15) is the machine's noise" in text
    assert "the products): float32: 2." in text


COLLECTIONS = {
    "collections": {
        "seeds": 2,
        "swimmer": {"defaults_recover_all": False, "defaults_worst_cosine": 0.5,
                    "mlnmf_recovered_runs": 1, "sklearn_recovered_runs": 3,
                    "mlnmf_nndsvda_recovered_runs": 2, "hals_w_first_recovered_runs": 0,
                    "runs": 4},
        "faces": {
            "ranks": [4, 2],
            "learn": {"mlnmf_deep_error": 0.21, "sklearn_rank10_error": 0.2, "ratio": 1.05,
                      "target": 1.02},
            "encode": {"mlnmf_error": 0.2, "sklearn_transform_error": 0.2, "ratio": 1.0,
                       "target": 1.05},
        },
        "digits": [
            {"representation": "raw pixels", "dims": 64, "nmi": 0.5, "accuracy": 0.6,
             "cosine_within": 0.8, "cosine_between": 0.7},
            {"representation": "nmf one layer ranks 10", "dims": 10, "nmi": 0.6,
             "accuracy": 0.6, "cosine_within": 0.5, "cosine_between": 0.6},
            {"representation": "nmf greedy ranks 40,20,10", "dims": 10, "nmi": 0.7,
             "accuracy": 0.7, "cosine_within": 0.8, "cosine_between": 0.4},
            {"representation": "nmf fine-tuned ranks 40,20,10", "dims": 10, "nmi": 0.65,
             "accuracy": 0.7, "cosine_within": 0.8, "cosine_between": 0.4},
        ],
    }
}  # fmt: skip


def test_collection_targets_are_judged_from_the_ratios() -> None:
    faces = tables.RENDERERS["collections-faces"](COLLECTIONS)
    assert "(1.050x, target 1.02x: **not met**" in faces
    assert "(1.000x, target 1.05x: **met**)" in faces
    swimmer = tables.RENDERERS["collections-swimmer"](COLLECTIONS)
    assert "not every limb position is recovered as one atom" in swimmer
    assert (
        "mlnmf recovers all 16 in 1 of 4 runs, scikit-learn's NMF (NNDSVDa, `cd`) in 3 of 4"
        in swimmer
    )
    assert "which is why" not in swimmer  # the filled start did no worse here
    head = tables.RENDERERS["collections-headline"](COLLECTIONS)
    assert "| 1.050x | <= 1.02x | not met |" in head and "| 1.000x | <= 1.05x | met |" in head
    assert "| 0.500 | >= 0.9 | not met |" in head
    assert (
        "runs recovering all 16 limb positions | 1 of 4 | scikit-learn's NMF: 3 of 4 | fewer |"
        in head
    )
    assert "issue 13's target, **not met**" in swimmer


def test_digits_say_which_codes_cluster_best() -> None:
    text = tables.RENDERERS["collections-digits"](COLLECTIONS)
    assert "| deep NMF 40,20,10, greedy | 10 | 0.700 | 0.700 | 0.80 / 0.40 | — | — |" in text
    assert "deep codes cluster better than raw pixels and one-layer codes." in text
    assert "Fine-tuning moves the deep codes' NMI from 0.700 to 0.650 for deep NMF." in text
    assert "in 3 of 4 representations" in text


STREAMING = {
    "streaming": {
        "peak_memory": {
            "memory_mb": 32,
            "runs": [{"images": 1000, "peak_mb": 50.0, "blocks": 1, "block_columns": 1000},
                     {"images": 3000, "peak_mb": 70.0, "blocks": 3, "block_columns": 1000}],
            "peak_ratio_largest_smallest": 1.4, "peak_target": 1.25,
            "all_within_baseline_plus_budget": False,
            "seconds_per_image_ratio_largest_smallest": 1.1,
        },
        "blocked_vs_in_memory": {"blocked_over_engine": 1.2, "target": 1.3},
        "dask_vs_local": {"max_relative_difference": 3e-4, "target": 1e-4},
    }
}  # fmt: skip


def test_streaming_targets_are_judged_from_the_data() -> None:
    text = tables.RENDERERS["streaming-claims"](STREAMING)
    assert "largest / smallest 1.40 (target <= 1.25: **not met**)" in text
    assert "plus the budget (—, `learn` on 16 images" in text and "+ 32 MB): no." in text
    assert "the peak moves by 10486 bytes an image" in text
    assert "Linear in the number of images: **—**." in text  # no fit in the results
    assert "(1.20x, target <= 1.3x: **met**)" in text
    assert "factors max relative difference 0.0003 (target 1e-04: **not met**)" in text
    table = tables.RENDERERS["streaming-peak"](STREAMING)
    assert "| 3,000 | 3 x 1,000 | 70.0 MB | — | — | — |" in table


def test_linear_time_needs_a_straight_fit_and_no_growth_per_image() -> None:
    for residual, per_image, verdict in ((0.05, 1.1, "met"), (0.2, 1.1, "not met"),
                                         (0.05, 1.5, "not met")):  # fmt: skip
        results = {
            "streaming": {
                "peak_memory": {
                    "linear_fit": {"worst_relative_residual": residual},
                    "seconds_per_image_ratio_largest_smallest": per_image,
                }
            }
        }
        text = tables.RENDERERS["streaming-claims"](results)
        assert f"Linear in the number of images: **{verdict}**." in text
