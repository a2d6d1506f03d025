"""The small contract every salecast model implements (after RecBole's AbstractRecommender).

A model is a pure `nn.Module`: it never loads data. Training jobs call `calculate_loss` on
batches of tensors, evaluation calls `predict`, and `export_graphs` writes the ONNX graphs
that serving loads. Everything else (data pipelines, baselines, metrics) lives in
`training/`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

Batch = Mapping[str, torch.Tensor]


class SalecastModel(nn.Module, abc.ABC):
    #: CLI and artifact name: "imn", "intent", "cvr", "stmp", "dinop".
    name: str

    @abc.abstractmethod
    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        """Scalar training loss for one batch."""

    @abc.abstractmethod
    def predict(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        """Named outputs for evaluation, in the same units the ONNX graphs return."""

    @abc.abstractmethod
    def export_graphs(self, out_dir: Path) -> dict[str, Path]:
        """Write the ONNX graph(s) into `out_dir`; return graph name -> file path."""


def export_onnx(
    module: nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    output_names: list[str],
    path: Path,
    dynamic_batch: bool = True,
    opset: int = 17,
) -> Path:
    """Export `module(**inputs)` with a dynamic leading batch axis on every input and output.

    Uses the TorchScript exporter (`dynamo=False`): it needs no extra dependency and gives
    stable input names, which the manifest and the micro-batcher rely on.
    """
    names = list(example_inputs)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in [*names, *output_names]}
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module,
            tuple(example_inputs[name] for name in names),
            str(path),
            input_names=names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    return path
