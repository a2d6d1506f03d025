"""Request and response bodies of the Open Inference Protocol (KServe V2, REST).

As the protocol defines them, so tritonclient, perf_analyzer and KServe inference graphs talk
to salecast unchanged: tensors carry a name, a shape, a V2 datatype (``FP32``, ``INT64``, ...)
and their data, flattened in row-major order (nested lists are accepted too).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.types import Identifier


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a dimension of any size (the batch axis)")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Readiness(BaseModel):
    ready: bool


class Liveness(BaseModel):
    live: bool


class InferTensor(BaseModel):
    model_config = ConfigDict(extra="allow")  # `parameters` and other extensions pass through
    name: Identifier
    shape: list[int] = Field(max_length=8)
    datatype: str = Field(max_length=16)
    data: list[Any] = Field(max_length=4_000_000)


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: Identifier


class InferRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": "req-1",
                    "inputs": [  # the demo's intent.score graph, one user with no history
                        {"name": "fields", "shape": [1, 19], "datatype": "INT64", "data": [0] * 19},
                        {
                            "name": "short",
                            "shape": [1, 7, 4],
                            "datatype": "FP32",
                            "data": [0.0] * 28,
                        },
                        {
                            "name": "long",
                            "shape": [1, 8, 4],
                            "datatype": "FP32",
                            "data": [0.0] * 32,
                        },
                    ],
                }
            ]
        },
    )
    id: str | None = Field(default=None, max_length=256)
    inputs: list[InferTensor] = Field(min_length=1, max_length=64)
    outputs: list[RequestedOutput] | None = Field(default=None, max_length=64)


class OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


class InferenceError(BaseModel):
    error: str = Field(description="what went wrong, as the protocol's error body gives it")
