"""Running a batch as tasks on a Dask distributed cluster (``--scheduler``, needs mlnmf[dask])."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import os
from typing import Any

from mlnmf_cli.batch.inputs import BatchItem
from mlnmf_cli.batch.rows import failed_row, process_item
from mlnmf_cli.batch.run import Runner
from mlnmf_cli.errors import MlnmfError, ParameterError

CONNECT_TIMEOUT = 8.0  # seconds to reach a Dask scheduler and see a worker


def run_dask(runner: Runner, scheduler: str) -> None:
    """Inputs as tasks on a Dask distributed cluster; paths must be valid on the workers."""
    try:
        import distributed
    except ImportError:
        raise MlnmfError(
            "--scheduler needs Dask's distributed scheduler: pip install 'mlnmf[dask]'"
        ) from None
    client = connect(scheduler)
    try:
        out = runner.out.resolve()
        queue = runner.run_trivial()
        futures: dict[Any, int] = {}
        try:
            for index in queue:
                item = runner.items[index]
                absolute = BatchItem(item.path.resolve(), item.name, item.problem)
                runner.start(index)
                future = client.submit(
                    process_item,
                    absolute,
                    runner.options,
                    out,
                    force=runner.force,
                    skip_existing=runner.skip_existing,
                    pure=False,
                    key=f"mlnmf-{index}-{item.name}-{os.urandom(4).hex()}",
                )
                futures[future] = index
            for future in distributed.as_completed(list(futures), loop=client.loop):
                index = futures[future]
                item = runner.items[index]
                try:
                    row = future.result()
                except Exception as exc:
                    row = failed_row(item, runner.out, f"the Dask task failed: {exc}")
                else:
                    folder = str(runner.out / item.name) if row.folder else row.folder
                    row = dataclasses.replace(row, input=str(item.path), folder=folder)
                runner.finish(index, row)
        except BaseException:
            # Tasks already running finish (a cluster cannot stop them midway), atomically.
            with contextlib.suppress(Exception):
                client.cancel(list(futures), force=True)
            runner.flush()
            raise
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=CONNECT_TIMEOUT)


def check_address(scheduler: str) -> None:
    """Refuse a malformed TCP/TLS address at once: Client waited out its timeout on one
    ("", "foo", "host:port"), then its half-made self hung another 16 s with a traceback."""
    try:
        from distributed.comm import parse_address
        from distributed.comm.addressing import get_address_host_port
    except ImportError:  # run_dask says what to install
        return
    try:
        scheme = parse_address(scheduler)[0]
        if scheme not in ("tcp", "tls", "ws", "wss", "ucx"):  # inproc: this process only
            raise ValueError(f"unknown or local-only scheme {scheme!r}")
        if scheme in ("tcp", "tls"):
            get_address_host_port(scheduler)
    except ValueError as exc:
        raise ParameterError(
            f"--scheduler {scheduler!r} is not a scheduler address ({exc}); "
            "give HOST:PORT, e.g. tcp://127.0.0.1:8786"
        ) from None


def connect(scheduler: str, timeout: float | None = None) -> Any:
    """A Dask client for ``scheduler`` with at least one worker that runs this mlnmf version."""
    import logging

    from distributed import Client

    from mlnmf_cli import __version__

    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    check_address(scheduler)
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        client = Client(scheduler, timeout=timeout, set_as_default=False)
    except Exception as exc:
        raise MlnmfError(
            f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s "
            f"({type(exc).__name__}: {exc})"
        ) from None
    finally:
        quiet.setLevel(level)
    try:
        client.wait_for_workers(1, timeout=timeout)
        versions = client.run(_worker_version)
    except Exception as exc:
        client.close()
        if isinstance(exc, TimeoutError | cf.TimeoutError):
            raise MlnmfError(
                f"the Dask scheduler at {scheduler} has no workers (waited {timeout:g} s)"
            ) from None
        raise MlnmfError(
            f"the Dask workers at {scheduler} cannot run mlnmf ({type(exc).__name__}: {exc}); "
            f"install mlnmf {__version__} on every worker"
        ) from None
    wrong = sorted({v for v in versions.values() if v != __version__})
    if wrong:
        client.close()
        raise MlnmfError(
            f"the Dask workers at {scheduler} run mlnmf {', '.join(wrong)}, "
            f"this is mlnmf {__version__}; install the same version everywhere"
        )
    return client


def _worker_version() -> str:
    from mlnmf_cli import __version__

    return __version__
