"""Batches: worker processes, interrupts and resuming, a Dask cluster.

Results must not depend on how a batch ran: every test compares model.npz
arrays bit for bit with a plain sequential run.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ENV, run, terminal_signals
from imagegen import make_gray_png, make_rgb_jpeg, make_text_as_png
from typer.testing import CliRunner

from mlnmf_cli import batch, pipeline, storage
from mlnmf_cli.batch import dask as batch_dask
from mlnmf_cli.batch.pool import _init_worker
from mlnmf_cli.cli import app

RANKS = "8,4"
RESULT_FILES = {
    "original.png",
    "reconstruction.png",
    "reconstruction_depth1.png",
    "reconstruction_depth2.png",
    "features_layer1.png",
    "features_layer2.png",
    "coefficients_layer1.png",
    "coefficients_layer2.png",
    "features_depth1.png",
    "features_depth2.png",
    "summary.png",
    "model.npz",
    "report.json",
}


def folder_of_images(root: Path, n: int, size: tuple[int, int] = (48, 40)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_gray_png(root / f"img{i:02d}.png", size=size, seed=i)
    return root


def factors(folder: Path) -> list[np.ndarray]:
    model = storage.load_model(folder / "model.npz")
    return [a for Ws, Hs in model.parts for a in (*Ws, *Hs)]


def assert_same_models(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        fa, fb = factors(a / name), factors(b / name)
        assert len(fa) == len(fb)
        for x, y in zip(fa, fb, strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y), name


def assert_clean(out: Path) -> None:
    """Only whole result folders and the summaries: no staging folder, no temp file."""
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert hidden == []
    for folder in out.iterdir():
        if folder.is_dir():
            assert {p.name for p in folder.iterdir()} == RESULT_FILES, folder
            storage.load_model(folder / "model.npz")
            json.loads((folder / "report.json").read_text())


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


# --------------------------------------------------------------------------- worker processes


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = folder_of_images(tmp_path_factory.mktemp("mixed") / "in", 5)
    make_text_as_png(root / "img02b.png")
    make_rgb_jpeg(root / "colour.jpg", size=(40, 32))
    return root


@pytest.fixture(scope="module")
def sequential(mixed_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seq") / "out"
    code, _, _ = run("decompose", mixed_folder, "--ranks", RANKS, "-o", out, "-q")
    assert code == 3
    return out


def test_jobs_2_gives_the_same_results_and_summary_as_jobs_1(
    mixed_folder: Path, sequential: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(
        "decompose", mixed_folder, "--ranks", RANKS, "-o", out, "--jobs", "2", "--json", "-q"
    )
    assert code == 3
    assert stderr == f"mlnmf: error: {mixed_folder / 'img02b.png'}: not an image Pillow can read\n"
    names = ["colour", "img00", "img01", "img02", "img03", "img04"]
    assert_same_models(sequential, out, names)
    assert_clean(out)
    parallel, serial = json.loads(stdout), summary(sequential)
    assert parallel == summary(out)
    keys = ("input", "status", "folder", "error", "relative_error", "svd_floor")
    strip = [{k: r.get(k) for k in keys} for r in serial["results"]]
    assert [{k: r.get(k) for k in keys} for r in parallel["results"]] == [
        {**r, "folder": r["folder"] and r["folder"].replace(str(sequential), str(out))}
        for r in strip
    ]
    assert [r["input"] for r in parallel["results"]] == sorted(
        str(p) for p in mixed_folder.iterdir()
    )
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["input"], r["status"]) for r in rows] == [
        (r["input"], r["status"]) for r in parallel["results"]
    ]
    assert (parallel["succeeded"], parallel["failed"], parallel["errors"]) == (
        6,
        1,
        [{"input": str(mixed_folder / "img02b.png"), "error": "not an image Pillow can read"}],
    )


def test_callbacks_run_in_the_parent_in_input_order(mixed_folder: Path, tmp_path: Path) -> None:
    items = batch.expand_inputs([mixed_folder, tmp_path / "missing.png"], recursive=False)
    out = storage.prepare_output_dir(tmp_path / "out")
    started, done = [], []

    def on_start(item: batch.BatchItem) -> None:
        started.append((os.getpid(), item.name))

    def on_done(row: batch.Row) -> None:
        done.append((os.getpid(), row.input))

    rows = batch.run_batch(
        items,
        pipeline.Options(ranks=(8, 4)),
        out,
        jobs=3,
        on_start=on_start,
        on_done=on_done,
    )
    assert [r.input for r in rows] == [str(i.path) for i in items]
    assert done == [(os.getpid(), str(i.path)) for i in items]
    assert sorted(started) == sorted((os.getpid(), i.name) for i in items)
    assert rows[-1].error == "no such file or folder"


def test_skip_existing_in_parallel_keeps_finished_folders(
    mixed_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run("decompose", mixed_folder / "img00.png", "--ranks", RANKS, "-o", out, "-q")
    before = (out / "img00" / "model.npz").stat().st_mtime_ns
    code, stdout, _ = run(
        "decompose", mixed_folder, "--ranks", RANKS, "-o", out, "-j", "2", "--skip-existing",
        "--json", "-q",
    )  # fmt: skip
    assert code == 3
    statuses = {Path(r["input"]).name: r["status"] for r in json.loads(stdout)["results"]}
    assert statuses["img00.png"] == "skipped" and statuses["img01.png"] == "ok"
    assert (out / "img00" / "model.npz").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "--jobs 0 is not a whole number of at least 1, nor 'auto'"),
        ("-2", "--jobs -2 is not a whole number of at least 1, nor 'auto'"),
        ("many", "--jobs 'many' is not a whole number of at least 1, nor 'auto'"),
    ],
)
def test_bad_jobs_is_a_usage_error(value: str, message: str, tmp_path: Path) -> None:
    code, _, stderr = run("decompose", tmp_path, "--jobs", value, "-o", tmp_path / "o")
    assert code == 2
    assert stderr == f"mlnmf: error: {message} (see 'mlnmf decompose --help')\n"


def test_jobs_auto_is_one_per_core() -> None:
    from mlnmf_cli.cli.decompose import parse_jobs

    assert parse_jobs("auto") == batch.cpu_count() >= 1
    assert parse_jobs(" AUTO ") == batch.cpu_count()


def _blas_threads() -> tuple[str | None, int]:
    from threadpoolctl import threadpool_info

    return os.environ.get("OPENBLAS_NUM_THREADS"), max(i["num_threads"] for i in threadpool_info())


def test_workers_run_one_blas_thread_each() -> None:
    pytest.importorskip("threadpoolctl")
    import concurrent.futures as cf
    import multiprocessing

    before = os.environ.get("OPENBLAS_NUM_THREADS")
    # Workers start lazily, on submit: run_batch keeps the variables set while its pool lives.
    with batch.thread_environment(batch.BLAS_THREADS):
        with cf.ProcessPoolExecutor(
            max_workers=2,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(batch.BLAS_THREADS,),
        ) as pool:
            assert pool.submit(_blas_threads).result(timeout=60) == ("1", 1)
        # without threadpoolctl, the variables alone do it: NumPy loads after them
        with cf.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            assert pool.submit(_blas_threads).result(timeout=60) == ("1", 1)
    assert os.environ.get("OPENBLAS_NUM_THREADS") == before


def test_stale_partial_folders_of_the_batch_are_removed(tmp_path: Path) -> None:
    for name in (".img.abcd_123.partial", ".img.b.abcd1234.partial", ".other.abcd1234.partial"):
        (tmp_path / name).mkdir()
    (tmp_path / ".img.abcd1234.partial").mkdir()
    (tmp_path / ".img.abcd1234.partial" / "half.png").write_bytes(b"x")
    removed = batch.remove_partial_folders(tmp_path, ["img", "img.b"])
    assert sorted(p.name for p in removed) == [
        ".img.abcd1234.partial",
        ".img.abcd_123.partial",
        ".img.b.abcd1234.partial",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.abcd1234.partial"]


# --------------------------------------------------------------------------- real signals


def _start(args: list[str | Path], cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **ENV}
    return subprocess.Popen(
        [sys.executable, "-m", "mlnmf_cli", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=terminal_signals,
    )


def _wait_for_first_result(proc: subprocess.Popen[bytes], out: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in out.iterdir()):
            return
        if proc.poll() is not None:
            pytest.fail(f"the batch ended before any result appeared: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no result folder appeared")


@pytest.fixture(scope="module")
def big_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Twelve inputs, and their results from one uninterrupted sequential run."""
    root = tmp_path_factory.mktemp("big")
    images = folder_of_images(root / "in", 12, size=(96, 80))
    reference = root / "reference"
    code, _, _ = run("decompose", images, "--ranks", "12,6", "-o", reference, "-q")
    assert code == 0
    return images, reference


