"""OUT/index.html: built from what is on disk, every name escaped, checked in a real browser."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run
from PIL import Image

from mlnmf_cli import page

CHROMIUM = Path("/usr/bin/chromium")
UNDECODABLE = os.fsdecode(b"bytes\xff\xfe")  # a file name that is not UTF-8


def fake_result(out: Path, name: str, error: float, *, picture: bool = True) -> Path:
    """A result folder as decompose leaves it, as far as the page reads it."""
    folder = out / name
    folder.mkdir(parents=True)
    report = {
        "input": f"in/{name}.png",
        "image": {"height": 8, "width": 12},
        "channels": "gray",
        "parameters": {"ranks": [4, 2]},
        "relative_error": error,
        "psnr": 30.0,
        "svd_floor": {"rank": 2, "relative_error": error / 2},
    }
    (folder / "report.json").write_text(json.dumps(report))
    if picture:
        Image.new("RGB", (6, 4), (200, 30, 30)).save(folder / "summary.png")
    for extra in ("model.npz", "features_layer1.png", "features_layer2.png"):
        (folder / extra).write_bytes(b"x")
    return folder


def row(out: Path, name: str, status: str = "ok", error: str | None = None) -> dict:
    return {
        "input": f"in/{name}.png",
        "status": status,
        "folder": str(out / name) if status != "failed" or error is None else None,
        "error": error,
    }


def test_page_lists_rows_then_earlier_folders_from_disk(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake_result(out, "b", 0.2)
    fake_result(out, "a", 0.1)
    fake_result(out, "older", 0.3)  # from an earlier run: no row names it
    rows = [row(out, "b"), row(out, "a"), row(out, "gone", "failed", "not an image")]
    entries = page.collect(out, rows)
    assert [e["folder"] for e in entries] == ["b", "a", None, "older"]
    assert [e["status"] for e in entries] == ["ok", "ok", "failed", "ok"]
    assert entries[-1]["earlier"] and not entries[0]["earlier"]
    assert entries[0]["relative_error"] == 0.2 and entries[0]["svd_floor"] == 0.1
    assert entries[0]["size"] == "8x12" and entries[0]["ranks"] == "4,2"

    written = page.write_index(out, rows)
    assert written == out / "index.html"
    text = written.read_text(encoding="utf-8")
    assert text.count('<tr class="entry"') == 4
    assert "not an image" in text and "(earlier run)" in text
    assert 'src="b/summary.png"' in text
    assert "features_layer: " in text  # numbered files grouped
    assert not [p for p in out.iterdir() if p.name.startswith(".index.html")]  # no temporaries


def test_page_rows_default_to_summary_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake_result(out, "a", 0.1)
    rows = [row(out, "a"), row(out, "x", "failed", "no such file or folder")]
    (out / "summary.json").write_text(json.dumps({"results": rows}))
    entries = page.collect(out)
    assert [e["status"] for e in entries] == ["ok", "failed"]
    (out / "summary.json").write_text("{broken")
    assert [e["folder"] for e in page.collect(out)] == ["a"]  # the folders still count


def test_page_escapes_every_name(tmp_path: Path) -> None:
    out = tmp_path / "out"
    nasty = ["<script>alert(1)</script>", "a & \"b\" 'c'", "new\nline", UNDECODABLE]
    for i, name in enumerate(nasty):
        fake_result(out, name, 0.1 + i / 10)
    rows = [row(out, name) for name in nasty]
    rows.append(row(out, "broken", "failed", "<b>bad</b> & worse\nsecond line"))
    text = page.write_index(out, rows).read_text(encoding="utf-8")
    assert "<script>alert" not in text and "<b>bad" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a &amp; &quot;b&quot; &#x27;c&#x27;" in text
    assert "new\\nline" in text  # a newline is shown, not swallowed
    assert "bytes\ufffd\ufffd" in text  # undecodable bytes shown as U+FFFD...
    assert 'href="bytes%FF%FE/summary.png"' in text  # ...and linked by their bytes
    assert text.count("<script>") == 2  # only the page's own (sorting, load check)


def test_page_command_regenerates_from_disk(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    fake_result(out, "a", 0.1)
    assert page.main([str(out)]) == 0
    assert (out / "index.html").is_file()
    assert page.main([str(tmp_path / "missing")]) == 1
    assert "not a folder of mlnmf results" in capsys.readouterr().err


# --------------------------------------------------------------------------- browser


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=5000", *args,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def console_lines(stderr: str) -> list[str]:
    """Messages the page wrote to the console (errors, uncaught exceptions): none expected."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="the browser test needs headless Chromium at /usr/bin/chromium "
    "(Debian package 'chromium'; .ci/run installs it)",
)
def test_page_in_a_real_browser(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    names = ['a <b> & "c"', "new\nline", "plain", "wide"]
    for i, name in enumerate(names):
        size = (16, 160) if name == "wide" else (20, 24 + 4 * i)
        Image.fromarray(np.uint8(rng.random(size) * 255)).save(inputs / f"{name}.png")
    (inputs / "broken <x>.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code, _, err = run("decompose", inputs, "--ranks", "6,3", "--out", out, "-q")
    assert code not in (0, 2), err  # one input failed, the others not
    assert (out / "summary.json").is_file()
    index = page.write_index(out)  # from what is on disk: summary.json and the folders

    dom = chromium("--window-size=1400,3000", "--dump-dom", index.as_uri(), profile=tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_lines(dom.stderr) == []
    root = re.search(r"<html[^>]*>", dom.stdout)
    assert root is not None
    assert 'data-ready="yes"' in root[0] and 'data-errors="0"' in root[0]
    assert 'data-images="4/4"' in root[0] and 'data-broken-images="0"' in root[0]
    assert dom.stdout.count('<tr class="entry"') == 5
    for name in [*names, "broken <x>"]:
        shown = html.escape(f"{name}.png".replace("\n", "\\n"), quote=False)
        assert shown in dom.stdout, name
    assert "not an image Pillow can read" in dom.stdout

    # Sorted by error in the browser (the page's own script): failures last.
    ordered = chromium("--dump-dom", index.as_uri() + "#sort=error", profile=tmp_path / "p2")
    assert 'data-sorted-by="error"' in ordered.stdout
    errors = re.findall(r'<tr class="entry"[^>]*data-error="([^"]*)"', ordered.stdout)
    values = [float(e) for e in errors if e]
    assert len(values) == 4 and values == sorted(values) and errors[-1] == ""

    shot = tmp_path / "page.png"
    taken = chromium(
        f"--screenshot={shot}", "--window-size=1280,1000", index.as_uri(), profile=tmp_path / "p3"
    )
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    with Image.open(shot) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text and pictures, not a blank page


def test_regenerating_the_page_never_replaces_a_foreign_index(tmp_path: Path) -> None:
    from mlnmf_cli import page

    (tmp_path / "index.html").write_text("<p>my own page</p>")
    assert page.main([str(tmp_path)]) == 1
    assert (tmp_path / "index.html").read_text() == "<p>my own page</p>"


def test_the_ratio_to_the_floor_is_shown_only_where_it_means_something() -> None:
    from mlnmf_cli.page import floor_ratio

    assert floor_ratio(0.12, 0.10) == "x1.20"
    assert floor_ratio(3e-8, 6e-19) == "exact"  # an exact fit: not "x47100839892.51"
    assert floor_ratio(0.01, 0.0) == ""
    assert floor_ratio(None, 0.1) == ""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium")
def test_compare_and_random_test_pages_in_a_real_browser(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    names = ['a <b> & "c"', "plain"]
    for name in names:
        Image.fromarray(np.uint8(rng.random((24, 32)) * 255)).save(tmp_path / f"{name}.png")
    runs = {
        "compare": ("compare", *(tmp_path / f"{n}.png" for n in names), "-c", "ranks=6,3"),
        "random-test": (
            "random-test",
            "--count",
            "2",
            "--size",
            "24x32",
            "-c",
            "ranks=6,3",
            "--repeats",
            "2",
        ),
    }
    for kind, args in runs.items():
        out = tmp_path / kind
        code, _, err = run(*args, "--null-draws", "4", "-o", out, "-q")
        assert code == 0, err
        data = json.loads(
            (out / ("compare.json" if kind == "compare" else f"{kind}.json")).read_text()
        )
        pictures = sorted(p.name for p in out.glob("*.png"))
        dom = chromium("--dump-dom", (out / "index.html").as_uri(), profile=tmp_path / kind / "p")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert console_lines(dom.stderr) == []
        root = re.search(r"<html[^>]*>", dom.stdout)
        assert root is not None and 'data-ready="yes"' in root[0] and 'data-errors="0"' in root[0]
        n = len(pictures)
        assert f'data-images="{n}/{n}"' in root[0] and 'data-broken-images="0"' in root[0]
        assert f"<title>mlnmf {kind}: {kind}</title>" in dom.stdout
        for verdict in data["verdicts"]:  # every verdict, as the JSON says it
            assert html.escape(verdict["verdict"], quote=False) in dom.stdout
        rows = re.findall(r"<tr><td>", dom.stdout.split('id="runs"')[1].split("</table>")[0])
        assert len(rows) == 2 * 2  # two inputs, two depths
        similarities = dom.stdout.split('id="similarities"')[1].split("</table>")[0]
        assert similarities.count("<tr><td>") == 4  # features and coefficients at two depths
    assert html.escape('a <b> & "c"') in (tmp_path / "compare" / "index.html").read_text()
