"""The small contract every salecast model implements (after RecBole's AbstractRecommender).

A model is a pure `nn.Module`: it never loads data. Training jobs call `calculate_loss` on
batches of tensors, evaluation calls `predict`, and `export_graphs` writes the ONNX graphs
that serving loads. Everything else (data pipelines, baselines, metrics) lives in
`training/`.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
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
    output_names: Sequence[str],
    path: Path,
    dynamic_batch: bool = True,
    opset: int = 17,
    shared: Collection[str] = (),
    extra_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> Path:
    """Export `module(**inputs)` with a dynamic leading batch axis on every input and output.

    Uses the TorchScript exporter (`dynamo=False`): it needs no extra dependency and gives
    stable input names, which the manifest and the micro-batcher rely on. `shared` names
    inputs bound once per version (an item table, a prototype bank): they get no batch
    axis, which would tie their first dimension to the request's batch size. `extra_axes`
    adds further dynamic axes (`{"noise": {1: "samples"}}`) to the batch axes.
    """
    names = list(example_inputs)
    dynamic_axes: dict[str, dict[int, str]] | None = None
    if dynamic_batch or extra_axes:
        dynamic_axes = {}
        if dynamic_batch:
            for name in [*names, *output_names]:
                if name not in shared:
                    dynamic_axes[name] = {0: "batch"}
        for name, axes in (extra_axes or {}).items():
            dynamic_axes[name] = {**dynamic_axes.get(name, {}), **axes}
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module,
            tuple(example_inputs[name] for name in names),
            str(path),
            input_names=names,
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    return path
