"""Fault injection: the command is SIGKILLed at every rename/replace step of a ``--force``
replacement and of the summary write (``MLNMF_FAULT_STEP``, see ``storage.fault_point``);
the next run must find the old or the new result whole, the summary describing it, and
nothing left over."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imagegen as gen
import pytest

from mlnmf_cli import storage

TOOL_FILES = {"summary.json", "summary.csv", "index.html"}
MAX_STEPS = 40


def mlnmf(*args: str | Path, fault: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop(storage.FAULT_VARIABLE, None)
    if fault is not None:
        env[storage.FAULT_VARIABLE] = str(fault)
    return subprocess.run(
        [sys.executable, "-m", "mlnmf_cli", "decompose", *map(str, args), "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def killed(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == -signal.SIGKILL


def state(out: Path, old_model: bytes) -> str:
    """Check ``out`` holds exactly one whole result ``img`` and a summary that describes
    it; return "old" or "new"."""
    assert {p.name for p in out.iterdir()} == TOOL_FILES | {"img"}
    report = json.loads((out / "img" / "report.json").read_text())
    storage.load_model(out / "img" / "model.npz")
    ranks = report["parameters"]["ranks"]
    assert ranks in ([6, 3], [4, 2])
    if ranks == [6, 3]:
        assert (out / "img" / "model.npz").read_bytes() == old_model
    rows = json.loads((out / "summary.json").read_text())["results"]
    assert [(Path(r["folder"]).name, r["ranks"]) for r in rows] == [
        ("img", ",".join(map(str, ranks)))
    ]
    return "old" if ranks == [6, 3] else "new"


@pytest.fixture(scope="module")
def old_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    base = tmp_path_factory.mktemp("faults")
    img = gen.make_gray_png(base / "img.png", size=(16, 12))
    out = base / "old"
    assert mlnmf(img, "-o", out, "--ranks", "6,3").returncode == 0
    return img, out, (out / "img" / "model.npz").read_bytes()


def test_a_kill_at_every_step_of_force_loses_nothing(
    old_result: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    img, base, old_model = old_result
    seen = []
    for step in range(1, MAX_STEPS + 1):
        out = tmp_path / f"step{step}"
        shutil.copytree(base, out)
        result = mlnmf(img, "-o", out, "--ranks", "4,2", "--force", fault=step)
        if not killed(result):
            assert (result.returncode, result.stderr) == (0, "")
            assert state(out, old_model) == "new"
            break
        # The next run, whatever it is, repairs the folder first.
        after = mlnmf(img, "-o", out, "--ranks", "6,3", "--skip-existing")
        assert after.returncode == 0, after.stderr
        seen.append(state(out, old_model))
    else:
        pytest.fail(f"still killed after {MAX_STEPS} steps")
    # The old result until the new one is in, the new one after: both were seen.
    assert seen == sorted(seen, reverse=True) and set(seen) == {"old", "new"}
    assert len(seen) >= 7  # old aside, new in, old removed (2 steps), three summary files


def test_a_kill_while_repairing_loses_nothing(
    old_result: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    """The run that would put the old result back is itself killed, at each of its steps."""
    img, base, old_model = old_result
    for step in range(1, MAX_STEPS + 1):
        out = tmp_path / f"step{step}"
        shutil.copytree(base, out)
        # Killed with the old result aside and the new one not yet in (the second step).
        assert killed(mlnmf(img, "-o", out, "--ranks", "4,2", "--force", fault=2))
        assert not (out / "img").exists()
        repair = mlnmf(img, "-o", out, "--ranks", "6,3", "--skip-existing", fault=step)
        final = mlnmf(img, "-o", out, "--ranks", "6,3", "--skip-existing")
        assert (final.returncode, final.stderr) == (0, "")
        assert state(out, old_model) == "old"
        if not killed(repair):
            break
    else:
        pytest.fail(f"still killed after {MAX_STEPS} steps")


def test_a_kill_at_every_step_of_a_new_result_and_its_summary(tmp_path: Path) -> None:
    img = gen.make_gray_png(tmp_path / "img.png", size=(16, 12))
    for step in range(1, MAX_STEPS + 1):
        out = tmp_path / f"step{step}"
        result = mlnmf(img, "-o", out, "--ranks", "4,2", fault=step)
        if not killed(result):
            break
        after = mlnmf(img, "-o", out, "--ranks", "4,2", "--skip-existing")
        assert (after.returncode, after.stderr) == (0, "")
        names = {p.name for p in out.iterdir()}
        assert names == TOOL_FILES | ({"img"} if (out / "img").exists() else set())
        if (out / "img").exists():
            assert state(out, b"") == "new"
    else:
        pytest.fail(f"still killed after {MAX_STEPS} steps")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_killed_parallel_batch_takes_its_workers_along(tmp_path: Path) -> None:
    """kill -9 of a ``--jobs 2`` batch: its workers stop too (they would go on writing
    into the folder after the lock is gone), and the next run finds whole results only."""
    images = tmp_path / "in"
    images.mkdir()
    for i in range(6):
        gen.make_gray_png(images / f"img{i}.png", size=(160, 120), seed=i)
    out = tmp_path / "out"
    env = {**os.environ, "NO_COLOR": "1", "OPENBLAS_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "mlnmf_cli", "decompose", str(images), "-o", str(out), "-q"]
    proc = subprocess.Popen([*args, "-j", "2", "--ranks", "24,12"], env=env)
    workers: list[int] = []
    for _ in range(3000):  # until both workers are busy with a result under way
        workers = _children(proc.pid)
        busy = out.is_dir() and any(p.name.endswith(".partial") for p in out.iterdir())
        if len(workers) >= 2 and busy:
            break
        assert proc.poll() is None, "the batch ended before it could be killed"
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    for _ in range(3000):
        if not any(_alive(w) for w in workers):
            break
        time.sleep(0.01)
    assert not any(_alive(w) for w in workers), "workers outlived the killed batch"
    after = subprocess.run(
        [*args, "--ranks", "24,12", "--skip-existing"], env=env, capture_output=True, text=True
    )
    assert (after.returncode, after.stderr) == (0, "")
    names = {f"img{i}" for i in range(6)}
    assert {p.name for p in out.iterdir()} == TOOL_FILES | names
    rows = json.loads((out / "summary.json").read_text())["results"]
    assert sorted(Path(r["folder"]).name for r in rows) == sorted(names)
    for name in names:
        storage.load_model(out / name / "model.npz")
