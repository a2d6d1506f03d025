"""The Dask bulk-scoring job gives the same scores as a direct ONNX Runtime call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper

from service.errors import InvalidInput
from service.runtime.manifest import DataWindow
from training.artifacts import write_artifact
from training.bulk_score import score_table
from training.cli import main as cli_main


def _logistic_graph(path: Path, width: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """score = sigmoid(x @ w + b * boost): one vector input, one scalar input, one output."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(width, 1)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["logit"]),
        helper.make_node("Unsqueeze", ["boost", "axes"], ["boost2"]),
        helper.make_node("Add", ["logit", "boost2"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["score2"]),
        helper.make_node("Squeeze", ["score2", "axes"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes,
        "logistic",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width]),
            helper.make_tensor_value_info("boost", TensorProto.FLOAT, ["batch"]),
        ],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.flatten()),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return weights, 0.0


def _artifact(tmp_path: Path, width: int = 6) -> Path:
    onnx_path = tmp_path / "g.onnx"
    _logistic_graph(onnx_path, width)
    window = DataWindow(start="2026-01-01", end="2026-01-02", sha256="0" * 64)
    return write_artifact(tmp_path / "artifacts", "toy", {"main": onnx_path}, data_window=window)


def _table(rows: int, width: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(rows, width)).astype(np.float32))
    frame.columns = [f"features_{j}" for j in range(width)]
    frame["boost"] = rng.normal(size=rows).astype(np.float32)
    frame.insert(0, "user_id", [f"u{i}" for i in range(rows)])
    return frame


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_bulk_scores_match_direct_session(tmp_path: Path, scheduler: str) -> None:
    artifact = _artifact(tmp_path)
    table = _table(5000)
    src = tmp_path / "users.parquet"
    table.to_parquet(src, index=False)
    out = tmp_path / "scored"
    summary = score_table(artifact, str(src), str(out), scheduler=scheduler)
    assert summary["rows"] == 5000

    scored = pd.read_parquet(out).set_index("user_id").loc[table["user_id"]]
    session = ort.InferenceSession(str(artifact / "main.onnx"))
    feats = table[[f"features_{j}" for j in range(6)]].to_numpy(np.float32)
    direct = session.run(None, {"features": feats, "boost": table["boost"].to_numpy(np.float32)})[0]
    np.testing.assert_allclose(scored["score"].to_numpy(), direct, rtol=1e-6)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    table = _table(10).drop(columns=["features_3"])
    src = tmp_path / "users.csv"
    table.to_csv(src, index=False)
    with pytest.raises(InvalidInput, match="features_3"):
        score_table(artifact, str(src), str(tmp_path / "out"))


def test_cli_runs_the_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifact = _artifact(tmp_path)
    src = tmp_path / "users.csv"
    _table(300).to_csv(src, index=False)
    out = tmp_path / "scored"
    argv = ["score-bulk", "--artifact", str(artifact), "--input", str(src), "--output", str(out)]
    assert cli_main(argv) == 0
    assert "'rows': 300" in capsys.readouterr().out


def test_progress_bar_only_when_asked_or_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = _artifact(tmp_path)
    src = tmp_path / "users.parquet"
    _table(200).to_parquet(src, index=False)
    score_table(artifact, str(src), str(tmp_path / "quiet"))  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    score_table(artifact, str(src), str(tmp_path / "shown"), progress=True)
    err = capsys.readouterr().err
    assert "100%" in err and "Completed" in err
