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
import itertools
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
#
# benchmarks/results/engine.json: "targets", "defaults", and one list per part
# ("single_layer", "sweep_tradeoff", "encode", "deep", "frontier": {"rows", "by_weight"}),
# every row carrying its own target and met flag; "environments" maps the parts measured
# together ("encode,single,sweeps") to the environment they ran in.


def _is_num(value: Any) -> bool:
    return num(value) != DASH


def ms(value: Any, spec: str = ".2f") -> str:
    """Seconds shown in milliseconds."""
    return num(value * 1000, spec, " ms") if _is_num(value) else DASH


def _met(value: Any) -> str:
    return yes_no(value, "yes", "no")


def _name(row: Any, *keys: str) -> str:
    """The row's values at ``keys`` joined by spaces ("camera 512x512 float32")."""
    return " ".join(str(get(row, k)) for k in keys if get(row, k) is not None) or DASH


def _and(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


def _tally(rows: Sequence[Any], flag: str) -> tuple[int, int, str]:
    """How many rows have ``flag`` True, out of how many have it at all, and the target's
    verdict in words: "met" only when every row meets it."""
    known = [get(x, flag) for x in rows if isinstance(get(x, flag), bool)]
    met = sum(known)
    verdict = DASH if not known else "met" if met == len(known) == len(rows) else "not met"
    return met, len(known), verdict


def _worst(rows: Sequence[Any], field: str, *keys: str) -> str:
    """The largest ``field`` among ``rows`` and the row it belongs to: "0.59 (hubble float64)"."""
    scored = [x for x in rows if _is_num(get(x, field))]
    if not scored:
        return DASH
    top = max(scored, key=lambda x: get(x, field))
    return f"{num(get(top, field), '.2f')} ({_name(top, *keys)})"


def _weight(value: Any) -> str:
    return num(value, "g") if _is_num(value) else str(value) if value is not None else DASH


@renderer("engine-setup")
def engine_setup(r: Results) -> str:
    """How and where each part of engine.json was measured."""
    e = get(r, "engine", default={})
    envs = get(e, "environments")
    if not isinstance(envs, dict):  # one full run: every part in the same environment
        envs = {"every part": get(e, "environment", default={})}
    parts = []
    if isinstance(envs, dict):
        for part, env in envs.items():
            loads = [get(env, "load_average", 0), get(env, "load_average_end", 0)]
            load = " to ".join(num(x, ".1f") for x in loads)
            commit = str(get(env, "git_commit", default=DASH))[:10]
            parts.append(f"{str(part).replace(',', ', ')} at commit {commit} (load {load})")
    env = get(e, "environment", default={})
    what = f"Median of {num(get(e, 'repeats'), 'd')} interleaved repeats"
    if _is_num(get(e, "seeds")):
        what = (
            f"Medians over {num(get(e, 'seeds'), 'd')} seeds a side (interleaved) for the times "
            f"to error and the deep models, of {num(get(e, 'repeats'), 'd')} interleaved "
            "repeats elsewhere"
        )
    return (
        f"{what}, {num(get(e, 'threads'), 'd')} BLAS thread, "
        f"{get(env, 'cpu', default=DASH)} with {get(env, 'cpus', default=DASH)} cores shared with "
        f"other work, NumPy {get(env, 'numpy', default=DASH)}, scikit-learn "
        f"{get(env, 'scikit_learn', default=DASH)}. Parts measured: "
        f"{'; '.join(parts) or DASH}."
        + (" (A `--quick` run: fewer images, one repeat.)" if get(e, "quick") is True else "")
        + "\n"
    )


@renderer("engine-speed")
def engine_speed(r: Results) -> str:
    rows = []
    for row in items(r, "engine", "single_layer"):
        mlnmf = f"{secs(get(row, 'mlnmf_seconds'))} ({num(get(row, 'mlnmf_n_iter'), 'd')} it)"
        seeded = _is_num(get(row, "reached_seeds")) and _is_num(get(row, "seeds"))
        if seeded:
            mlnmf += f", {num(get(row, 'reached_seeds'), 'd')}/{num(get(row, 'seeds'), 'd')} seeds"
        if get(row, "reached") is False:
            mlnmf = (
                f"stopped at {num(get(row, 'mlnmf_error'), '.4f')} > "
                f"{num(get(row, 'sklearn_error'), '.4f')}"
            )
            if seeded:
                short = get(row, "seeds") - get(row, "reached_seeds")
                mlnmf = f"{num(short, 'd')} of {num(get(row, 'seeds'), 'd')} seeds {mlnmf} (median)"
        sk_err = num(get(row, "sklearn_error"), ".4f")
        if items(row, "sklearn_error_range"):
            low, high = get(row, "sklearn_error_range", 0), get(row, "sklearn_error_range", -1)
            sk_err += f" ({num(low, '.4f')}-{num(high, '.4f')})"
        rows.append(
            [
                get(row, "matrix", default=DASH), yes_no(get(row, "tuned_on")),
                num(get(row, "rank"), "d"), get(row, "dtype", default=DASH),
                secs(get(row, "sklearn_seconds")), sk_err, mlnmf, num(get(row, "ratio"), ".3f"),
                num(get(row, "ratio_target"), "g"), _met(get(row, "ratio_met")),
            ]
        )  # fmt: skip
    return md_table(
        ["matrix", "tuned on", "rank", "dtype", "scikit-learn 200 it", "its error",
         "mlnmf to that error", "ratio", "target", "met"],
        "llrlrrrrrl",
        rows,
    )  # fmt: skip


def _speed_sentence(rows: Sequence[Any], what: str) -> str:
    if not rows:
        return f"{what}: not in the results."
    met, known, verdict = _tally(rows, "ratio_met")
    target = num(get(rows[0], "ratio_target"), "g")
    names = list(dict.fromkeys(str(get(x, "matrix")) for x in rows))
    both = [
        n for n in names if all(get(x, "ratio_met") is True for x in rows if get(x, "matrix") == n)
    ]
    text = (
        f"{what}: {met} of {known} runs reach scikit-learn's 200-iteration error in at most "
        f"{target} of its time"
        + (f" (both dtypes of {_and(both)})" if both else "")
        + f"; the target (every matrix, both dtypes) is {verdict}, worst "
        f"{_worst(rows, 'ratio', 'matrix', 'dtype')}."
    )
    untuned = [x for x in rows if get(x, "tuned_on") is False]
    if untuned and len(untuned) < len(rows):
        met_u, known_u, _ = _tally(untuned, "ratio_met")
        text += f" On the matrices it was not tuned on: {met_u} of {known_u}."
    partly = [
        f"{_name(x, 'matrix', 'dtype')} ({num(get(x, 'seeds') - get(x, 'reached_seeds'), 'd')} "
        f"of {num(get(x, 'seeds'), 'd')})"
        for x in rows
        if _is_num(get(x, "reached_seeds"))
        and _is_num(get(x, "seeds"))
        and get(x, "reached_seeds") < get(x, "seeds")
    ]
    if partly:
        text += (
            f" Seeds that stopped short of the error (counted as infinitely slow): {_and(partly)}."
        )
    short = [str(get(x, "matrix")) for x in rows if get(x, "reached") is False]
    if short:
        runs = [str(get(x, "matrix")) for x in rows]
        counted = ", ".join(
            f"{n} ({short.count(n)} of {runs.count(n)} runs)" for n in dict.fromkeys(short)
        )
        text += f" Stopped short of scikit-learn's error (counted as not met): {counted}."
    return text


@renderer("engine-speed-summary")
def engine_speed_summary(r: Results) -> str:
    single = items(r, "engine", "single_layer")
    photos = [x for x in single if get(x, "kind") == "photo"]
    small = [x for x in single if get(x, "kind") == "small"]
    return (
        _speed_sentence(photos, "Photos") + "\n" + _speed_sentence(small, "Small matrices") + "\n"
    )


@renderer("engine-per-iter")
def engine_per_iter(r: Results) -> str:
    rows = [
        [
            get(x, "matrix", default=DASH), get(x, "dtype", default=DASH),
            num(get(x, "rank"), "d"), ms(get(x, "per_iter_seconds"), ".3f"),
            ms(get(x, "products_seconds"), ".3f"), times(get(x, "per_iter_ratio"), ".1f"),
            pct(get(x, "python_overhead_share")),
            " / ".join(num(s, "d") for s in items(x, "sweeps_per_factor")) or DASH,
        ]
        for x in items(r, "engine", "single_layer")
    ]  # fmt: skip
    return md_table(
        ["matrix", "dtype", "rank", "one iteration", "two products", "iteration / products",
         "rank-1 / rank-r iteration", "sweeps (W / H)"],
        "llrrrrrl",
        rows,
    )  # fmt: skip


@renderer("engine-per-iter-summary")
def engine_per_iter_summary(r: Results) -> str:
    single = items(r, "engine", "single_layer")
    at512 = [x for x in single if isinstance(get(x, "per_iter_met"), bool)]
    met, known, verdict = _tally(at512, "per_iter_met")
    target = get(r, "engine", "targets", "per_iter_512")
    share = []
    for kind, label in (("photo", "photos"), ("small", "small matrices")):
        rows = [x for x in single if get(x, "kind") == kind]
        if rows:
            share.append(
                f"{span((get(x, 'python_overhead_share') for x in rows), pct)} on the {label}"
            )
    return (
        f"At 512x512 one iteration costs "
        f"{span((get(x, 'per_iter_ratio') for x in at512), lambda v: times(v, '.1f'))} the two "
        f"products: within the target of {times(target, 'g')} in {met} of {known} runs, "
        f"{verdict}. Python-overhead share (issue 16's estimate: the time of a rank-1 iteration "
        f"over that of an iteration at the full rank): {_and(share) or DASH}.\n"
    )


@renderer("engine-sweeps")
def engine_sweeps(r: Results) -> str:
    caps = items(r, "engine", "sweep_tradeoff")
    default = get(r, "engine", "defaults", "max_sweeps")
    dtypes = list(dict.fromkeys(str(get(c, "dtype")) for c in caps))
    by = {(str(get(c, "dtype")), str(get(c, "max_sweeps"))): c for c in caps}
    head = ["sweeps per factor at most"]
    for d in dtypes:
        head += [f"{d}: iteration / products", f"{d}: time / scikit-learn's", f"{d}: iterations"]
    rows = []
    for cap in dict.fromkeys(str(get(c, "max_sweeps")) for c in caps):
        row = [f"{cap} (default)" if cap == str(default) else cap]
        for d in dtypes:
            c = by.get((d, cap))
            row += [
                times(get(c, "per_iter_ratio"), ".1f"),
                num(get(c, "ratio"), ".2f"),
                num(get(c, "n_iter"), "d"),
            ]
        rows.append(row)
    matrix = _and(list(dict.fromkeys(str(get(c, "matrix")) for c in caps))) or DASH
    best = []
    for d in dtypes:
        rows_d = [c for c in caps if str(get(c, "dtype")) == d and _is_num(get(c, "ratio"))]
        if rows_d:
            top = min(rows_d, key=lambda c: get(c, "ratio"))
            best.append(
                f"{d}: cap {get(top, 'max_sweeps')} ({num(get(top, 'ratio'), '.2f')}"
                f"{', the default' if get(top, 'max_sweeps') == default else ''})"
            )
    steady = []
    for d in dtypes:
        ratios = [
            get(by.get((d, cap)), "per_iter_ratio")
            for cap in dict.fromkeys(str(get(c, "max_sweeps")) for c in caps)
        ]
        ratios = [x for x in ratios if _is_num(x)]
        if ratios and any(b < a for a, b in itertools.pairwise(ratios)):
            steady.append(d)
    text = f"On {matrix}, the cap that reached scikit-learn's error soonest: {'; '.join(best) or DASH}."
    if steady:
        text += (
            f" The cost of an iteration does not rise steadily with the cap in {_and(steady)}: "
            "single cells of this table move with the machine's load."
        )
    text += _same_sweeps(r, caps) + _caps_within_targets(r, caps, dtypes)
    return md_table(head, "l" + "r" * (len(head) - 1), rows) + "\n" + text + "\n"


def _same_sweeps(r: Results, caps: Sequence[Any]) -> str:
    """Caps at or above the sweeps the cost bound asks for on the matrix run the same
    computation: their differences are the machine's noise."""
    bound = max(
        (
            s
            for x in items(r, "engine", "single_layer")
            if any(get(x, "matrix") == get(c, "matrix") for c in caps)
            for s in items(x, "sweeps_per_factor")
            if isinstance(s, int)
        ),
        default=None,
    )
    if bound is None:
        return ""
    same = [
        c for c in caps if isinstance(get(c, "max_sweeps"), int) and get(c, "max_sweeps") >= bound
    ]
    values = list(dict.fromkeys(str(get(c, "max_sweeps")) for c in same))
    if len(values) < 2:
        return ""
    return (
        f" Caps {_and(values)} run the same computation here (the cost bound asks for at most "
        f"{bound} sweeps per factor on this shape), so the spread of their times "
        f"({span((get(c, 'ratio') for c in same), lambda v: num(v, '.2f'))}) is the machine's "
        "noise."
    )


def _caps_within_targets(r: Results, caps: Sequence[Any], dtypes: Sequence[str]) -> str:
    ratio_t = get(r, "engine", "targets", "ratio_photo")
    iter_t = get(r, "engine", "targets", "per_iter_512")
    if not (_is_num(ratio_t) and _is_num(iter_t)):
        return ""
    said = []
    for d in dtypes:
        ok = [
            str(get(c, "max_sweeps"))
            for c in caps
            if str(get(c, "dtype")) == d
            and _is_num(get(c, "ratio"))
            and _is_num(get(c, "per_iter_ratio"))
            and get(c, "ratio") <= ratio_t
            and get(c, "per_iter_ratio") <= iter_t
        ]
        said.append(f"{d}: {', '.join(ok) or 'none'}")
    return (
        f" Caps within both targets (time {num(ratio_t, 'g')} of scikit-learn's, an iteration "
        f"{times(iter_t, 'g')} the products): {'; '.join(said)}."
    )


@renderer("engine-encode")
def engine_encode(r: Results) -> str:
    rows = [
        [
            get(x, "what", default=DASH), get(x, "dtype", default=DASH),
            ms(get(x, "sklearn_seconds"), ".1f"), ms(get(x, "mlnmf_seconds"), ".1f"),
            num(get(x, "ratio"), ".2f"), times(get(x, "target"), "g"), _met(get(x, "met")),
            f"{num(get(x, 'sklearn_error'), '.5f')} / {num(get(x, 'mlnmf_error'), '.5f')}",
        ]
        for x in items(r, "engine", "encode")
    ]  # fmt: skip
    return md_table(
        ["task", "dtype", "`NMF.transform`", "`engine.encode`", "ratio", "target", "met",
         "error (scikit-learn / mlnmf)"],
        "llrrrrlr",
        rows,
    )  # fmt: skip


@renderer("engine-deep-time")
def engine_deep_time(r: Results) -> str:
    deep = items(r, "engine", "deep")
    rows = [
        [
            get(x, "image", default=DASH), "x".join(str(s) for s in items(x, "shape")) or DASH,
            get(x, "dtype", default=DASH),
            ",".join(str(k) for k in items(x, "ranks")) or DASH,
            secs(get(x, "deep_seconds"), ".2f"), secs(get(x, "sklearn_rank64_seconds"), ".2f"),
            times(get(x, "time_ratio")), times(get(x, "time_target"), "g"),
            _met(get(x, "time_met")),
        ]
        for x in deep
    ]  # fmt: skip
    met, known, verdict = _tally(deep, "time_met")
    target = times(get(r, "engine", "targets", "deep_time"), "g")
    missed = [_name(x, "image", "dtype") for x in deep if get(x, "time_met") is False]
    head = ["image", "size", "dtype", "ranks", "deep model", "scikit-learn rank 64, 200 it",
            "ratio", "target", "met"]  # fmt: skip
    return (
        md_table(head, "lllrrrrrl", rows)
        + f"\nThe whole deep model within {target} one scikit-learn fit: {met} of {known} runs, "
        f"{verdict}" + (f" (over it: {_and(missed)})" if missed else "") + ".\n"
    )


@renderer("engine-deep")
def engine_deep(r: Results) -> str:
    rows = []
    for model in items(r, "engine", "deep"):
        for i, rank in enumerate(items(model, "ranks")):
            rows.append(
                [
                    get(model, "image", default=DASH), get(model, "dtype", default=DASH),
                    str(i + 1), num(rank, "d"),
                    num(get(model, "full_greedy_errors", i), ".4f"),
                    num(get(model, "fine_tuned_errors", i), ".4f"),
                    times(get(model, "depth_over_full_greedy", i), ".3f"),
                    num(get(model, "svd_floors", i), ".4f"),
                ]
            )  # fmt: skip
    return md_table(
        ["image", "dtype", "depth", "rank", "greedy", "fine-tuned", "fine-tuned / greedy",
         "SVD floor"],
        "llrrrrrr",
        rows,
    )  # fmt: skip


@renderer("engine-deep-summary")
def engine_deep_summary(r: Results) -> str:
    models = items(r, "engine", "deep")
    t = get(r, "engine", "targets", default={})
    depth_met, known, depth_verdict = _tally(models, "depth_met")
    worst = DASH
    scored = [
        (ratio, i + 1, m)
        for m in models
        for i, ratio in enumerate(
            items(m, "depth_over_full_greedy_worst") or items(m, "depth_over_full_greedy")
        )
        if _is_num(ratio)
    ]
    if scored:
        ratio, depth, m = max(scored, key=lambda s: s[0])
        worst = f"{times(ratio, '.3f')} at depth {depth} ({_name(m, 'image', 'dtype')})"
    moves = []
    for depth in sorted({s[1] for s in scored}):
        at = [s[0] for s in scored if s[1] == depth]
        lower = sum(x < 1 for x in at)
        moves.append(f"depth {depth} in {lower} of {len(at)}")
    deep_met, deep_known, deep_verdict = _tally(models, "deepest_met")
    dead_met, dead_known, _ = _tally(models, "no_dead_met")
    seeds = get(models[0], "seeds") if models else None
    over = f" (each over {num(seeds, 'd')} seeds: its worst seed)" if _is_num(seeds) else ""
    median = f" (medians over {num(seeds, 'd')} seeds)" if _is_num(seeds) else ""
    return (
        f"Every depth within {times(get(t, 'depth_vs_greedy'), 'g')} its greedy error (a greedy "
        f"run to convergence, no fine-tuning) in {depth_met} of {known} runs{over}, "
        f"{depth_verdict}, worst {worst}. "
        f"Fine-tuning lowers the error below the greedy one at {_and(moves) or DASH} runs. The "
        f"deepest depth is "
        f"{span((get(m, 'deepest_over_sklearn_rank16') for m in models), lambda v: times(v, '.3f'))}"
        f" the error of a long scikit-learn rank-16 fit{median}: the "
        f"{times(get(t, 'deep_vs_single'), 'g')} target is met in {deep_met} of {deep_known} runs, "
        f"{deep_verdict}. Runs without a dead component (an all-zero column or row): {dead_met} "
        f"of {dead_known}.\n"
    )


@renderer("engine-frontier")
def engine_frontier(r: Results) -> str:
    f = get(r, "engine", "frontier", default={})
    weights = items(f, "by_weight")
    default = (
        get(r, "engine", "defaults", "middle_weight"),
        get(r, "engine", "defaults", "deep_weight"),
    )
    rows = []
    for w in weights:
        deep = _weight(get(w, "deep_weight"))
        if (get(w, "middle_weight"), get(w, "deep_weight")) == default:
            deep += " (default)"
        rows.append(
            [
                _weight(get(w, "middle_weight")), deep,
                times(get(w, "worst_shallow_ratio"), ".3f"),
                times(get(w, "median_shallow_ratio"), ".3f"),
                times(get(w, "worst_deepest_over_sklearn_rank16"), ".3f"),
                times(get(w, "median_deepest_over_sklearn_rank16"), ".3f"),
                f"{num(get(w, 'runs_with_dead_components'), 'd')} of {num(get(w, 'runs'), 'd')}",
            ]
        )  # fmt: skip
    table = md_table(
        ["middle weight", "deep weight", "shallower depths / greedy: worst", "median",
         "deepest / scikit-learn rank 16: worst", "median", "runs with a dead component"],
        "llrrrrr",
        rows,
    )  # fmt: skip
    return table + "\n" + _frontier_words(r, f, weights, default) + "\n"


_METHODS = {"nmf": "NMF", "semi": "Semi-NMF"}


def _frontier_words(r: Results, f: Any, weights: Sequence[Any], default: tuple[Any, Any]) -> str:
    frows = items(f, "rows")
    images = _and(list(dict.fromkeys(str(get(x, "image")) for x in frows)))
    methods = _and(
        [_METHODS.get(m, m) for m in dict.fromkeys(str(get(x, "method")) for x in frows)]
    )
    dtypes = _and(list(dict.fromkeys(str(get(x, "dtype")) for x in frows)))
    rounds = max((get(x, "rounds") for x in frows if _is_num(get(x, "rounds"))), default=None)
    shallow_t = get(r, "engine", "targets", "depth_vs_greedy")
    deep_t = get(r, "engine", "targets", "deep_vs_single")
    both = [
        w for w in weights
        if _is_num(get(w, "worst_shallow_ratio")) and _is_num(shallow_t) and _is_num(deep_t)
        and _is_num(get(w, "worst_deepest_over_sklearn_rank16"))
        and get(w, "worst_shallow_ratio") <= shallow_t
        and get(w, "worst_deepest_over_sklearn_rank16") <= deep_t
    ]  # fmt: skip
    keep = [
        w for w in weights
        if get(w, "middle_weight") == default[0] and _is_num(get(w, "deep_weight"))
        and _is_num(get(w, "worst_shallow_ratio")) and _is_num(shallow_t)
        and get(w, "worst_shallow_ratio") <= shallow_t
    ]  # fmt: skip
    largest = max(keep, key=lambda w: get(w, "deep_weight"), default=None)
    text = (
        f"Fine-tuning from the default greedy start on {images or DASH} ({methods or DASH}, "
        f"{dtypes or DASH}; up to {num(rounds, 'd')} rounds). Weights meeting both targets in "
        f"every run (shallower depths within {times(shallow_t, 'g')} greedy, deepest within "
        f"{times(deep_t, 'g')} scikit-learn): "
        + (", ".join(f"{_weight(get(w, 'middle_weight'))}/{_weight(get(w, 'deep_weight'))}" for w in both) or "none")
        + ". "
    )  # fmt: skip
    if largest is not None:
        chosen = (get(largest, "middle_weight"), get(largest, "deep_weight")) == default
        text += (
            f"The largest deep weight (middle weight {_weight(default[0])}) that keeps every "
            f"shallower depth within {times(shallow_t, 'g')} in every run is "
            f"{_weight(get(largest, 'deep_weight'))}; the default deep weight is "
            f"{_weight(default[1])}" + (", that one." if chosen else ".")
        )
    inf = [w for w in weights if get(w, "deep_weight") == "inf"]
    if inf:
        w = inf[0]
        text += (
            f" Fine-tuning the deepest product alone (deep weight inf, the old behaviour) lets a "
            f"shallower depth reach {times(get(w, 'worst_shallow_ratio'), '.2f')} its greedy error "
            f"and leaves a dead component in {num(get(w, 'runs_with_dead_components'), 'd')} of "
            f"{num(get(w, 'runs'), 'd')} runs."
        )
    # Its own environment when the frontier was measured alone, else the whole run's.
    env = get(f, "environment", default=None) or get(r, "engine", "environment", default={})
    note = get(f, "note")
    text += (
        f" (Measured at commit {str(get(env, 'git_commit', default=DASH))[:10]}, load "
        f"{num(get(env, 'load_average', 0), '.1f')}"
        + (f'; the benchmark\'s note: "{note}"' if isinstance(note, str) else "")
        + ".)"
    )
    return text


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


# ---------------------------------------------------------------- experiments: generated claims
#
# The sentences of docs/experiments.md "What the numbers show" and of the README that quote
# figures: every number read from experiments.json, so that a rerun cannot contradict them.


def _f2(x: Any) -> str:
    return num(x, ".2f")


def _config_label(r: Results, key: str, fine_tune: bool) -> str | None:
    for c in items(r, "experiments", key, "configs"):
        if get(c, "parameters", "fine_tune") is fine_tune:
            return str(get(c, "label"))
    return None


def _depth_means(r: Results, key: str, config: str | None) -> dict[int, dict[str, float]]:
    """Per depth, the mean over the inputs of every numeric field of the runs' depths."""
    sums: dict[int, dict[str, list[float]]] = {}
    for run in items(r, "experiments", key, "runs"):
        if config is not None and str(get(run, "config")) != config:
            continue
        for d in items(run, "depths"):
            depth = get(d, "depth")
            if not isinstance(depth, int) or not isinstance(d, dict):
                continue
            for field, value in d.items():
                if _is_num(value):
                    sums.setdefault(depth, {}).setdefault(str(field), []).append(value)
    return {
        depth: {f: sum(v) / len(v) for f, v in fields.items()} for depth, fields in sums.items()
    }


def _sim(r: Results, key: str, config: str | None, depth: int, kind: str) -> Any:
    for e in items(r, "experiments", key, "similarities"):
        if (
            (config is None or str(get(e, "config")) == config)
            and get(e, "depth") == depth
            and get(e, "kind") == kind
        ):
            return e
    return None


_SAMPLE_SETUPS = (
    ("samples", True, "our default (fine-tuned)"),
    ("samples", False, "our greedy pipeline"),
    ("samples_like_seed", None, "the seed's setup"),
)


def _sample_setups(r: Results) -> list[tuple[str, str | None, str]]:
    out = []
    for key, fine_tune, name in _SAMPLE_SETUPS:
        config = None if fine_tune is None else _config_label(r, key, fine_tune)
        if fine_tune is None or config is not None:
            out.append((key, config, name))
    return out


def _between(values: Iterable[Any]) -> str:
    """ "between -0.011 and 0.004" for numbers that may be negative."""
    xs = [v for v in values if _is_num(v)]
    return f"between {min(xs):.3f} and {max(xs):.3f}" if xs else DASH


@renderer("experiments-random-claim")
def experiments_random_claim(r: Results) -> str:
    rows = []
    for key, setup in (("random", "ours"), ("random_like_seed", "like the seed")):
        for s in items(r, "experiments", key, "summary"):
            rows.append((setup, s))
    means = [get(s, "corrected", "mean") for _, s in rows]
    lows = [(setup, s) for setup, s in rows if _is_num(get(s, "corrected", "low"))]
    outside = [
        (setup, s)
        for setup, s in lows
        if _is_num(get(s, "corrected", "high"))
        and not get(s, "corrected", "low") <= 0 <= get(s, "corrected", "high")
    ]
    text = (
        f"Over {num(get(r, 'experiments', 'repeats'), 'd')} repeats, with our pipeline and with "
        f"the seed's setup, above chance lies {_between(means)} "
        f"({len(means)} numbers: every depth, features and coefficients); "
        f"{len(lows) - len(outside)} of {len(lows)} 95% intervals contain 0"
    )
    if outside:
        words = [
            f"{setup}, depth {get(s, 'depth')} {get(s, 'kind')}, "
            f"{_interval(get(s, 'corrected'), 2)}, "
            + ("below chance" if get(s, "corrected", "high") < 0 else "above chance")
            for setup, s in outside
        ]
        text += f"; the exceptions: {'; '.join(words)}"
    gaps = [
        abs(get(s, "control", "mean") - get(s, "null", "mean"))
        for _, s in rows
        if _is_num(get(s, "control", "mean")) and _is_num(get(s, "null", "mean"))
    ]
    if gaps:
        text += (
            f". The control photograph (camera) against the random images is within "
            f"{max(gaps):.3f} of the null in every row"
        )
    return text + ".\n"


@renderer("experiments-samples-claim")
def experiments_samples_claim(r: Results) -> str:
    corrected: dict[str, list[Any]] = {"features": [], "coefficients": []}
    raw: dict[str, list[Any]] = {"features": [], "coefficients": []}
    per = []
    for key, config, name in _sample_setups(r):
        f = _sim(r, key, config, 1, "features")
        c = _sim(r, key, config, 1, "coefficients")
        for kind, e in (("features", f), ("coefficients", c)):
            corrected[kind].append(get(e, "corrected"))
            raw[kind].append(get(e, "across", "mean"))
        verdict = next(
            (
                get(v, "verdict")
                for v in items(r, "experiments", key, "verdicts")
                if config is None or str(get(v, "config")) == config
            ),
            None,
        )
        per.append(
            f"{name} {_f2(get(f, 'corrected'))} vs {_f2(get(c, 'corrected'))} "
            f"({_verdict_words(verdict)})"
        )
    return (
        f"At depth 1, above chance: features {span(corrected['features'], _f2)}, coefficients "
        f"{span(corrected['coefficients'], _f2)} over the three setups (raw similarity: features "
        f"{span(raw['features'], _f2)}, coefficients {span(raw['coefficients'], _f2)}). Features "
        f"against coefficients, corrected for chance: {'; '.join(per) or DASH}.\n"
    )


@renderer("experiments-self-claim")
def experiments_self_claim(r: Results) -> str:
    parts = []
    for key, config, name in _sample_setups(r):
        depths = sorted(
            {
                get(e, "depth")
                for e in items(r, "experiments", key, "similarities")
                if isinstance(get(e, "depth"), int)
                and (config is None or str(get(e, "config")) == config)
            }
        )
        said = []
        for depth in depths[:1] + depths[-1:] if len(depths) > 1 else depths:
            f = _sim(r, key, config, depth, "features")
            c = _sim(r, key, config, depth, "coefficients")
            said.append(
                f"{_f2(get(f, 'self', 'mean'))} / {_f2(get(c, 'self', 'mean'))} at depth {depth}"
            )
        f1 = _sim(r, key, config, 1, "features")
        c1 = _sim(r, key, config, 1, "coefficients")
        parts.append(
            f"{name}: {', '.join(said) or DASH} (two different photographs at depth 1: "
            f"{_f2(get(f1, 'across', 'mean'))} / {_f2(get(c1, 'across', 'mean'))})"
        )
    text = f"Self baselines (features / coefficients): {'; '.join(parts) or DASH}."
    rand = {
        str(get(s, "kind")): s
        for s in items(r, "experiments", "random", "summary")
        if get(s, "depth") == 1
    }
    if rand:
        f, c = rand.get("features"), rand.get("coefficients")
        text += (
            f" Random pixels, our pipeline, depth 1: two runs on one image "
            f"{_f2(get(f, 'self', 'mean'))} / {_f2(get(c, 'self', 'mean'))}, two different images "
            f"{_f2(get(f, 'across', 'mean'))} / {_f2(get(c, 'across', 'mean'))} (null "
            f"{_f2(get(f, 'null', 'mean'))} / {_f2(get(c, 'null', 'mean'))})."
        )
    return text + "\n"


def _errors_words(means: dict[int, dict[str, float]], field: str) -> str:
    return ", ".join(pct(get(means, d, field)) for d in sorted(means)) or DASH


@renderer("experiments-errors-claim")
def experiments_errors_claim(r: Results) -> str:
    greedy = _depth_means(r, "samples", _config_label(r, "samples", False))
    tuned = _depth_means(r, "samples", _config_label(r, "samples", True))
    seed = _depth_means(r, "samples_like_seed", None)
    text = (
        f"Mean over the three samples, depths {', '.join(str(d) for d in sorted(greedy)) or DASH}: "
        f"greedy error {_errors_words(greedy, 'relative_error')} against SVD floors "
        f"{_errors_words(greedy, 'svd_floor')}; with the default fine-tuning "
        f"{_errors_words(tuned, 'relative_error')}"
    )
    if tuned and greedy:
        last = max(tuned)
        gap = get(tuned, last, "relative_error")
        floor = get(tuned, last, "svd_floor")
        if _is_num(gap) and _is_num(floor):
            text += f" (depth {last}: {100 * (gap - floor):.1f} points above its floor)"
    text += "."
    if seed:
        cells = []
        for d in sorted(seed):
            e, f = get(seed, d, "relative_error"), get(seed, d, "svd_floor")
            ratio = f", {e / f:.1f} times it" if _is_num(e) and _is_num(f) and f else ""
            cells.append(
                f"{pct(e)} at depth {d} (rank {num(get(seed, d, 'rank'), '.0f')}, floor {pct(f)}"
                f"{ratio})"
            )
        shares = [get(seed, d, "top_feature_share") for d in sorted(seed)]
        ours = [get(greedy, d, "top_feature_share") for d in sorted(greedy)[:1]]
        text += (
            f" The seed's setup (its SVD start, no iterations): {'; '.join(cells)}; its largest "
            f"feature column holds {span(shares, pct)} of the features' energy, against "
            f"{span(ours, pct)} for our depth-1 features."
        )
    return text + "\n"


@renderer("experiments-summary")
def experiments_summary(r: Results) -> str:
    """README: the experiments' headline figures in three sentences."""
    rand = [
        get(s, "corrected", "mean")
        for key in ("random", "random_like_seed")
        for s in items(r, "experiments", key, "summary")
    ]
    feats, coefs, words = [], [], []
    for key, config, _ in _sample_setups(r):
        feats.append(get(_sim(r, key, config, 1, "features"), "corrected"))
        coefs.append(get(_sim(r, key, config, 1, "coefficients"), "corrected"))
        verdict = next(
            (
                get(v, "verdict")
                for v in items(r, "experiments", key, "verdicts")
                if config is None or str(get(v, "config")) == config
            ),
            None,
        )
        words.append(_verdict_words(verdict))
    more = sum("features more alike" in w for w in words)
    seed = _depth_means(r, "samples_like_seed", None)
    ours = _depth_means(r, "samples", _config_label(r, "samples", False))
    last = max(seed, default=None)
    e, f = get(seed, last, "relative_error"), get(seed, last, "svd_floor")
    times_floor = f"{e / f:.1f}" if _is_num(e) and _is_num(f) and f else DASH
    return (
        f"Random pixels: above chance {_between(rand)} at every depth, in both setups. "
        f"Photographs at depth 1: features {span(feats, _f2)} and coefficients "
        f"{span(coefs, _f2)} above chance; features more alike than coefficients in {more} of "
        f"{len(words)} setups. The seed's setup: its largest feature column holds "
        f"{span((get(seed, d, 'top_feature_share') for d in seed), pct)} of the features' energy "
        f"(ours: {span((get(ours, d, 'top_feature_share') for d in sorted(ours)[:1]), pct)} at "
        f"depth 1), and its depth-{last} error is {pct(e)}, {times_floor} times its SVD floor.\n"
    )


# ---------------------------------------------------------------- like-seed spread (bench_like_seed.py)


def _mmm(stat: Any) -> str:
    return " / ".join(num(get(stat, k), ".4f") for k in ("min", "median", "max"))


@renderer("like-seed-spread")
def like_seed_spread(r: Results) -> str:
    rows = []
    for case in items(r, "like_seed", "cases"):
        runs = get(case, "runs")
        for d in items(case, "depths"):
            rows.append(
                [
                    get(case, "case", default=DASH),
                    ",".join(str(k) for k in items(case, "ranks")) or DASH,
                    num(get(d, "depth"), "d"), num(get(d, "rank"), "d"),
                    _mmm(get(d, "writeup")), _mmm(get(d, "ours")),
                    f"{num(get(d, 'ours_inside_writeup_range'), 'd')} of {num(runs, 'd')}",
                ]
            )  # fmt: skip
    table = md_table(
        ["case", "ranks", "depth", "rank", "write-up min / median / max",
         "ours min / median / max", "ours inside the write-up's range"],
        "llrrrrr",
        rows,
    )  # fmt: skip
    return table + "\n" + like_seed_summary(r, detail=True)


@renderer("like-seed-summary")
def like_seed_summary(r: Results, detail: bool = False) -> str:
    """How many of our like-seed errors beyond depth 1 fall inside the write-up's spread."""
    cases = items(r, "like_seed", "cases")
    inside = total = higher = deeper = 0
    per = []
    for case in cases:
        runs = get(case, "runs")
        got = 0
        n = 0
        for d in items(case, "depths"):
            if get(d, "depth") == 1 or not _is_num(get(d, "ours_inside_writeup_range")):
                continue
            if not _is_num(runs):
                continue
            got += get(d, "ours_inside_writeup_range")
            n += runs
            deeper += 1
            w, o = get(d, "writeup", "median"), get(d, "ours", "median")
            higher += _is_num(w) and _is_num(o) and o > w
        inside, total = inside + got, total + n
        per.append(f"{get(case, 'case', default=DASH)} {got} of {n}")
    if not total:
        return f"The like-seed spread is not in the results ({DASH}).\n"
    env = get(r, "like_seed", "environment", default={})
    text = (
        f"Beyond depth 1, {inside} of {total} of our like-seed errors fall inside the range of "
        f"the write-up's own runs ({'; '.join(per)}); our median is above the write-up's in "
        f"{higher} of {deeper} rows"
    )
    if not detail:
        return text + " (`benchmarks/bench_like_seed.py`, docs/experiments.md).\n"
    depth1 = [
        get(d, "ours_inside_writeup_range") == get(c, "runs")
        for c in cases
        for d in items(c, "depths")
        if get(d, "depth") == 1
    ]
    return (
        text + f". At depth 1 every run of ours is inside the write-up's range in "
        f"{sum(depth1)} of {len(depth1)} cases. (Write-up: {get(r, 'like_seed', 'writeup_seeds', default=DASH)}; "
        f"ours: {get(r, 'like_seed', 'our_seeds', default=DASH)}; SciPy "
        f"{get(env, 'scipy', default=DASH)}, {day(get(r, 'like_seed', default={}))}, commit "
        f"{str(get(env, 'git_commit', default=DASH))[:10]}.)\n"
    )


@renderer("like-seed-start")
def like_seed_start(r: Results) -> str:
    """The diagnosis: the write-up's layer 1 fixed, its layer-2 starts against our tie-break."""
    s = get(r, "like_seed", "start_versus_input", default={})
    runs = items(s, "runs")
    rows = [
        [num(get(x, "layer1_seed"), "d"), _mmm(get(x, "writeup")), _mmm(get(x, "ours"))]
        for x in runs
    ]
    above = sum(
        _is_num(get(x, "ours", "median"))
        and _is_num(get(x, "writeup", "max"))
        and get(x, "ours", "median") > get(x, "writeup", "max")
        for x in runs
    )
    head = ["layer-1 run", "write-up layer-2 starts: min / median / max",
            "ours on the same input: min / median / max"]  # fmt: skip
    return (
        f"{get(s, 'case', default=DASH)}, one layer-1 output of the write-up at a time:\n\n"
        + md_table(head, "rrr", rows)
        + f"\nOur median lies above the write-up's largest error in {above} of {len(runs)} "
        "layer-1 runs.\n"
    )


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


# ---------------------------------------------------------------- collections (bench_collections.py)
#
# benchmarks/results/collections.json: "environment", "threads", "seeds"; "swimmer" (run
# counts and per-run rows), "faces" ("learn" and "encode", each with its ratio and target),
# "digits" (one row per representation: NMI, accuracy, mean cosine within / between digits).


def _verdict(value: Any, target: Any) -> str:
    """The verdict on ``value <= target``: "met", "not met", or "—" when either is missing."""
    if not (_is_num(value) and _is_num(target)):
        return DASH
    return "met" if value <= target else "not met"


def _runs(got: Any, runs: Any) -> str:
    return f"{num(got, 'd')} of {num(runs, 'd')}"


def _measured_on(data: Any) -> str:
    """Threads, CPU, cores, NumPy, scikit-learn, date and commit of a results file, in words."""
    env = get(data, "environment", default={})
    threads = get(data, "threads")
    if not _is_num(threads):
        threads = get(env, "blas_thread_variables", "OPENBLAS_NUM_THREADS")
    count = str(threads) if threads is not None else DASH
    return (
        f"{'one BLAS thread' if count == '1' else f'{count} BLAS threads'}, "
        f"{get(env, 'cpu', default=DASH)} with {get(env, 'cores', default=DASH)} cores shared "
        f"with other work, NumPy {get(env, 'numpy', default=DASH)}, scikit-learn "
        f"{get(env, 'scikit-learn', default=DASH)}, {day(data)}, commit "
        f"{str(get(env, 'git_commit', default=DASH))[:10]}"
    )


@renderer("collections-setup")
def collections_setup(r: Results) -> str:
    c = get(r, "collections", default={})
    return (
        f"Results in `benchmarks/results/collections.json`: {_measured_on(c)}; "
        f"{num(get(c, 'seeds'), 'd')} swimmer seeds per dtype.\n"
    )


def _swimmer_counts(s: Any) -> dict[str, Any]:
    return {
        k: get(s, k)
        for k in ("mlnmf_recovered_runs", "sklearn_recovered_runs", "mlnmf_nndsvda_recovered_runs",
                  "hals_w_first_recovered_runs", "runs")
    }  # fmt: skip


def _swimmer_per_dtype(s: Any) -> list[list[str]]:
    """Rows: per working precision, how many seeds' runs recovered every limb position,
    mlnmf's defaults against scikit-learn's on the same seeds."""
    rows = []
    for dtype in ("float64", "float32"):
        runs = [x for x in items(s, "rows") if get(x, "dtype") == dtype]
        if not runs:
            continue
        ours = sum(
            _is_num(get(x, "mlnmf_worst_cosine")) and get(x, "mlnmf_worst_cosine") >= 0.9
            for x in runs
        )
        theirs = sum(
            _is_num(get(x, "sklearn_worst_cosine")) and get(x, "sklearn_worst_cosine") >= 0.9
            for x in runs
        )
        default = " (learn's default)" if get(s, "defaults_dtype") == dtype else ""
        rows.append(
            [
                f"swimmer, rank 17, {dtype}{default}: seeds recovering all 16 limb positions",
                _runs(ours, len(runs)),
                f"scikit-learn's NMF: {_runs(theirs, len(runs))}",
                "at least as many" if ours >= theirs else "fewer",
            ]
        )
    return rows


@renderer("collections-swimmer")
def collections_swimmer(r: Results) -> str:
    s = get(r, "collections", "swimmer", default={})
    n = _swimmer_counts(s)
    runs = n["runs"]
    seeds = get(r, "collections", "seeds")
    recovered = get(s, "defaults_recover_all")
    text = (
        f"- **Swimmer**, rank 17 with the defaults (seed 0, {get(s, 'defaults_dtype', default='float32')}): "
        + (
            "every limb position is recovered as one atom"
            if recovered is True
            else "not every limb position is recovered as one atom"
            if recovered is False
            else DASH
        )
        + f" (the worst limb's best cosine is {num(get(s, 'defaults_worst_cosine'), '.3f')}, "
        f"recovered: >= 0.9; issue 13's target, "
        f"**{'met' if recovered is True else 'not met' if recovered is False else DASH}**). Rank 17 on data of rank 13 has many exact factorisations and "
        f"which one a run reaches depends on its path: over {num(seeds, 'd')} seeds x 2 dtypes "
        f"mlnmf recovers all 16 in {_runs(n['mlnmf_recovered_runs'], runs)} runs, "
        f"scikit-learn's NMF (NNDSVDa, `cd`) in {_runs(n['sklearn_recovered_runs'], runs)}. "
        f"With decompose's start, NNDSVDa (zeros filled with the mean), mlnmf recovers them in "
        f"{_runs(n['mlnmf_nndsvda_recovered_runs'], runs)}"
    )
    ours, filled = n["mlnmf_recovered_runs"], n["mlnmf_nndsvda_recovered_runs"]
    if _is_num(ours) and _is_num(filled):
        text += (
            ", which is why `learn` starts from NNDSVD (zeros kept)"
            if filled < ours
            else " (no fewer than from NNDSVD, `learn`'s start)"
        )
    text += (
        f"; plain one-sweep HALS (W first) from the NNDSVDa start, in "
        f"{_runs(n['hals_w_first_recovered_runs'], runs)}."
    )
    return text + "\n"


@renderer("collections-faces")
def collections_faces(r: Results) -> str:
    f = get(r, "collections", "faces", default={})
    lrn, enc = get(f, "learn", default={}), get(f, "encode", default={})
    ranks = ",".join(str(k) for k in items(f, "ranks")) or DASH
    return (
        f"- **Faces** (`lfw_subset`, {get(f, 'matrix', default=DASH)}): `learn --ranks {ranks}` "
        f"reaches {pct(get(lrn, 'mlnmf_deep_error'), '.2f')} at the deepest depth vs "
        f"{pct(get(lrn, 'sklearn_rank10_error'), '.2f')} for scikit-learn's rank-10 NMF "
        f"({times(get(lrn, 'ratio'), '.3f')}, target {times(get(lrn, 'target'), 'g')}: "
        f"**{_verdict(get(lrn, 'ratio'), get(lrn, 'target'))}**; the rank-10 SVD floor is "
        f"{pct(get(lrn, 'svd_floor_rank10'), '.2f')}, a one-layer rank-10 `learn` "
        f"{pct(get(lrn, 'mlnmf_single_rank10_error'), '.2f')}), in "
        f"{secs(get(lrn, 'mlnmf_seconds'), '.2f')} vs {secs(get(lrn, 'sklearn_seconds'), '.2f')}. "
        f"`encode` of the held-out faces: {pct(get(enc, 'mlnmf_error'), '.2f')} vs "
        f"{pct(get(enc, 'sklearn_transform_error'), '.2f')} for scikit-learn's `transform` "
        f"({times(get(enc, 'ratio'), '.3f')}, target {times(get(enc, 'target'), 'g')}: "
        f"**{_verdict(get(enc, 'ratio'), get(enc, 'target'))}**), "
        f"{ms(get(enc, 'mlnmf_seconds'), '.1f')} vs {ms(get(enc, 'sklearn_seconds'), '.1f')} (best of 7).\n"
    )


def _digits_label(row: Any) -> str:
    """A digits row's name in words: "nmf greedy ranks 40,20,10" -> "deep NMF 40,20,10, greedy"."""
    name = str(get(row, "representation", default=DASH))
    words = name.split()
    if len(words) >= 4 and words[-2] == "ranks":
        method = {"nmf": "NMF", "semi": "Semi-NMF"}.get(words[0], words[0])
        kind = " ".join(words[1:-2])
        if kind == "one layer":
            return f"{method} rank {words[-1]}"
        return f"deep {method} {words[-1]}, {kind}"
    return name


@renderer("collections-digits")
def collections_digits(r: Results) -> str:
    rows = items(r, "collections", "digits")
    table = md_table(
        ["codes", "dims", "NMI", "accuracy", "cosine within / between digits",
         "relative error", "learn time"],
        "lrrrrrr",
        [
            [
                _digits_label(x), num(get(x, "dims"), "d"), num(get(x, "nmi"), ".3f"),
                num(get(x, "accuracy"), ".3f"),
                f"{num(get(x, 'cosine_within'), '.2f')} / {num(get(x, 'cosine_between'), '.2f')}",
                pct(get(x, "relative_error")), secs(get(x, "seconds"), ".2f"),
            ]
            for x in rows
        ],
    )  # fmt: skip
    return table + "\n" + _digits_claims(rows)


def _digits_claims(rows: Sequence[Any]) -> str:
    def nmi(pred: Callable[[str], bool]) -> list[float]:
        return [
            get(x, "nmi")
            for x in rows
            if pred(str(get(x, "representation", default=""))) and _is_num(get(x, "nmi"))
        ]

    raw = nmi(lambda n: n == "raw pixels")
    one = nmi(lambda n: "one layer" in n)
    deep = nmi(lambda n: "greedy" in n or "fine-tuned" in n)
    if not (raw and one and deep):
        return f"The digits comparison is not in the results ({DASH}).\n"
    best_deep, best_flat = max(deep), max(raw + one)
    text = (
        f"Best NMI of the deep codes {best_deep:.3f}, of raw pixels {max(raw):.3f}, of one-layer "
        f"codes {max(one):.3f}: on this data deep codes "
        + ("cluster better than" if best_deep > best_flat else "do not cluster better than")
        + " raw pixels and one-layer codes"
        + (
            "; Trigeorgis et al.'s gain (on faces, with their settings) is not reproduced here"
            if best_deep <= best_flat
            else ""
        )
        + "."
    )
    tuned = []
    for method, label in (("nmf", "NMF"), ("semi", "Semi-NMF")):
        g = nmi(lambda n, m=method: n.startswith(m + " greedy"))
        t = nmi(lambda n, m=method: n.startswith(m + " fine-tuned"))
        if g and t:
            tuned.append(f"from {g[0]:.3f} to {t[0]:.3f} for deep {label}")
    if tuned:
        text += f" Fine-tuning moves the deep codes' NMI {_and(tuned)}."
    alike = [
        x for x in rows if _is_num(get(x, "cosine_within")) and _is_num(get(x, "cosine_between"))
    ]
    closer = sum(get(x, "cosine_within") > get(x, "cosine_between") for x in alike)
    text += (
        f" Codes of one digit are more alike than codes of different digits (mean cosine within "
        f"above between) in {closer} of {len(alike)} representations.\n"
    )
    return text


@renderer("collections-headline")
def collections_headline(r: Results) -> str:
    """README: swimmer recovery, faces learn and encode against their targets."""
    c = get(r, "collections", default={})
    s = get(c, "swimmer", default={})
    lrn, enc = get(c, "faces", "learn", default={}), get(c, "faces", "encode", default={})
    n = _swimmer_counts(s)
    ours, theirs = n["mlnmf_recovered_runs"], n["sklearn_recovered_runs"]
    versus = DASH
    if _is_num(ours) and _is_num(theirs):
        versus = "at least as many" if ours >= theirs else "fewer"
    rows = [
        [
            "swimmer, rank 17 with the defaults: the worst limb position's best cosine",
            num(get(s, "defaults_worst_cosine"), ".3f"),
            ">= 0.9",
            yes_no(get(s, "defaults_recover_all"), "met", "not met"),
        ],
        *_swimmer_per_dtype(s),
        [
            f"swimmer, rank 17, {num(get(c, 'seeds'), 'd')} seeds x 2 dtypes: runs recovering "
            "all 16 limb positions",
            _runs(ours, n["runs"]),
            f"scikit-learn's NMF: {_runs(theirs, n['runs'])}",
            versus,
        ],
        [
            "faces, `learn --ranks 40,20,10`: error / scikit-learn's rank-10 NMF",
            times(get(lrn, "ratio"), ".3f"),
            f"<= {times(get(lrn, 'target'), 'g')}",
            _verdict(get(lrn, "ratio"), get(lrn, "target")),
        ],
        [
            "faces, `encode` of 50 held-out faces: error / scikit-learn's `transform`",
            times(get(enc, "ratio"), ".3f"),
            f"<= {times(get(enc, 'target'), 'g')}",
            _verdict(get(enc, "ratio"), get(enc, "target")),
        ],
    ]
    return md_table(["measured", "mlnmf", "reference / target", "verdict"], "lrll", rows) + (
        f"\n`benchmarks/bench_collections.py`, {day(c)}; details in "
        "[docs/collections.md](docs/collections.md).\n"
    )


# ---------------------------------------------------------------- streaming (bench_streaming.py)
#
# benchmarks/results/streaming.json: "environment", "peak_memory" (runs of `learn --memory`
# on 3 sizes, baselines, linear fit), "blocked_vs_in_memory", "dask_vs_local", "scaling_1m".

# "Linear" wall time: a straight line fits every size within LINEAR_RESIDUAL (relative), and
# the time per image of the largest collection is at most LINEAR_PER_IMAGE x the smallest's.
LINEAR_RESIDUAL = 0.1
LINEAR_PER_IMAGE = 1.25


def _mb(value: Any, spec: str = ".1f") -> str:
    return num(value, spec, " MB")


def _gb(mb: Any) -> str:
    """Megabytes (2^20 bytes) shown in GB (2^30) with one decimal."""
    return num(mb / 1024, ".1f", " GB") if _is_num(mb) else DASH


def _bytes(value: Any) -> str:
    if not _is_num(value):
        return DASH
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"


@renderer("streaming-setup")
def streaming_setup(r: Results) -> str:
    s = get(r, "streaming", default={})
    p = get(s, "peak_memory", default={})
    it = get(p, "iterations", default={})
    ranks = ",".join(str(k) for k in items(p, "ranks")) or DASH
    return (
        f"Results in `benchmarks/results/streaming.json`: {_measured_on(s)}; "
        f"{secs(get(s, 'total_seconds'), '.0f')} in all. Generated collections of 32 x 32 grey "
        f"PNGs, `--ranks {ranks}`, the same `--memory {num(get(p, 'memory_mb'), 'd')}` for every "
        f"size; few iterations (`--max-iter {num(get(it, 'max_iter'), 'd')} --fine-tune-iter "
        f"{num(get(it, 'fine_tune_iter'), 'd')} --tol {num(get(it, 'tol'), 'g')}`) so that every "
        f"size does the same work per image.\n"
    )


@renderer("streaming-peak")
def streaming_peak(r: Results) -> str:
    rows = [
        [
            num(get(x, "images"), ",d"),
            f"{num(get(x, 'blocks'), 'd')} x {num(get(x, 'block_columns'), ',d')}",
            _mb(get(x, "peak_mb")), secs(get(x, "seconds"), ".1f"),
            secs(get(x, "report_seconds", "load"), ".1f"), pct(get(x, "relative_error"), ".2f"),
        ]
        for x in items(r, "streaming", "peak_memory", "runs")
    ]  # fmt: skip
    return md_table(
        ["images", "blocks x columns", "peak RSS", "wall time", "of which decoding",
         "relative error"],
        "rrrrrr",
        rows,
    )  # fmt: skip


@renderer("streaming-claims")
def streaming_claims(r: Results) -> str:
    s = get(r, "streaming", default={})
    p = get(s, "peak_memory", default={})
    runs = items(p, "runs")
    budget = get(p, "memory_mb")
    base = get(p, "baseline", "peak_mb")
    ratio, target = get(p, "peak_ratio_largest_smallest"), get(p, "peak_target")
    within = get(p, "all_within_baseline_plus_budget")
    lines = [
        f"- **Peak memory**: largest / smallest {num(ratio, '.2f')} (target <= "
        f"{num(target, 'g')}: **{_verdict(ratio, target)}**); every run within the stated "
        f"baseline plus the budget ({_mb(base)}, `learn` on 16 images: every import, font and "
        f"buffer of a run, + {_mb(budget, 'g')}): {yes_no(within)}. A bare import of what "
        f"`learn` imports peaks at {_mb(get(p, 'imports_only', 'peak_mb'))}."
    ]
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        pa, pb, na, nb = (get(a, "peak_mb"), get(b, "peak_mb"), get(a, "images"),
                          get(b, "images"))  # fmt: skip
        if all(_is_num(v) for v in (pa, pb, na, nb)) and nb != na:
            per = (pb - pa) * 2**20 / (nb - na)
            lines[-1] += (
                f" From {na:,} to {nb:,} images the peak moves by {per:.0f} bytes an image: "
                "the names and per-image errors, counted in the budget (which is why the "
                "blocks shrink)."
            )
    fit = get(p, "linear_fit", default={})
    per_image = get(p, "seconds_per_image_ratio_largest_smallest")
    residual = get(fit, "worst_relative_residual")
    checks = [_verdict(residual, LINEAR_RESIDUAL), _verdict(per_image, LINEAR_PER_IMAGE)]
    linear = DASH if DASH in checks else "not met" if "not met" in checks else "met"
    lines.append(
        f"- **Wall time**: {secs(get(fit, 'seconds_per_1000_images'), '.2f')} per 1,000 images "
        f"+ {secs(get(fit, 'fixed_seconds'), '.2f')}, worst residual of the fit "
        f"{pct(residual, '.1f')} (at most {LINEAR_RESIDUAL:.0%}); time per image, largest over "
        f"smallest collection, {num(per_image, '.2f')} (at most {LINEAR_PER_IMAGE:g}). Linear "
        f"in the number of images: **{linear}**."
    )
    c = get(s, "blocked_vs_in_memory", default={})
    sec = get(c, "seconds_best", default=None) or get(c, "seconds_best_of_2", default={})
    err = get(c, "final_relative_error", default={})
    it = get(c, "iterations", default={})
    lines.append(
        f"- **Blocked vs in memory** ({num(get(c, 'images'), ',d')} images, fits, "
        f"{num(get(it, 'max_iter'), 'd')} + {num(get(it, 'fine_tune_iter'), 'd')} iterations, "
        f"best of {num(get(c, 'repeats', default=2), 'd')} interleaved runs in one process): "
        f"engine on the whole matrix {secs(get(sec, 'engine'))}, "
        f"blocked solver with {num(get(c, 'blocks'), 'd')} blocks {secs(get(sec, 'blocked'))} "
        f"({times(get(c, 'blocked_over_engine'))}, target <= {times(get(c, 'target'), 'g')}: "
        f"**{_verdict(get(c, 'blocked_over_engine'), get(c, 'target'))}**), the same with one "
        f"block {secs(get(sec, 'one_block'))} (blocked / one block "
        f"{times(get(c, 'blocked_over_one_block'))}). Errors: engine "
        f"{pct(get(err, 'engine'), '.2f')}, {num(get(c, 'blocks'), 'd')} blocks "
        f"{pct(get(err, 'blocked'), '.3f')}, one block {pct(get(err, 'one_block'), '.3f')} (in "
        f"float32 the blocks round differently: the same quality, not the same factors)."
    )
    d = get(c, "with_defaults", default={})
    e_it, b_it = items(d, "engine", "iterations"), items(d, "blocked", "iterations")
    lines.append(
        f"- **With the defaults** (`--tol 1e-5`, same collection): blocked "
        f"{pct(get(d, 'blocked', 'relative_error'), '.3f')} in "
        f"{secs(get(d, 'blocked', 'seconds'), '.1f')} vs the engine's "
        f"{pct(get(d, 'engine', 'relative_error'), '.3f')} in "
        f"{secs(get(d, 'engine', 'seconds'), '.1f')}; iterations per layer and of fine-tuning "
        f"{' + '.join(num(x, 'd') for x in b_it) or DASH} vs "
        f"{' + '.join(num(x, 'd') for x in e_it) or DASH}."
    )
    k = get(s, "dask_vs_local", default={})
    diff, dt = get(k, "max_relative_difference"), get(k, "target")
    same = (
        "identical"
        if diff == 0 and _is_num(diff)
        else f"max relative difference {num(diff, '.2g')}"
    )
    lines.append(
        f"- **Dask**, {num(get(k, 'workers'), 'd')}-worker `LocalCluster` vs the local streamed "
        f"run on {num(get(k, 'images'), ',d')} images ({num(get(k, 'blocks'), 'd')} blocks, "
        f"{num(get(k, 'passes'), 'd')} passes): factors {same} (target {num(dt, '.0e')}: "
        f"**{_verdict(diff, dt)}**); {secs(get(k, 'seconds', 'dask'), '.1f')} vs "
        f"{secs(get(k, 'seconds', 'local'), '.1f')}: about "
        f"{secs(get(k, 'overhead_per_pass_s'), '.2f')} of scheduling per pass on this machine."
    )
    return "\n".join(lines) + "\n"


@renderer("streaming-dask-overhead")
def streaming_dask_overhead(r: Results) -> str:
    k = get(r, "streaming", "dask_vs_local", default={})
    return (
        f"On one small machine Dask is {times(get(k, 'dask_over_local'), '.1f')} slower than the "
        f"local streamed run (benchmark: each pass is a round of tasks, about "
        f"{secs(get(k, 'overhead_per_pass_s'), '.2f')} of scheduling on a loaded 2-core "
        "machine); it pays when the collection is larger than one machine's disk or memory "
        "bandwidth.\n"
    )


def _micro(value: Any) -> str:
    return num(value * 1e6, ".2f") if _is_num(value) else DASH


@renderer("streaming-1m")
def streaming_1m(r: Results) -> str:
    m = get(r, "streaming", "scaling_1m", default={})
    one = get(m, "streamed_single_machine", default={})
    ranks = ",".join(str(k) for k in items(m, "ranks")) or DASH
    nblocks = DASH
    if _is_num(get(m, "images")) and _is_num(get(m, "block_columns")) and get(m, "block_columns"):
        nblocks = f"{-(-get(m, 'images') // get(m, 'block_columns')):,d}"
    rows = [
        [
            "streamed, 1 machine",
            f"none ({num(get(one, 'cache_gb'), '.1f')} GB cache on disk)",
            _gb(get(one, "memory_mb")),
            secs(get(one, "seconds_per_iteration"), ".2f"),
        ]
    ]
    for x in items(m, "rows"):
        w = get(x, "workers")
        if _is_num(w) and w < 2:
            continue
        rows.append(
            [
                f"{num(w, 'd')} Dask workers ({num(get(x, 'blocks'), 'd')} blocks)",
                _bytes(get(x, "bytes_per_iteration")),
                _gb(get(x, "per_worker_memory_mb")),
                secs(get(x, "seconds_per_iteration"), ".2f"),
            ]
        )
    head = (
        f"- **A million images on paper** ({num(get(m, 'images'), ',d')} images of "
        f"{num(get(m, 'pixels'), 'd')} pixels, ranks {ranks}, float32, blocks sized by a "
        f"{_mb(get(m, 'budget_mb'), 'g')} budget: {nblocks} blocks of "
        f"{num(get(m, 'block_columns'), ',d')} images), from the measured "
        f"{_micro(get(m, 'measured_seconds_per_column_per_pass'))} microseconds per image per pass and {secs(get(m, 'measured_dask_overhead_per_pass_s'), '.2f')}"
        f" of Dask overhead per pass:\n\n"
    )
    table = md_table(
        ["run", "data moved per iteration", "memory per worker", "time per iteration"],
        "lrrr",
        rows,
    )
    table = "".join("  " + line + "\n" for line in table.splitlines())
    return (
        head + table + f"\n  Data moved: each block's partial sums "
        f"({_bytes(get(m, 'one_block_partial_sums_bytes'))}: [H; Hy] X^T, H H^T, Hy Hy^T) once "
        "up the tree plus W^T with its Gram matrix to each block's task; memory per worker: "
        "its columns of X and four copies of its columns of the H's (H, its extrapolation, the "
        "best so far, the pass's new state), plus one block's working memory (the budget). "
        "Dask's scheduling overhead per pass bounds the gain from more workers.\n"
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
