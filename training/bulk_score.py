"""Score a large table with a served artifact on Dask: a coupon campaign over millions of users.

Why Dask: it is pip-installable, needs no JVM (Spark) and no separate cluster runtime to run
on one machine, reads and writes partitioned Parquet/CSV natively, and the same code runs on
a `dask.distributed` cluster (dask-kubernetes, dask-jobqueue) by passing a scheduler address.
Ray Data would work as well but is a far heavier dependency for a job that is only
"map an ONNX session over partitions".

The job uses exactly the artifact the service loads (manifest and sha256 checked the same
way) so offline and online scores cannot drift. Table layout: one column per scalar graph
input, and `<input>_<j>` columns for a vector input of width n (j = 0..n-1); outputs come
back the same way. Graphs with shared inputs (IMN's item table) are not bulk-scorable here.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd

from service.errors import InvalidInput
from service.runtime.manifest import GraphSpec, TensorSpec, read_manifest


def _width(spec: TensorSpec) -> int | None:
    """None for a per-row scalar, n for a vector of n; anything else cannot be a table column."""
    trailing = spec.shape[1:]
    if not trailing:
        return None
    if len(trailing) == 1 and isinstance(trailing[0], int):
        return trailing[0]
    raise InvalidInput(spec.name, f"shape {spec.shape} cannot be laid out as table columns")


def columns_for(spec: TensorSpec) -> list[str]:
    width = _width(spec)
    return [spec.name] if width is None else [f"{spec.name}_{j}" for j in range(width)]


@functools.lru_cache(maxsize=4)
def _session(onnx_path: str, threads: int) -> ort.InferenceSession:
    """One session per worker process and artifact, reused across partitions."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])


def score_partition(
    frame: pd.DataFrame,
    onnx_path: str,
    graph: GraphSpec,
    keep_columns: list[str],
    chunk_rows: int = 65536,
    threads: int = 1,
) -> pd.DataFrame:
    session = _session(onnx_path, threads)
    pieces = []
    for start in range(0, len(frame), chunk_rows):
        chunk = frame.iloc[start : start + chunk_rows]
        feeds: dict[str, np.ndarray] = {}
        for spec in graph.inputs:
            values = chunk[columns_for(spec)].to_numpy(dtype=spec.dtype)
            feeds[spec.name] = values[:, 0] if _width(spec) is None else values
        outputs = session.run([o.name for o in graph.outputs], feeds)
        out = chunk[keep_columns].reset_index(drop=True)
        for spec, value in zip(graph.outputs, outputs, strict=True):
            value = np.asarray(value).reshape(len(chunk), -1)
            for j, column in enumerate(columns_for(spec)):
                out[column] = value[:, j]
        pieces.append(out)
    if not pieces:
        empty = {c: frame[c] for c in keep_columns}
        for spec in graph.outputs:
            for column in columns_for(spec):
                empty[column] = pd.Series(dtype=spec.dtype)
        return pd.DataFrame(empty)
    return pd.concat(pieces, ignore_index=True)


def score_table(
    artifact_dir: Path,
    input_path: str,
    output_path: str,
    *,
    graph_name: str | None = None,
    keep_columns: list[str] | None = None,
    scheduler: str = "threads",
    blocksize: str = "64MB",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Score every row of a CSV/Parquet table (file, folder or glob) into Parquet.

    `progress`: a progress bar of the partitions on stderr; None shows one only when stderr
    is a terminal, so logs and CI output stay clean.
    """
    import dask
    import dask.dataframe as dd

    manifest = read_manifest(Path(artifact_dir))
    name = graph_name or next(iter(manifest.graphs))
    if name not in manifest.graphs:
        raise InvalidInput("graph", f"{name!r} not in {sorted(manifest.graphs)}")
    graph = manifest.graphs[name]
    if graph.shared_inputs:
        raise InvalidInput("graph", f"{name!r} has shared inputs {graph.shared_inputs}")
    onnx_path = str(Path(artifact_dir) / graph.file)

    if input_path.endswith(".csv") or input_path.endswith(".csv.gz"):
        table = dd.read_csv(input_path, blocksize=None if input_path.endswith(".gz") else blocksize)
    else:
        table = dd.read_parquet(input_path)
    needed = [c for spec in graph.inputs for c in columns_for(spec)]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InvalidInput("input", f"missing columns {missing[:5]} (of {len(missing)})")
    keep = keep_columns or [c for c in table.columns if c not in needed]

    meta = score_partition(table._meta, onnx_path, graph, keep)
    scored = table.map_partitions(score_partition, onnx_path, graph, keep, meta=meta)
    show = sys.stderr.isatty() if progress is None else progress
    write = scored.to_parquet(output_path, write_index=False, compute=False)
    if scheduler.startswith("tcp://"):
        from dask.distributed import Client  # optional: only for a real cluster
        from dask.distributed import progress as cluster_progress

        with Client(scheduler) as client:
            future = client.compute(write)
            if show:
                cluster_progress(future)
            future.result()
    else:
        from dask.diagnostics import ProgressBar

        with dask.config.set(scheduler=scheduler):
            if show:
                with ProgressBar(out=sys.stderr):
                    write.compute()
            else:
                write.compute()
    rows = int(dd.read_parquet(output_path).shape[0].compute())
    return {"model": manifest.model, "version": manifest.version, "graph": name, "rows": rows}
