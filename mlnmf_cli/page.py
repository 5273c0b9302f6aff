"""``OUT/index.html``: one page listing every input of a decompose run.

The page is built from what is on disk (the batch's rows or ``summary.json``,
and every ``OUT/*/report.json``), so it can be written again after any run,
including several runs into one folder: ``python -m mlnmf_cli.page OUT``.
It is self-contained: no network, no script framework, one small inline
script that sorts the table and checks that every picture loaded. Every name
is escaped; names that are not valid text (undecodable bytes) are shown with
U+FFFD and linked by their bytes.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlnmf_cli import storage

__all__ = ["FILES", "collect", "render_index", "write_experiment_page", "write_index"]

INDEX = "index.html"

FILES: dict[str, str] = {
    "summary.png": "the figure: the pictures with error, SVD floor and PSNR per depth; every "
    "W and H with components sorted by energy, a colour bar each, energy bars beside H",
    "original.png": "the pixels that were decomposed (the grey luminance under --channels gray)",
    "reconstruction.png": "the model at the deepest depth, clipped to 0..1",
    "reconstruction_depth{d}.png": "the model at depth d",
    "features_layer{l}.png": "W_l as an exact data image: one block per element, each column "
    "scaled to its own maximum (no scale shown), in the engine's order",
    "coefficients_layer{l}.png": "H_l likewise, each row scaled to its own maximum",
    "features_depth{d}.png": "W_1...W_d (the features in pixel space), each column scaled "
    "to its own maximum",
    "model.npz": "the factors in the engine's order (not sorted), for mlnmf reconstruct",
    "report.json": "every number and setting of this result",
}
"""What each file of a result folder holds (the page explains them)."""


# --------------------------------------------------------------------------- data


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _folder_name(row: Mapping[str, Any]) -> str | None:
    folder = row.get("folder")
    return Path(str(folder)).name if folder else None


def _number(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _entry(out: Path, row: Mapping[str, Any], *, earlier: bool = False) -> dict[str, Any]:
    """What the page shows of one input: the row, completed from its folder's report."""
    name = _folder_name(row)
    folder = out / name if name else None
    report = _read_json(folder / "report.json") if folder is not None else None
    entry: dict[str, Any] = {
        "input": str(row.get("input", name or "")),
        "status": str(row.get("status") or "ok"),
        "message": row.get("error"),
        "folder": name,
        "earlier": earlier,
        "relative_error": _number(row.get("relative_error")),
        "svd_floor": _number(row.get("svd_floor")),
        "psnr": _number(row.get("psnr")),
        "size": "",
        "channels": row.get("channels") or "",
        "ranks": row.get("ranks") or "",
        "seconds": _number(row.get("seconds")),
        "files": [],
    }
    if isinstance(report, dict):
        try:
            entry["relative_error"] = _number(report["relative_error"])
            entry["psnr"] = _number(report.get("psnr"))
            entry["svd_floor"] = _number((report.get("svd_floor") or {}).get("relative_error"))
            image = report.get("image") or {}
            entry["size"] = f"{image.get('height', '?')}x{image.get('width', '?')}"
            entry["channels"] = report.get("channels") or entry["channels"]
            ranks = (report.get("parameters") or {}).get("ranks") or []
            entry["ranks"] = ",".join(str(r) for r in ranks) or entry["ranks"]
        except (KeyError, TypeError, AttributeError):
            entry["message"] = entry["message"] or "report.json is not a result report"
    if folder is not None and folder.is_dir():
        try:
            entry["files"] = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        except OSError:
            entry["files"] = []
    return entry