@pytest.mark.parametrize(
    ("how", "jobs"),
    [("SIGINT", "1"), ("SIGTERM", "1"), ("SIGINT", "2"), ("SIGTERM", "2")],
)
def test_interrupt_then_resume_gives_the_uninterrupted_results(
    how: str, jobs: str, big_batch: tuple[Path, Path], tmp_path: Path
) -> None:
    images, reference = big_batch
    out = tmp_path / "out"
    args: list[str | Path] = ["decompose", images, "--ranks", "12,6", "-o", out, "-j", jobs, "-q"]
    proc = _start(args, tmp_path)
    _wait_for_first_result(proc, out)
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    else:
        proc.send_signal(signal.SIGTERM)  # `kill PID`: only the main process
    _, stderr = proc.communicate(timeout=60)
    text = stderr.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert_clean(out)
    done = summary(out)
    assert done["interrupted"] is True
    finished = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert sorted(Path(r["folder"]).name for r in done["results"]) == finished
    assert all(r["status"] == "ok" for r in done["results"])
    assert 1 <= len(finished) < 12
    assert text.endswith(
        f"mlnmf: error: interrupted after {len(finished)} of 12 input(s); "
        f"finished results are in {out}\n"
    )

    resumed = _start([*args, "--skip-existing", "--json"], tmp_path)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr.decode()
    final = json.loads(stdout)
    assert [r["status"] for r in final["results"]].count("skipped") == len(finished)
    assert final["succeeded"] + final["skipped"] == 12
    assert_clean(out)
    assert_same_models(reference, out, [f"img{i:02d}" for i in range(12)])


