"""An experiment's files: compare.json, compare.csv, runs.csv, heat maps, montages, index.html."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mlnmf_cli import page, render, storage
from mlnmf_cli.errors import OutputError
from mlnmf_cli.experiments.comparison import CSV_FIELDS, CompareResult
from mlnmf_cli.experiments.config import KINDS, Config
from mlnmf_cli.experiments.runs import Run


def planned_files(result_configs: int, depths: Sequence[int]) -> list[str]:
    """Names of the files ``compare`` writes, known before any work starts."""
    names = ["compare.json", "compare.csv", "runs.csv", page.INDEX]
    for ci in range(1, result_configs + 1):
        names.append(f"montage_config{ci}.png")
        for d in range(1, depths[ci - 1] + 1):
            names.extend(f"heatmap_config{ci}_depth{d}_{kind}.png" for kind in KINDS)
    return names


def prepare_output(out: Path, names: Iterable[str], *, force: bool) -> Path:
    """Create the folder ``out`` and refuse, unless ``force``, to replace any of ``names`` in it."""
    out = storage.prepare_output_dir(out)
    refuse_existing_files(out, names, force=force)
    return out


def refuse_existing_files(out: Path, names: Iterable[str], *, force: bool) -> None:
    if force:
        return
    existing = [n for n in names if (Path(out) / n).exists()]
    if existing:
        shown = ", ".join(existing[:5]) + (
            f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        )
        raise OutputError(f"{out} already holds {shown} (use --force to replace them)")


RUN_FIELDS = (
    "input", "config", "source", "depth", "rank", "relative_error", "greedy_relative_error",
    "svd_floor", "psnr", "sparsity_features", "sparsity_coefficients", "top_feature_share",
    "seconds",
)  # fmt: skip


def write_outputs(
    result: CompareResult,
    out: Path,
    *,
    verdict_depth: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write compare.json, compare.csv, runs.csv, heat maps, montages and the page
    (index.html) into ``out``."""
    out = Path(out)
    data = result.to_json(verdict_depth)
    if extra:
        data.update(extra)
    run_rows = [
        {**{k: v for k, v in r.items() if k != "depths"}, **depth}
        for r in data["runs"]
        for depth in r["depths"]
    ]
    storage.write_csv(out / "runs.csv", run_rows, RUN_FIELDS)
    storage.write_csv(out / "compare.csv", result.csv_rows(), CSV_FIELDS)
    for e in result.similarities:
        ci = e["config_index"] + 1
        self_text = "n/a" if e["self"] is None else f"{e['self']['mean']:.2f}"
        title = (
            f"{e['kind']}, depth {e['depth']}, config {ci} ({result.measure}); "
            f"null {e['null']['mean']:.2f} [{e['null']['low']:.2f}, {e['null']['high']:.2f}], "
            f"self {self_text} (diagonal)"
        )
        labels = list(e["labels"])
        picture = render.heatmap(np.asarray(e["matrix"]), labels, labels, title, vmin=0.0, vmax=1.0)
        storage.save_image(out / f"heatmap_config{ci}_depth{e['depth']}_{e['kind']}.png", picture)
    for ci, row in enumerate(result.runs, start=1):
        depth = min(verdict_depth or 1, row[0].factors.depth)
        storage.save_image(
            out / f"montage_config{ci}.png",
            montage(row, depth, f"config {ci}: {result.configs[ci - 1].label}"),
        )
    storage.write_json(out / "compare.json", data)
    page.write_experiment_page(out, data, "compare")
    return data


def montage(row: Sequence[Run], depth: int, title: str = "") -> Image.Image:
    """One line per input: original, features, coefficients, reconstruction (seed's Figure 2)."""
    lines = []
    for run in row:
        original = run.original()
        recon = np.clip(run.reconstruction(depth), 0.0, 1.0)
        if original is None:
            first: tuple[Image.Image, str] = (
                render.to_pil(np.full(recon.shape, 0.85)),
                f"{run.subject.name}: original not stored",
            )
        else:
            first = (render.to_pil(original), f"{run.subject.name}")
        W = run.factors.features(depth)
        H = run.factors.coefficients(depth)
        err = run.depths[depth - 1].get("relative_error")
        err_text = "" if err is None else f", error {100 * err:.1f}%"
        lines.append(
            [
                first,
                (
                    render.features_image(W),
                    f"features {_chain_label(depth)} ({W.shape[0]}x{W.shape[1]})",
                ),
                (
                    render.coefficients_image(H),
                    f"coefficients H{depth} ({H.shape[0]}x{H.shape[1]})",
                ),
                (render.to_pil(recon), f"reconstruction depth {depth}{err_text}"),
            ]
        )
    return render.montage(lines, title=title)


def depths_of(configs: Sequence[Config]) -> list[int]:
    return [len(c.options.ranks) for c in configs]


def _chain_label(depth: int) -> str:
    return "W1" if depth == 1 else f"W1...W{depth}"