def collect(out: Path, rows: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The entries of the page for ``out``, in order.

    ``rows`` are the batch's summary rows (default: ``out/summary.json``'s);
    result folders in ``out`` that no row names (left by an earlier run) follow
    them, by name, marked as earlier.
    """
    out = Path(out)
    if rows is None:
        summary = _read_json(out / "summary.json")
        found = summary.get("results") if isinstance(summary, dict) else None
        rows = [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []
    entries = [_entry(out, row) for row in rows]
    named = {e["folder"] for e in entries if e["folder"]}
    try:
        folders = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        folders = []
    for folder in folders:
        if folder.name not in named and (folder / "report.json").is_file():
            report = _read_json(folder / "report.json")
            source = report.get("input") if isinstance(report, dict) else None
            row = {"input": source or folder.name, "status": "ok", "folder": str(folder)}
            entries.append(_entry(out, row, earlier=True))
    return entries


# --------------------------------------------------------------------------- HTML


def _visible(text: Any) -> str:
    """``text`` as something a page can show: undecodable bytes as U+FFFD, control
    characters (newlines, tabs...) as visible escapes."""
    s = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) == "Cc" else ch
        for ch in s
    )


def _esc(text: Any) -> str:
    return html.escape(_visible(text), quote=True)


def _href(*parts: str) -> str:
    """A relative URL to ``parts`` (path segments, any bytes), escaped for an attribute."""
    return html.escape("/".join(quote(os.fsencode(p), safe="") for p in parts), quote=True)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def _sort_value(x: float | None) -> str:
    return "" if x is None else repr(x)


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#141414}
h1{font-size:1.4em;margin:0 0 .3em}
.counts span{margin-right:1.2em}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}
th button{font:inherit;font-weight:bold;border:0;background:none;cursor:pointer;padding:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.name{min-width:12em;max-width:24em;overflow-wrap:anywhere}
.ok{color:#126b1a}.failed{color:#b00020;font-weight:bold}.skipped{color:#8a6d00}
.msg{color:#b00020;overflow-wrap:anywhere}
img.thumb{max-width:360px;max-height:280px;border:1px solid #ccc}
.files{font-size:.9em}.files a{margin-right:.4em;white-space:nowrap}
details{margin:.8em 0}
dt{font-family:monospace}
"""

_SORT_SCRIPT = """
(function () {
  var root = document.documentElement;
  var body = document.querySelector("#results tbody");
  var state = {key: "order", dir: 1};
  function value(row, key) {
    var v = row.dataset[key];
    if (key === "input" || key === "status") { return v || ""; }
    return v === "" || v === undefined ? null : Number(v);
  }
  function sortBy(key) {
    state.dir = state.key === key ? -state.dir : 1;
    state.key = key;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, key), y = value(b, key);
      if (x === null || y === null) {
        return x === y ? value(a, "order") - value(b, "order") : (x === null ? 1 : -1);
      }
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return c !== 0 ? c * state.dir : value(a, "order") - value(b, "order");
    });
    rows.forEach(function (row) { body.appendChild(row); });
    document.querySelectorAll("th[data-key]").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.key !== key ? "none"
        : (state.dir > 0 ? "ascending" : "descending"));
    });
    root.dataset.sortedBy = key + (state.dir > 0 ? "" : "-desc");
  }
  document.querySelectorAll("th[data-key] button").forEach(function (b) {
    b.addEventListener("click", function () { sortBy(b.parentNode.dataset.key); });
  });
  window.mlnmfSortBy = sortBy;
  window.addEventListener("load", function () {
    if (location.hash.indexOf("#sort=") === 0) { sortBy(location.hash.slice(6)); }
  });
})();
"""
"""The index's table sorting (by a header click, or ``#sort=KEY`` in the address)."""

_CHECK_SCRIPT = """
(function () {
  var root = document.documentElement;
  root.dataset.errors = "0";
  // Script errors and pictures or files that fail to load (capture: resource errors too).
  window.addEventListener("error", function () {
    root.dataset.errors = String(Number(root.dataset.errors) + 1);
  }, true);
  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.images);
    var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
    var broken = images.filter(function (i) { return i.complete && i.naturalWidth === 0; });
    root.dataset.images = loaded.length + "/" + images.length;
    root.dataset.brokenImages = String(broken.length);
    root.dataset.ready = "yes";
  });
})();
"""
"""Every page: on <html>, data-errors, data-images (loaded/all), data-broken-images and,
once loaded (and sorted), data-ready="yes" (what the browser tests read)."""

_EAGER = 20  # pictures of the first rows load at once, the rest when scrolled to


_NUMBERED = re.compile(r"(?P<stem>.+?)(?P<number>\d+)\.png")


def _files_html(folder: str, names: Sequence[str]) -> str:
    """Links to a result folder's files; numbered ones grouped (``features_layer 1 2 3``)."""
    groups: dict[str, list[tuple[int, str]]] = {}
    single: list[str] = []
    for name in names:
        match = _NUMBERED.fullmatch(name)
        if match:
            groups.setdefault(match["stem"], []).append((int(match["number"]), name))
        else:
            single.append(name)
    links = [f'<a href="{_href(folder, name)}">{_esc(name)}</a>' for name in single]
    for stem, numbered in sorted(groups.items()):
        numbers = " ".join(
            f'<a href="{_href(folder, name)}">{n}</a>' for n, name in sorted(numbered)
        )
        links.append(f"<span>{_esc(stem)}: {numbers}</span>")
    return "<br>".join(links)


