# syntax=docker/dockerfile:1.7
# Three images from one file:
#   --target cpu       serving on ONNX Runtime's CPU provider (default)
#   --target gpu       serving on the CUDA provider (onnxruntime-gpu, CUDA 13 runtime)
#   --target trainer   offline training jobs (torch CPU build); writes artifacts the servers load
#   --target cpu-baked the cpu image with a folder of artifacts inside:
#                      docker build --target cpu-baked --build-context artifacts=./artifacts .
# The serving images contain no torch: training writes ONNX + manifest, serving only loads.
# Every pip install takes constraints.txt, the versions the test suite ran against.

ARG PYTHON_VERSION=3.11

# ---- wheels: build the salecast wheel once, without dependencies -------------------------
FROM python:${PYTHON_VERSION}-slim AS wheels
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY service ./service
COPY models ./models
COPY training ./training
COPY bench ./bench
RUN pip wheel --no-deps --wheel-dir /wheels . && cp constraints.txt /wheels/

# ---- cpu: the default serving image --------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS cpu
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only under Kubernetes' restricted profile.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \
    SALECAST_ARTIFACTS_DIR=/models SALECAST_DATA_DIR=/var/lib/salecast SALECAST_HOST=0.0.0.0
COPY --from=wheels /wheels /wheels
RUN pip install -c /wheels/constraints.txt /wheels/*.whl && rm -rf /wheels \
 && useradd --system --uid 10001 --home /var/lib/salecast salecast \
 && mkdir -p /models /var/lib/salecast && chown salecast /models /var/lib/salecast
USER salecast
WORKDIR /var/lib/salecast
EXPOSE 8000
# Models are mounted at /models (compose, Kubernetes) or baked with --target cpu-baked.
VOLUME ["/models"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status == 200 else 1)"
CMD ["salecast", "serve"]

# ---- cpu-baked: a folder of artifacts inside the image -------------------------------------
# .dockerignore keeps artifacts/ out of the default context (every other build would send it);
# the folder comes as the named context `artifacts`: --build-context artifacts=./artifacts
FROM cpu AS cpu-baked
COPY --from=artifacts --chown=salecast . /models/

# ---- gpu: CUDA 13 runtime + cuDNN, as onnxruntime-gpu 1.31 is built for CUDA 13 -----------
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS gpu
# The newest onnxruntime-gpu release; constraints.txt pins the CPU wheel the tests ran on.
ARG ONNXRUNTIME_GPU_VERSION=1.31.1
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1 \
    SALECAST_ARTIFACTS_DIR=/models SALECAST_DATA_DIR=/var/lib/salecast \
    SALECAST_EXECUTION_PROVIDER=cuda SALECAST_HOST=0.0.0.0
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY --from=wheels /wheels /wheels
# Both wheels ship the `onnxruntime` module: install salecast, then swap the CPU wheel out.
RUN pip install -c /wheels/constraints.txt /wheels/*.whl "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
 && pip uninstall -y onnxruntime \
 && pip install --force-reinstall --no-deps "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
 && rm -rf /wheels \
 && useradd --system --uid 10001 --home /var/lib/salecast salecast \
 && mkdir -p /models /var/lib/salecast && chown salecast /models /var/lib/salecast
USER salecast
WORKDIR /var/lib/salecast
EXPOSE 8000
VOLUME ["/models"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status == 200 else 1)"
CMD ["salecast", "serve"]

# ---- trainer: torch (CPU build) for the training jobs ----------------------------------------
FROM python:${PYTHON_VERSION}-slim AS trainer
# HOME and MPLCONFIGDIR on /tmp: the only writable place besides /models under Kubernetes.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \
    SALECAST_ARTIFACTS_DIR=/models HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib
COPY --from=wheels /wheels /wheels
# torch alone from the CPU index (its dependencies come from PyPI with the extras), then the rest.
RUN pip install -c /wheels/constraints.txt --no-deps --index-url https://download.pytorch.org/whl/cpu torch \
 && pip install -c /wheels/constraints.txt "$(ls /wheels/*.whl)[train]" && rm -rf /wheels \
 && useradd --system --uid 10001 salecast && mkdir -p /models && chown salecast /models
USER salecast
WORKDIR /tmp
ENTRYPOINT ["salecast"]
CMD ["demo", "--artifacts", "/models"]
