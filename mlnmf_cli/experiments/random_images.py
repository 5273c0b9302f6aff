"""``random-test``: images of random pixels, saved and compared like any inputs."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlnmf_cli import page, render, storage
from mlnmf_cli.errors import ParameterError
from mlnmf_cli.experiments.comparison import CompareResult, compare
from mlnmf_cli.experiments.config import DEFAULT_NULL_DRAWS, DISTRIBUTIONS, Config
from mlnmf_cli.experiments.outputs import depths_of, planned_files, write_outputs
from mlnmf_cli.experiments.runs import Step
from mlnmf_cli.experiments.statistics import similarity_rows, verdicts
from mlnmf_cli.experiments.subjects import check_size, load_subjects


def random_pixels(
    count: int, size: tuple[int, int], distribution: str, seed: int
) -> list[np.ndarray]:
    """``count`` grey images of random pixels in [0, 1], reproducible from ``seed``.

    uniform: U(0, 1); normal: N(0.5, 0.15^2) clipped to [0, 1]; binary: 0 or 1
    with equal odds.
    """
    if distribution not in DISTRIBUTIONS:
        raise ParameterError(
            f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}"
        )
    if count < 1:
        raise ParameterError(f"count must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        if distribution == "uniform":
            px = rng.random(size)
        elif distribution == "normal":
            px = np.clip(rng.normal(0.5, 0.15, size), 0.0, 1.0)
        else:
            px = (rng.random(size) < 0.5).astype(np.float64)
        images.append(px)
    return images


def random_image_names(count: int, repeats: int) -> list[str]:
    if repeats == 1:
        return [f"random-{i}.png" for i in range(1, count + 1)]
    return [f"random-r{r:02d}-{i}.png" for r in range(1, repeats + 1) for i in range(1, count + 1)]


@dataclass
class RandomTest:
    """What ``random-test`` measured: one :class:`CompareResult` per repeat."""

    results: list[CompareResult]
    image_paths: list[list[Path]]
    size: tuple[int, int]
    distribution: str
    seed: int
    seconds: float = 0.0

    def to_json(self, verdict_depth: int | None = None) -> dict[str, Any]:
        return {
            "version": storage.REPORT_VERSION,
            "versions": storage.versions(),
            "count": len(self.image_paths[0]),
            "size": list(self.size),
            "distribution": self.distribution,
            "seed": self.seed,
            "repeats": len(self.results),
            "image_seeds": [self.seed + r for r in range(len(self.results))],
            "images": [[str(p) for p in paths] for paths in self.image_paths],
            "measure": self.results[0].measure,
            "configs": [
                {"label": c.label, "parameters": c.options.as_dict()}
                for c in self.results[0].configs
            ],
            "summary": [_public_row(r) for r in similarity_rows(self.results)],
            "verdicts": [
                {key: value for key, value in v.items() if key != "stats"}
                for v in verdicts(self.results, verdict_depth)
            ],
            "seconds": round(self.seconds, 3),
        }


def _public_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "config_index"}


def random_test(
    out: Path,
    configs: Sequence[Config],
    *,
    count: int = 3,
    size: tuple[int, int] = (128, 128),
    distribution: str = "uniform",
    seed: int = 0,
    repeats: int = 1,
    control: Path | None = None,
    measure: str = "subspace",
    draws: int = DEFAULT_NULL_DRAWS,
    max_pixels: int | None = None,
    step: Step | None = None,
) -> RandomTest:
    """Random-pixel images saved into ``out`` and compared like any inputs, ``repeats`` times.

    Repeat ``r`` (from 0) draws its images with seed ``seed + r``; the
    decompositions keep each configuration's own seed. A control image is
    resized to ``size`` and turned grey like the random images; it is compared
    with them but left out of the across-input mean.
    """
    if repeats < 1:
        raise ParameterError(f"repeats must be at least 1, got {repeats}")
    check_size(size, max_pixels, count * repeats)  # every repeat writes its own images
    start = time.perf_counter()
    names = random_image_names(count, repeats)
    results, all_paths = [], []
    for r in range(repeats):
        images = random_pixels(count, size, distribution, seed + r)
        paths = []
        for i, px in enumerate(images):
            path = Path(out) / names[r * count + i]
            storage.save_image(path, render.to_pil(px))
            paths.append(path)
        all_paths.append(paths)
        inputs = [*paths, *([control] if control is not None else [])]
        subjects = load_subjects(inputs, resize=size, max_pixels=max_pixels, grey=True)
        if control is not None:
            subjects[-1].control = True
            subjects[-1].name = f"control {subjects[-1].name}"
        for s in subjects[:count]:
            s.name = s.path.stem
        inner = step
        if step is not None and repeats > 1:
            inner = _prefixed(step, f"repeat {r + 1}/{repeats}: ")

        results.append(
            compare(subjects, configs, measure=measure, draws=draws, seed=seed + r, step=inner)
        )
    return RandomTest(results, all_paths, size, distribution, seed, time.perf_counter() - start)


def _prefixed(step: Step, prefix: str) -> Step:
    return lambda text: step(prefix + text)


def random_test_files(count: int, repeats: int, configs: Sequence[Config]) -> list[str]:
    return [
        *random_image_names(count, repeats),
        *planned_files(len(configs), depths_of(configs)),
        "random-test.json",
    ]


def write_random_test(
    test: RandomTest, out: Path, *, verdict_depth: int | None = None
) -> dict[str, Any]:
    """Write the first repeat's files (as ``compare`` does) and random-test.json; return its data."""
    first = write_outputs(test.results[0], out, verdict_depth=verdict_depth)
    data = test.to_json(verdict_depth)
    storage.write_json(Path(out) / "random-test.json", data)
    # The page: the verdicts and similarities over every repeat, the runs of the first.
    shown = {**data, "similarities": data["summary"], "runs": first["runs"]}
    page.write_experiment_page(Path(out), shown, "random-test")
    return data