EXACT = 1e-6
"""Errors below this are exact fits (float32 rounding): their ratio to the floor means nothing."""


def floor_ratio(error: float | None, floor: float | None) -> str:
    """``error / floor`` as "x1.07", or "exact" when both are at rounding level."""
    if error is None or floor is None:
        return ""
    if floor < EXACT:
        return "exact" if error < EXACT else ""
    return f"x{error / floor:.2f}"


def _row_html(index: int, e: Mapping[str, Any]) -> str:
    status = e["status"] if e["status"] in ("ok", "failed", "skipped") else "failed"
    folder = e["folder"]
    has = set(e["files"])
    picture = ""
    if folder and "summary.png" in has:
        loading = "eager" if index < _EAGER else "lazy"
        link = _href(folder, "summary.png")
        picture = (
            f'<a href="{link}"><img class="thumb" src="{link}" loading="{loading}" '
            f'alt="summary of {_esc(e["input"])}"></a>'
        )
    files = _files_html(folder, e["files"]) if folder else ""
    message = f'<div class="msg">{_esc(e["message"])}</div>' if e["message"] else ""
    note = ' <span class="skipped">(earlier run)</span>' if e["earlier"] else ""
    error, floor = e["relative_error"], e["svd_floor"]
    ratio = floor_ratio(error, floor)
    psnr = "" if e["psnr"] is None else f"{e['psnr']:.1f} dB"
    attrs = {
        "order": str(index),
        "input": _visible(e["input"]),
        "status": status,
        "error": _sort_value(error),
        "floor": _sort_value(floor),
        "psnr": _sort_value(e["psnr"]),
    }
    data = " ".join(f'data-{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
    return (
        f'<tr class="entry" {data}>'
        f'<td class="num">{index + 1}</td>'
        f'<td class="name">{_esc(e["input"])}{note}{message}</td>'
        f'<td class="{status}">{status}</td>'
        f'<td class="num">{_pct(error)}</td>'
        f'<td class="num">{_pct(floor)}</td>'
        f'<td class="num">{ratio}</td>'
        f'<td class="num">{psnr}</td>'
        f"<td>{_esc(e['size'])}<br>{_esc(e['channels'])}<br>{_esc(e['ranks'])}</td>"
        f"<td>{picture}</td>"
        f'<td class="files">{files}</td>'
        "</tr>"
    )


def render_index(entries: Sequence[Mapping[str, Any]], title: str = "mlnmf decompose") -> str:
    """The page's HTML for ``entries`` (as :func:`collect` makes them)."""
    counts = {s: sum(1 for e in entries if e["status"] == s) for s in ("ok", "failed", "skipped")}
    failures = [e for e in entries if e["status"] == "failed"]
    failure_list = "".join(
        f"<li><b>{_esc(e['input'])}</b>: {_esc(e['message'] or 'failed')}</li>" for e in failures
    )
    files = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in FILES.items())
    headers = [
        ("order", "#", True),
        ("input", "input", False),
        ("status", "status", False),
        ("error", "error", True),
        ("floor", "SVD floor", True),
        (None, "error / floor", True),
        ("psnr", "PSNR", True),
        (None, "size (h x w), channels, ranks", False),
        (None, "summary.png", False),
        (None, "files", False),
    ]
    head = "".join(
        (
            f'<th data-key="{key}" aria-sort="none"{" class=num" if num else ""}>'
            f'<button type="button">{label}</button></th>'
        )
        if key
        else f"<th{' class=num' if num else ''}>{label}</th>"
        for key, label, num in headers
    )
    body = "\n".join(_row_html(i, e) for i, e in enumerate(entries))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}: {len(entries)} input(s)</title>
