"""Batches: many inputs, each into its own result folder, here, in worker processes or on Dask.

``inputs`` turns the command line's files and folders into items; ``rows`` makes
one record per input and the summary files; ``run`` drives the batch (in this
process) and holds the rules every mode keeps; ``pool`` and ``dask`` run the
inputs elsewhere; ``signals`` makes SIGTERM end a batch like Ctrl-C.
"""

from mlnmf_cli.batch.inputs import BatchItem, cpu_count, expand_inputs
from mlnmf_cli.batch.rows import (
    ROW_FIELDS,
    Row,
    failed_row,
    ok_row,
    process_item,
    summary_envelope,
    write_summary,
)
from mlnmf_cli.batch.run import (
    BLAS_THREADS,
    THREAD_VARIABLES,
    OnDone,
    OnStart,
    Runner,
    blas_limit,
    remove_partial_folders,
    run_batch,
    thread_environment,
)
from mlnmf_cli.batch.signals import sigterm_as_interrupt

__all__ = [
    "BLAS_THREADS",
    "ROW_FIELDS",
    "THREAD_VARIABLES",
    "BatchItem",
    "OnDone",
    "OnStart",
    "Row",
    "Runner",
    "blas_limit",
    "cpu_count",
    "expand_inputs",
    "failed_row",
    "ok_row",
    "process_item",
    "remove_partial_folders",
    "run_batch",
    "sigterm_as_interrupt",
    "summary_envelope",
    "thread_environment",
    "write_summary",
]