def _workers(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [
        c
        for c in children
        if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ")
    ]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_killed_worker_costs_nothing(big_batch: tuple[Path, Path], tmp_path: Path) -> None:
    images, reference = big_batch
    out = tmp_path / "out"
    proc = _start(
        ["decompose", images, "--ranks", "12,6", "-o", out, "-j", "2", "-q", "--json"], tmp_path
    )
    _wait_for_first_result(proc, out)
    workers = _workers(proc.pid)
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)  # as the kernel's OOM killer would
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()
    assert json.loads(stdout)["succeeded"] == 12
    assert_clean(out)
    assert_same_models(reference, out, [f"img{i:02d}" for i in range(12)])


# --------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def cluster() -> object:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        host="127.0.0.1",
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as local:
        yield local


def test_dask_cluster_gives_the_same_results(
    cluster: object, mixed_folder: Path, sequential: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(
        "decompose", mixed_folder, "--ranks", RANKS, "-o", out, "-q", "--json",
        "--scheduler", cluster.scheduler_address,  # type: ignore[attr-defined]
    )  # fmt: skip
    assert code == 3, stderr
    names = ["colour", "img00", "img01", "img02", "img03", "img04"]
    assert_same_models(sequential, out, names)
    assert_clean(out)
    rows = json.loads(stdout)["results"]
    assert [(r["input"], r["status"]) for r in rows] == [
        (r["input"], r["status"]) for r in summary(sequential)["results"]
    ]
    assert rows[3]["folder"] is not None and Path(rows[3]["folder"]).parent == out
    report = json.loads((out / "img00" / "report.json").read_text())
    assert report["input"] == str((mixed_folder / "img00.png").resolve())


def test_scheduler_from_the_environment(
    cluster: object, mixed_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["decompose", str(mixed_folder / "img01.png"), "--ranks", RANKS, "-o", str(out), "-q"],
        env={**ENV, "MLNMF_SCHEDULER": cluster.scheduler_address},  # type: ignore[attr-defined]
    )
    assert result.exit_code == 0, result.stderr
    assert_clean(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_scheduler_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, mixed_folder: Path, tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr(batch_dask, "CONNECT_TIMEOUT", 1.0)
    address = f"tcp://127.0.0.1:{_free_port()}"
    code, _, stderr = run(
        "decompose", mixed_folder / "img00.png", "--ranks", RANKS, "-o", tmp_path / "o",
        "--scheduler", address, "-q",
    )  # fmt: skip
    assert code == 1
    assert stderr.startswith(
        f"mlnmf: error: cannot reach the Dask scheduler at {address} within 1 s ("
    )
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert list((tmp_path / "o").iterdir()) == []


def test_missing_dask_extra_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, mixed_folder: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    code, _, stderr = run(
        "decompose", mixed_folder / "img00.png", "--ranks", RANKS, "-o", tmp_path / "o",
        "--scheduler", "tcp://127.0.0.1:8786", "-q",
    )  # fmt: skip
    assert code == 1
    assert stderr == (
        "mlnmf: error: --scheduler needs Dask's distributed scheduler: pip install 'mlnmf[dask]'\n"
    )


def test_a_finished_folder_whose_answer_was_lost_is_still_listed(tmp_path: Path) -> None:
    """A worker can put its folder in place and die (or be interrupted) before answering."""
    items = batch.expand_inputs([folder_of_images(tmp_path / "in", 3)], recursive=False)
    out = tmp_path / "out"
    out.mkdir()
    options = pipeline.Options(ranks=(4, 2))
    batch.process_item(items[2], options, out)  # an older result, not this batch's work
    delivered: list[batch.Row] = []
    runner = batch.Runner(items, options, out, False, False, None, delivered.append)
    batch.process_item(items[0], options, out)  # this batch's, its answer never arrived
    assert runner.found_on_disk(1) is None  # nothing on disk
    runner.flush()
    assert [(r.input, r.status) for r in delivered] == [(str(items[0].path), "ok")]
    report = json.loads((out / items[0].name / "report.json").read_text())
    assert delivered[0].relative_error == report["relative_error"]


# --------------------------------------------------------------------------- the folder's summary


def _fake_result(out: Path, name: str, source: str, error: float) -> None:
    (out / name).mkdir(parents=True)
    report = {
        "input": source,
        "image": {"height": 2, "width": 3},
        "channels": "gray",
        "parameters": {"ranks": [2, 1]},
        "relative_error": error,
        "psnr": 30.0,
        "svd_floor": {"relative_error": 0.01},
    }
    (out / name / "report.json").write_text(json.dumps(report))


def _ok(source: str, out: Path, name: str, error: float) -> batch.Row:
    return batch.Row(source, "ok", str(out / name), ranks="2,1", relative_error=error)


def test_merged_rows_describe_every_result_in_the_folder(tmp_path: Path) -> None:
    from mlnmf_cli.batch.rows import merge_rows

    for name, error in (("a", 0.1), ("b", 0.2), ("c", 0.3)):
        _fake_result(tmp_path, name, f"{name}.png", error)
    old = [
        _ok("a.png", tmp_path, "a", 0.1),
        _ok("b.png", tmp_path, "b", 0.2),
        _ok("gone.png", tmp_path, "gone", 0.5),  # its folder was removed
        batch.Row("bad.png", "failed", None, "not an image"),
    ]
    new = [
        batch.Row("a.png", "failed", str(tmp_path / "a"), "already exists"),
        batch.Row("bad.png", "failed", None, "still not an image"),
        batch.Row("b.png", "skipped", str(tmp_path / "b"), ranks="2,1", relative_error=0.2),
    ]
    merged = merge_rows(old, new, tmp_path)
    assert [(r.input, r.status, r.error, r.relative_error) for r in merged] == [
        ("a.png", "ok", None, 0.1),  # the result in the folder keeps its row
        ("b.png", "ok", None, 0.2),
        ("bad.png", "failed", "still not an image", None),  # newest wins
        ("c.png", "ok", None, 0.3),  # found on disk
    ]


def test_a_folder_now_holding_another_inputs_result_loses_the_old_row(tmp_path: Path) -> None:
    from mlnmf_cli.batch.rows import merge_rows

    _fake_result(tmp_path, "img", "y/img.png", 0.4)
    merged = merge_rows(
        [_ok("x/img.png", tmp_path, "img", 0.1)], [_ok("y/img.png", tmp_path, "img", 0.4)], tmp_path
    )
    assert [(r.input, r.relative_error) for r in merged] == [("y/img.png", 0.4)]


def test_a_foreign_summary_stops_the_batch_before_any_work(tmp_path: Path) -> None:
    from mlnmf_cli.errors import OutputError

    (tmp_path / "summary.csv").write_text("a,b\n")
    items = batch.expand_inputs([tmp_path / "missing.png"], recursive=False)
    with pytest.raises(OutputError, match=r"summary\.csv: this file was not written by mlnmf"):
        batch.run_batch(items, pipeline.Options(ranks=(2, 1)), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv"]


def test_rows_of_a_damaged_summary_are_skipped_not_trusted(tmp_path: Path) -> None:
    from mlnmf_cli.batch.rows import is_ours, read_rows

    envelope = batch.summary_envelope([], pipeline.Options(ranks=(2, 1)))
    envelope["results"] = [
        {"input": "a.png", "status": "failed", "folder": None, "error": "bad"},
        {"input": "b.png", "status": "ok", "folder": 7},
        {"input": "c.png", "status": "done"},
        {"input": ["d.png"], "status": "ok"},
        "e.png",
        {"input": "f.png", "status": "ok", "folder": "f", "height": "12"},
    ]
    (tmp_path / "summary.json").write_text(json.dumps(envelope))
    assert is_ours(tmp_path / "summary.json")
    assert [(r.input, r.error) for r in read_rows(tmp_path)] == [("a.png", "bad")]
    (tmp_path / "summary.json").write_text('{"results": []}')
    assert not is_ours(tmp_path / "summary.json") and read_rows(tmp_path) == []