<style>{_STYLE}</style></head>
<body>
<h1>{_esc(title)}: {len(entries)} input(s)</h1>
<p class="counts"><span class="ok">{counts["ok"]} ok</span>
<span class="failed">{counts["failed"]} failed</span>
<span class="skipped">{counts["skipped"]} skipped</span>
<a href="summary.csv">summary.csv</a> <a href="summary.json">summary.json</a></p>
<p>Error: relative error of the deepest model; SVD floor: the best possible error of any
model of that rank (truncated SVD); PSNR of the clipped pixels. Click a column's name to sort
by it (again: reverse).</p>
{f"<h2>Failures</h2><ul id='failures'>{failure_list}</ul>" if failures else ""}
<details><summary>What the files are</summary><dl>{files}</dl></details>
<table id="results"><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
<script>{_SORT_SCRIPT}</script>
<script>{_CHECK_SCRIPT}</script>
</body></html>
"""


def write_index(out: Path, rows: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write ``out/index.html`` atomically from ``rows`` (default: ``out/summary.json``'s)
    and every result folder in ``out``; return its path."""
    out = Path(out)
    path = out / INDEX
    storage.write_text(path, render_index(collect(out, rows)))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlnmf_cli.page OUT``: write OUT/index.html again from what is on disk."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m mlnmf_cli.page OUT\n")
        return 2
    out = Path(args[0])
    if not out.is_dir():
        sys.stderr.write(f"{out}: not a folder of mlnmf results\n")
        return 1
    from mlnmf_cli.batch.rows import is_ours

    existing = out / INDEX
    if (existing.exists() or existing.is_symlink()) and not is_ours(existing):
        sys.stderr.write(f"{existing}: not written by mlnmf; refusing to replace it\n")
        return 1
    try:
        path = write_index(out)
    except OSError as exc:
        sys.stderr.write(f"{out / INDEX}: cannot write the page ({exc.strerror or exc})\n")
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# --------------------------------------------------------------------------- one folder's page
# ``mlnmf learn`` and ``mlnmf encode`` write one result folder, not a folder of results:
# its page shows the report's numbers, every picture in it and links to every file.


def _cell(x: Any) -> str:
    return _pct(_number(x)) if isinstance(x, float) else _esc("" if x is None else x)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def render_folder_page(folder: Path, report: Mapping[str, Any], name: str) -> str:
    """The page of one ``learn`` or ``encode`` result folder, from its report and files;
    ``name`` is the folder's final name (it is written while still staged)."""
    kind = str(report.get("command") or report.get("kind") or "mlnmf")
    listed = report.get("failed")  # learn: the failed inputs; encode: their count
    failures = [f for f in listed if isinstance(f, Mapping)] if isinstance(listed, list) else []
    failures += [r for r in report.get("results") or [] if r.get("status") == "failed"]
    failure_list = "".join(
        f"<li><b>{_esc(f.get('input'))}</b>: {_esc(f.get('error') or 'failed')}</li>"
        for f in failures
    )
    tables = []
    if report.get("depths"):
        tables.append(
            _table(
                ["depth", "rank", "error", "SVD floor", "PSNR (dB)", "median image", "worst image"],
                [
                    [
                        d.get("depth"),
                        d.get("rank"),
                        d.get("relative_error"),
                        d.get("svd_floor"),
                        None if d.get("psnr") is None else f"{d['psnr']:.1f}",
                        d.get("median_image_error"),
                        d.get("worst_image_error"),
                    ]
                    for d in report["depths"]
                ],
                "depths",
            )
        )
    if report.get("results"):
        rows = [
            [
                r.get("input"),
                r.get("status"),
                r.get("relative_error"),
                None if r.get("psnr") is None else f"{r['psnr']:.1f}",
            ]
            for r in report["results"]
        ]
        tables.append(_table(["input", "status", "error", "PSNR (dB)"], rows, "results"))
    facts = _facts(
        report, ("columns", "inputs", "image_shape", "channels", "depth", "rank", "succeeded")
    )
    body = f"""<p>{facts}</p>
<p>Error: relative error ||X - model|| / ||X||; SVD floor: the best possible error of any
model of that rank (truncated SVD); PSNR against the data's own peak.</p>
{f"<h2>Failures</h2><ul id='failures'>{failure_list}</ul>" if failures else ""}
{"".join(tables)}"""
    return _shell(folder, f"mlnmf {kind}: {name}", body, first="summary.png")


def _shell(folder: Path, title: str, body: str, *, first: str) -> str:
    """A result folder's page: ``body``, then every picture in it (those whose name
    starts with ``first`` first) and a link to every file."""
    names = sorted(p.name for p in Path(folder).iterdir() if p.name != INDEX)
    pictures = sorted(
        (n for n in names if n.endswith(".png")), key=lambda n: not n.startswith(first)
    )
    figures = "".join(
        f'<figure><img src="{_href(n)}" alt="{_esc(n)}"><figcaption>{_esc(n)}</figcaption></figure>'
        for n in pictures
    )
    links = " ".join(f'<a href="{_href(n)}">{_esc(n)}</a>' for n in names)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{_STYLE}
