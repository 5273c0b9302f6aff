"""`make tables`: the figure tables of README.md and docs/*.md, rendered from benchmarks/results.

A region of a Markdown file between

    <!-- table:NAME -->
    ...
    <!-- /table -->

is replaced by ``RENDERERS[NAME](results)``: a function that takes the loaded results
(``results["engine"]`` is benchmarks/results/engine.json, ``{}`` when the file is missing)
and returns Markdown (a table, or a sentence that quotes figures). Adding a table is one
function with ``@renderer("NAME")`` and a marker pair in a document. Renderers must be
tolerant of schema changes: read values with ``get(data, "key", 0, "key")`` and format them
with ``num``/``pct``/``secs``..., which render a missing or malformed value as "—".

    python benchmarks/tables.py            # rewrite the files in place
    python benchmarks/tables.py --check    # exit 1 if a file is not up to date (make lint)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DASH = "—"
REGION = re.compile(
    r"(?P<open><!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(?P<close><!-- /table -->)", re.S
)

Results = dict[str, Any]
Renderer = Callable[[Results], str]
RENDERERS: dict[str, Renderer] = {}


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    """Register ``fn`` as the renderer of the regions marked ``<!-- table:name -->``."""

    def register(fn: Renderer) -> Renderer:
        RENDERERS[name] = fn
        return fn

    return register


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def load_results(folder: Path = RESULTS) -> Results:
    """Every ``folder/*.json`` by stem; a file that does not parse is reported and left out."""
    results: Results = {}
    for path in sorted(folder.glob("*.json")):
        try:
            results[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"tables: warning: {path}: {exc}", file=sys.stderr)
    return results


# ---------------------------------------------------------------- tolerant access and formats


def get(data: Any, *path: str | int, default: Any = None) -> Any:
    """``data[p0][p1]...``, or ``default`` if any step is missing or of the wrong type."""
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return default
    return data


def items(data: Any, *path: str | int) -> list[Any]:
    """The list at ``path``, or ``[]`` if it is missing or not a list."""
    found = get(data, *path)
    return found if isinstance(found, list) else []


def yes_no(value: Any, yes: str = "yes", no: str = "no") -> str:
    """``yes`` for True, ``no`` for False, "—" for anything else."""
    return yes if value is True else no if value is False else DASH


def num(value: Any, spec: str = ".3f", suffix: str = "") -> str:
    """A number formatted with ``spec`` (and ``suffix``); "—" when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DASH
    return f"{value:{spec}}{suffix}"


def secs(value: Any, spec: str = ".3f") -> str:
    return num(value, spec, " s")


def times(value: Any, spec: str = ".2f") -> str:
    return num(value, spec, "x")


def pct(value: Any, spec: str = ".1f") -> str:
    return DASH if num(value) == DASH else f"{100 * value:{spec}}%"


def span(values: Iterable[Any], fmt: Callable[[Any], str]) -> str:
    """The "lo-hi" span of the numbers among ``values`` (one value alone), formatted; "—" if none."""
    xs = [v for v in values if num(v) != DASH]
    if not xs:
        return DASH
    lo, hi = fmt(min(xs)), fmt(max(xs))
    return lo if lo == hi else f"{lo}-{hi}"


def day(data: Any) -> str:
    """The date of a results file (environment.date), "date not recorded" without one."""
    date = get(data, "environment", "date")
    return str(date)[:10] if date else "date not recorded"


def md_table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table; ``align`` has one letter per column: l(eft) or r(ight)."""
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines) + "\n"


# ---------------------------------------------------------------- engine (bench_engine.py)


@renderer("engine-speed")
def engine_speed(r: Results) -> str:
    rows = []
    for row in items(r, "engine", "single_layer"):
        rows.append(
            [
                get(row, "matrix", default=DASH),
                num(get(row, "rank"), "d"),
                get(row, "dtype", default=DASH),
                secs(get(row, "sklearn_seconds")),
                f"{secs(get(row, 'mlnmf_seconds'))} ({num(get(row, 'mlnmf_n_iter'), 'd')} it)",
                num(get(row, "ratio"), ".2f"),
                times(get(row, "per_iter_ratio")),
                times(get(row, "plain_hals_iter_ratio")),
            ]
        )
    return md_table(
        [
            "matrix", "rank", "dtype", "scikit-learn 200 it", "mlnmf to same error", "ratio",
            "per-iter (default)", "per-iter (plain HALS)",
        ],
        "lrlrrrrr",
        rows,
    )  # fmt: skip


@renderer("engine-speed-summary")
def engine_speed_summary(r: Results) -> str:
    single = items(r, "engine", "single_layer")
    big = [row for row in single if "2048" in str(get(row, "matrix", default=""))]
    target = get(r, "engine", "targets", "per_iter_ratio")
    reached = all(get(row, "reached") for row in single) if single else None
    reach = yes_no(reached, "Every matrix reaches", "Not every matrix reaches")
    worst = get(r, "engine", "summary", "worst_per_iter_ratio_2048")
    met = DASH
    if num(worst) != DASH and num(target) != DASH:
        met = "met" if worst <= target else "not met"
    return (
        f"{reach} scikit-learn's error, in at most "
        f"{num(get(r, 'engine', 'summary', 'worst_ratio'), '.2f')} of its time. On 2048x2048 a "
        f"default iteration costs {span((get(x, 'per_iter_ratio') for x in big), times)} the two "
        f"products: the per-iteration target ({times(target, '.1f')}) is {met}. A plain HALS "
        f"iteration (one sweep, no extrapolation) costs "
        f"{span((get(x, 'plain_hals_iter_ratio') for x in big), times)}.\n"
    )


@renderer("engine-sweeps")
def engine_sweeps(r: Results) -> str:
    caps = items(r, "engine", "summary", "sweep_tradeoff_2048_float32")
    default = max((c for c in (get(x, "max_sweeps") for x in caps) if num(c) != DASH), default=None)
    head = ["sweeps per factor at most"]
    for c in caps:
        cap = get(c, "max_sweeps")
        head.append(f"{cap} (default)" if cap == default else str(cap))
    return (
        md_table(
            head,
            "l" + "r" * len(caps),
            [
                ["one iteration / two products", *(times(get(c, "per_iter_ratio")) for c in caps)],
                [
                    "time to scikit-learn's error / its time",
                    *(num(get(c, "ratio"), ".2f") for c in caps),
                ],
                ["iterations", *(num(get(c, "n_iter"), "d") for c in caps)],
            ],
        )
        + f"\nCaps that meet both targets: {_caps_meeting_both(r, caps)}.\n"
    )


def _caps_meeting_both(r: Results, caps: Sequence[Any]) -> str:
    ratio = get(r, "engine", "targets", "ratio")
    per_iter = get(r, "engine", "targets", "per_iter_ratio")
    if num(ratio) == DASH or num(per_iter) == DASH or not caps:
        return DASH
    both = [
        str(get(c, "max_sweeps"))
        for c in caps
        if num(get(c, "ratio")) != DASH
        and num(get(c, "per_iter_ratio")) != DASH
        and get(c, "ratio") <= ratio
        and get(c, "per_iter_ratio") <= per_iter
    ]
    return ", ".join(both) if both else "none"


@renderer("engine-deep")
def engine_deep(r: Results) -> str:
    rows = []
    for model in items(r, "engine", "deep"):
        name = _deep_name(model)
        for i, rank in enumerate(items(model, "ranks")):
            rows.append(
                [
                    name,
                    str(i + 1),
                    num(rank, "d"),
                    num(get(model, "greedy_errors", i), ".4f"),
                    num(get(model, "fine_tuned_errors", i), ".4f"),
                    num(get(model, "svd_floors", i), ".4f"),
                ]
            )
    return md_table(["image", "depth", "rank", "greedy", "fine-tuned", "SVD floor"], "lrrrrr", rows)


def _deep_name(model: Any) -> str:
    shape = items(model, "shape")
    size = "x".join(str(s) for s in shape) if shape else ""
    return f"{get(model, 'image', default=DASH)} {size}".strip()


@renderer("engine-deep-summary")
def engine_deep_summary(r: Results) -> str:
    models = items(r, "engine", "deep")
    names = [str(get(m, "image", default=DASH)) for m in models]
    single = ", ".join(
        f"{num(get(m, 'single_rank16_nmf_error'), '.4f')} ({n})"
        for m, n in zip(models, names, strict=False)
    )
    within = " and ".join(times(get(m, "fine_tuned_over_single"), ".3f") for m in models)
    greedy = " / ".join(secs(get(m, "greedy_seconds"), ".2f") for m in models)
    fine = " / ".join(secs(get(m, "fine_tune_seconds"), ".2f") for m in models)
    return (
        f"Single-layer NMF at the deepest rank: {single or DASH}; the fine-tuned deepest model "
        f"is within {within or DASH} of it. Greedy training took {greedy or DASH}, "
        f"fine-tuning {fine or DASH}. Fine-tuning optimises the deepest model, so shallower "
        f"depths may get worse: {_fine_tune_effect(models)}; the report gives both numbers.\n"
    )


def _depths(ds: Sequence[str]) -> str:
    if len(ds) == 1:
        return f"depth {ds[0]}"
    return f"depths {', '.join(ds[:-1])} and {ds[-1]}"


def _fine_tune_effect(models: Sequence[Any]) -> str:
    """Which depths the fine-tuning made better or worse, in words, from the data."""
    parts = []
    for m in models:
        greedy = items(m, "greedy_errors")
        tuned = items(m, "fine_tuned_errors")
        pairs = [
            (str(i + 1), g, t)
            for i, (g, t) in enumerate(zip(greedy, tuned, strict=False))
            if num(g) != DASH and num(t) != DASH
        ]
        up = [d for d, g, t in pairs if t > g]
        down = [d for d, g, t in pairs if t <= g]
        said = []
        if up:
            said.append(f"the error at {_depths(up)} rises")
        if down:
            said.append(f"at {_depths(down)} it falls")
        parts.append(f"on {get(m, 'image', default=DASH)}, {' and '.join(said) or DASH}")
    return "; ".join(parts) or DASH


# ---------------------------------------------------------------- batches (bench_batch.py)

_BATCH_RUNS = (
    ("jobs1", "`--jobs 1`"),
    ("jobs2", "`--jobs 2`"),
    ("dask", "two-worker Dask `LocalCluster`"),
)


@renderer("batch-throughput")
def batch_throughput(r: Results) -> str:
    t = get(r, "batch", "throughput", default={})
    rows = []
    for key, label in _BATCH_RUNS:
        if key == "dask" and get(t, key) is None:
            continue
        note = ""
        if key == "jobs2":
            note = f"{times(get(t, 'jobs2_speedup'))} `--jobs 1`, {_identical(t, 'jobs2')}"
        elif key == "dask":
            note = f"{num(get(t, 'dask_vs_jobs2'), '.2f')} of `--jobs 2`, {_identical(t, 'dask')}"
        rows.append(
            [
                label,
                secs(get(t, key, "median_seconds"), ".2f"),
                num(get(t, key, "images_per_second"), ".2f"),
                note,
            ]
        )
    return md_table(["run", "time", "images/s", "compared with"], "lrrl", rows)


def _identical(t: Any, key: str) -> str:
    same = get(t, f"{key}_identical_to_jobs1")
    return yes_no(same, "factors bit-identical", "factors DIFFER")


@renderer("batch-runs")
def batch_runs(r: Results) -> str:
    """docs/batch.md: each run against --jobs 1, and whether its factors are the same."""
    t = get(r, "batch", "throughput", default={})
    base = get(t, "jobs1", "images_per_second")
    rows = []
    for key, label in _BATCH_RUNS:
        if key == "dask" and get(t, key) is None:
            continue
        ips = get(t, key, "images_per_second")
        vs = num(ips / base, ".2f") if num(ips) != DASH and num(base) != DASH and base else DASH
        if key == "dask":
            vs += f" ({num(get(t, 'dask_vs_jobs2'), '.2f')} of `--jobs 2`)"
        factors = "reference" if key == "jobs1" else _identical(t, key).replace("factors ", "")
        rows.append(
            [label, secs(get(t, key, "median_seconds"), ".1f"), num(ips, ".2f"), vs, factors]
        )
    images = num(get(t, "images"), "d")
    return md_table(
        ["run", f"{images} images", "images/s", "vs `--jobs 1`", "factors"], "lrrrl", rows
    )


@renderer("batch-setup")
def batch_setup(r: Results) -> str:
    b = get(r, "batch", default={})
    t = get(b, "throughput", default={})
    size = "x".join(str(s) for s in items(t, "size")) or DASH
    loads = [get(run, "load_before") for key, _ in _BATCH_RUNS for run in items(t, key, "runs")]
    repeats = len(items(t, "jobs1", "runs")) or DASH
    return (
        f"{num(get(t, 'images'), 'd')} images of {size} at ranks {get(t, 'ranks', default=DASH)}, "
        f"through the CLI, median of {repeats} (load {span(loads, lambda x: f'{x:.1f}')} before "
        f"the runs, {get(b, 'machine', 'cores', default=DASH)} cores, {day(b)}).\n"
    )


@renderer("batch-memory")
def batch_memory(r: Results) -> str:
    m = get(r, "batch", "memory", default={})
    image = "x".join(str(s) for s in items(m, "image")) or DASH
    text = (
        f"A {image} grey image at ranks {get(m, 'ranks', default=DASH)} in "
        f"{get(m, 'dtype', default=DASH)} peaks at {num(get(m, 'peak_mib'), '.1f', ' MiB')} "
        f"(`/usr/bin/time -v`), {num(get(m, 'peak_above_baseline_in_matrices'), '.1f')} times its "
        f"{num(get(m, 'float32_matrix_mib'), '.0f', ' MiB')} float32 matrix above the "
        f"interpreter's {num(get(m, 'baseline_mib'), '.0f', ' MiB')} (limit "
        f"{num(get(m, 'limit_mib'), '.1f', ' MiB')}: six matrices plus the interpreter).\n"
    )
    tests = get(r, "batch", "tests")
    if tests is None:
        return text + (
            "The fuzz tally is not in the current results: "
            "`python benchmarks/bench_batch.py --fuzz-examples 2000` records it.\n"
        )
    return text + (
        f"Fuzz run of the loaders at {num(get(tests, 'fuzz_examples_per_test'), ',d')} examples "
        f"per property: {num(get(tests, 'fuzz_passing_examples'), ',d')} passing, "
        f"{num(get(tests, 'fuzz_failing_examples'), ',d')} failing examples.\n"
    )


# ---------------------------------------------------------------- start-up (bench_cli.py)


@renderer("cli-startup")
def cli_startup(r: Results) -> str:
    c = get(r, "cli", default={})
    rows = [
        [f"`{get(m, 'command', default=DASH)}`", secs(get(m, "median_seconds")),
         span(items(m, "seconds"), lambda x: f"{x:.3f}"),
         num(get(m, "repeats"), "d")]
        for m in items(c, "measurements")
    ]  # fmt: skip
    table = md_table(["command", "median wall time", "range", "runs"], "lrrr", rows)
    numpy = yes_no(get(c, "help_imports_numpy"))
    return table + (
        f"\n`mlnmf --help` imports NumPy: {numpy}. "
        f"({get(c, 'environment', 'cpu', default=DASH)}, "
        f"{get(c, 'environment', 'cores', default=DASH)} cores, load "
        f"{span(items(c, 'environment', 'load_average')[:1], lambda x: f'{x:.1f}')}"
        f" at the start, {day(c)}; `python benchmarks/bench_cli.py`.)\n"
    )


# ---------------------------------------------------------------- experiments (run_experiments.py)


def _interval(stat: Any, repeats: int) -> str:
    if not isinstance(stat, dict):
        return "n/a"
    try:
        from mlnmf_cli.experiments import interval_text
    except ImportError:
        return DASH
    try:
        return interval_text(stat, repeats)
    except (KeyError, TypeError, ValueError):
        return DASH


def _f3(x: Any) -> str:
    return "n/a" if x is None else num(x)


_SAMPLE_SETS = (("samples", "samples, ours"), ("samples_like_seed", "samples, like seed"))
_RANDOM_SETS = (
    ("random", "random 128x128, ours"),
    ("random_like_seed", "random 100x100, like seed"),
)


@renderer("experiments-samples")
def experiments_samples(r: Results) -> str:
    rows = []
    for key, setup in _SAMPLE_SETS:
        for e in items(r, "experiments", key, "similarities"):
            null = get(e, "null", default={})
            rows.append(
                [
                    setup, get(e, "config", default=DASH), num(get(e, "depth"), "d"),
                    num(get(e, "rank"), "d"), get(e, "kind", default=DASH),
                    _f3(get(e, "across", "mean")),
                    f"{_f3(get(null, 'mean'))} [{num(get(null, 'low'))}, {num(get(null, 'high'))}]",
                    _f3(get(e, "self", "mean")),
                    "trivial" if get(e, "trivial") else _f3(get(e, "corrected")),
                ]
            )  # fmt: skip
    return md_table(
        ["setup", "configuration", "depth", "rank", "kind", "across images", "null", "self",
         "above chance"],
        "llrrlrrrr",
        rows,
    )  # fmt: skip


@renderer("experiments-random")
def experiments_random(r: Results) -> str:
    rows = []
    for key, setup in _RANDOM_SETS:
        data = get(r, "experiments", key, default={})
        k = get(data, "repeats", default=1)
        for s in items(data, "summary"):
            rows.append(
                [
                    setup, get(s, "config", default=DASH), num(get(s, "depth"), "d"),
                    num(get(s, "rank"), "d"), get(s, "kind", default=DASH),
                    _interval(get(s, "across"), k), _interval(get(s, "null"), k),
                    _interval(get(s, "self"), k),
                    "trivial" if get(s, "trivial") else _interval(get(s, "corrected"), k),
                    _interval(get(s, "control"), k),
                ]
            )  # fmt: skip
    return md_table(
        ["setup", "configuration", "depth", "rank", "kind", "across images", "null", "self",
         "above chance", "control vs random"],
        "llrrlrrrrr",
        rows,
    )  # fmt: skip


@renderer("experiments-random-setup")
def experiments_random_setup(r: Results) -> str:
    k = get(r, "experiments", "repeats")
    seeds = f"0..{k - 1}" if isinstance(k, int) else DASH
    return (
        f"Random pixels: 3 uniform images per repeat, {num(k, 'd')} repeats (image seeds "
        f"{seeds}), mean [95% interval]; control = camera.png (resized, grey) against the "
        "random images.\n"
    )


@renderer("experiments-errors")
def experiments_errors(r: Results) -> str:
    rows = []
    for key, setup in _SAMPLE_SETS:
        by: dict[tuple[str, str], list[Any]] = {}
        for run in items(r, "experiments", key, "runs"):
            for d in items(run, "depths"):
                key = (str(get(run, "config", default=DASH)), str(get(d, "depth")))
                by.setdefault(key, []).append(d)
        for (config, _), ds in by.items():
            depth = get(ds[0], "depth")

            def mean(field: str, ds: list[Any] = ds) -> str:
                xs = [get(d, field) for d in ds if num(get(d, field)) != DASH]
                return "n/a" if not xs else pct(sum(xs) / len(xs))

            rows.append(
                [
                    setup, config, num(depth, "d"), num(get(ds[0], "rank"), "d"),
                    mean("relative_error"), mean("greedy_relative_error"), mean("svd_floor"),
                    mean("top_feature_share"),
                ]
            )  # fmt: skip
    return md_table(
        ["setup", "configuration", "depth", "rank", "error", "greedy error", "SVD floor",
         "top column share"],
        "llrrrrrr",
        rows,
    )  # fmt: skip


@renderer("experiments-verdicts")
def experiments_verdicts(r: Results) -> str:
    lines = []
    for key, name in (
        ("samples", "samples, ours"),
        ("samples_like_seed", "samples, like seed"),
        ("random", "random, ours"),
        ("random_like_seed", "random, like seed"),
    ):
        for v in items(r, "experiments", key, "verdicts"):
            lines.append(
                f"- {name} [{get(v, 'config', default=DASH)}]: {get(v, 'verdict', default=DASH)}"
            )
    return "\n".join(lines) + "\n" if lines else f"{DASH}\n"


@renderer("experiments-times")
def experiments_times(r: Results) -> str:
    e = get(r, "experiments", default={})
    lines = [
        f"- {get(t, 'run', default=DASH)}: {secs(get(t, 'seconds'), '.1f')}"
        for t in items(e, "timings")
    ]
    env = get(e, "environment", default={})
    lines.append(
        f"\n({get(env, 'cpu', default=DASH)}, {get(env, 'cores', default=DASH)} cores, "
        f"load {num(get(env, 'load_average', 0), '.1f')} at the end, {day(e)}, "
        f"commit {str(get(env, 'git_commit', default=DASH))[:10]}.)"
    )
    return "\n".join(lines) + "\n"


@renderer("experiments-headline")
def experiments_headline(r: Results) -> str:
    """README: depth-1 chance-corrected similarity and the verdict of each experiment."""
    rows = []
    for key, inputs, setup, kind in (
        ("samples", "camera, astronaut, coffee at 256x256", None, "compare"),
        ("samples_like_seed", "camera, astronaut, coffee at 256x256", "like the seed", "compare"),
        ("random", "3 random 128x128 images", "ours", "random"),
        ("random_like_seed", "3 random 100x100 images", "like the seed", "random"),
    ):
        data = get(r, "experiments", key, default={})
        entries = items(data, "similarities" if kind == "compare" else "summary")
        verdicts = {
            str(get(v, "config")): get(v, "verdict", default="") for v in items(data, "verdicts")
        }
        configs = list(dict.fromkeys(str(get(e, "config")) for e in entries))
        for i, config in enumerate(configs):
            score = {
                str(get(e, "kind")): get(e, "corrected", "mean") if kind == "random" else get(e, "corrected")
                for e in entries
                if str(get(e, "config")) == config and get(e, "depth") == 1
            }  # fmt: skip
            label = setup or ("ours (fine-tuned)" if i == 0 else "ours, greedy")
            where = (
                inputs
                if kind == "compare"
                else f"{inputs}, {num(get(data, 'repeats'), 'd')} repeats"
            )
            rows.append(
                [where, label, num(score.get("features"), ".2f"),
                 num(score.get("coefficients"), ".2f"), _verdict_words(verdicts.get(config))]
            )  # fmt: skip
    return md_table(
        ["inputs", "setup", "features", "coefficients", "verdict printed by the tool"],
        "llrrl",
        rows,
    )


def _verdict_words(verdict: str | None) -> str:
    """The verdict without its numbers: "about equally alike; both beat their null baselines"."""
    if not verdict or not isinstance(verdict, str):
        return DASH
    alike = re.search(
        r"(features and coefficients are )?(about equally alike|features are more alike|coefficients are more alike)",
        verdict,
    )
    beat = re.search(
        r"(both beat their null baselines|neither beats its null baseline|only [^.]*)", verdict
    )
    words = alike.group(2) if alike else ""
    if words == "features are more alike":
        words = "features more alike"
    elif words == "coefficients are more alike":
        words = "coefficients more alike"
    return "; ".join(w for w in (words, beat.group(1) if beat else "") if w) or verdict


def experiments_markdown(r: Results) -> str:
    """What `make experiments` prints: every experiments table, given that run's results."""
    results = {"experiments": r}
    return "\n".join(
        [
            experiments_samples(results),
            experiments_random_setup(results),
            experiments_random(results),
            experiments_errors(results),
            experiments_verdicts(results),
            experiments_times(results),
        ]
    )


# ---------------------------------------------------------------- the rewrite


def render_text(
    text: str, results: Results, where: str = "", failures: list[str] | None = None
) -> str:
    """``text`` with every marked region re-rendered; an unknown name is an error. A renderer
    that fails on results of another shape renders a dash, and the problem is added to
    ``failures`` (and printed)."""
    failures = [] if failures is None else failures

    def replace(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in RENDERERS:
            raise SystemExit(f"tables: error: {where}: no renderer for <!-- table:{name} -->")
        try:
            body = RENDERERS[name](results)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            # results of an unexpected shape: say so in the document and on stderr
            failures.append(f"{where}: table {name}: {type(exc).__name__}: {exc}")
            print(f"tables: warning: {failures[-1]}", file=sys.stderr)
            body = f"{DASH} (the results do not have the shape this table expects)\n"
        return m["open"] + body.rstrip("\n") + "\n" + m["close"]

    return REGION.sub(replace, text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    results = load_results()
    stale: list[Path] = []
    failures: list[str] = []
    for path in documents():
        text = path.read_text(encoding="utf-8")
        new = render_text(text, results, str(path.relative_to(ROOT)), failures)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        names = ", ".join(map(str, stale))
        print(f"tables: error: out of date (run make tables): {names}", file=sys.stderr)
        return 1
    for name in stale:
        print(f"tables: rewrote {name}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