figure{{display:inline-block;margin:0 1em 1em 0;vertical-align:top}}
figure img{{max-width:100%}}</style></head>
<body>
<h1>{_esc(title)}</h1>
{body}
<h2>Pictures</h2>
{figures}
<h2>Files</h2>
<p id="files">{links}</p>
<script>{_CHECK_SCRIPT}</script>
</body></html>
"""


def _facts(data: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``key: value.`` for each of ``keys`` the report holds as a plain value (lists as AxB)."""
    return " ".join(
        f"{_esc(k)}: {_esc('x'.join(map(str, v)) if isinstance(v, list) else v)}."
        for k in keys
        if (v := data.get(k)) is not None and not isinstance(v, dict)
    )


def _spread(x: Any, *, always: bool = False) -> str:
    """A similarity: a number, or ``mean [low, high]`` of a summary (the range shown when
    it is not a point, or ``always``); two decimals, empty when there is none."""
    if not isinstance(x, Mapping):
        value = _number(x)
        return "" if value is None else f"{value:.2f}"
    mean, low, high = (_number(x.get(k)) for k in ("mean", "low", "high"))
    if mean is None:
        return ""
    if low is None or high is None or (low == high and not always):
        return f"{mean:.2f}"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def render_experiment_page(folder: Path, data: Mapping[str, Any], kind: str, name: str) -> str:
    """The page of a ``compare`` or ``random-test`` folder: verdicts, similarities
    against their null baselines, each run's errors, the pictures and files."""
    verdicts = "".join(
        f"<li><b>{_esc(v.get('config'))}, depth {_esc(v.get('depth'))}</b>: "
        f"{_esc(v.get('verdict'))}</li>"
        for v in data.get("verdicts") or []
        if isinstance(v, Mapping)
    )
    similarity_rows = [
        [
            e.get("config"), e.get("depth"), e.get("rank"), e.get("kind"),
            _spread(e.get("across")), _spread(e.get("null"), always=True),
            _spread(e.get("self")), _spread(e.get("corrected")),
        ]
        for e in data.get("similarities") or []
    ]  # fmt: skip
    run_rows = [
        [
            r.get("input"), r.get("config"), d.get("depth"), d.get("rank"),
            d.get("relative_error"), d.get("svd_floor"),
            None if _number(d.get("psnr")) is None else f"{d['psnr']:.1f}",
        ]
        for r in data.get("runs") or []
        for d in r.get("depths") or []
    ]  # fmt: skip
    notes = "".join(
        f"<li><b>{_esc(i.get('name'))}</b>: {_esc('; '.join(map(str, i['notes'])))}</li>"
        for i in data.get("inputs") or []
        if isinstance(i, Mapping) and i.get("notes")
    )
    facts = _facts(
        data, ("count", "size", "distribution", "repeats", "measure", "null_draws", "seed")
    )
    body = f"""<p>{facts}</p>
<h2>Verdicts</h2>
<ul id="verdicts">{verdicts}</ul>
<h2>Similarity across inputs</h2>
<p>Mean similarity of the features (or coefficients) of different inputs; its null
baseline (the same measure on random factors of the same shapes, with the 2.5-97.5
percentiles of the draws, or a 95% interval over several repeats); the similarity of one
input with itself over seeds; and above chance = (across - null) / (1 - null): 0 at
chance, 1 when identical.</p>
{
        _table(
            ["config", "depth", "rank", "kind", "across inputs", "null", "self", "above chance"],
            similarity_rows,
            "similarities",
        )
    }
<h2>Runs</h2>
<p>Error: relative error ||X - model|| / ||X||; SVD floor: the best possible error of any
model of that rank; PSNR against the data's own peak.</p>
{_table(["input", "config", "depth", "rank", "error", "SVD floor", "PSNR (dB)"], run_rows, "runs")}
{f"<h2>Notes on the inputs</h2><ul id='notes'>{notes}</ul>" if notes else ""}"""
    return _shell(folder, f"mlnmf {kind}: {name}", body, first="montage")


def write_experiment_page(folder: Path, data: Mapping[str, Any], kind: str) -> Path:
    """Write ``folder/index.html`` (atomically) for a ``compare`` or ``random-test`` result."""
    path = Path(folder) / INDEX
    storage.write_text(path, render_experiment_page(folder, data, kind, Path(folder).name))
    return path


def write_folder_page(folder: Path, report: Mapping[str, Any], *, name: str) -> Path:
    """Write ``folder/index.html`` (atomically) for a ``learn`` or ``encode`` result."""
    path = Path(folder) / INDEX
    storage.write_text(path, render_folder_page(folder, report, name))
    return path
