# One image for the CLI, the migrate job, the API server (regctl serve), the workers and beat.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY registry registry
COPY worker worker
COPY cli cli
COPY regctl regctl
COPY service service
COPY server server
COPY migrations migrations
# A CPU wheel by default; build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 for GPU workers.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# The executorch and onnx extras let the workers build and prove those formats (constraints.txt pins them).
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -c constraints.txt "torch==2.13.0" \
    ".[s3,executorch,onnx]" && useradd -m regctl
# Build the LibTorch runner once, where every user can run it and none but root can change it, so no
# worker compiles it on its first job and no sandboxed model can replace it.
ENV REGCTL_LIBTORCH_CACHE=/opt/regctl/libtorch-runner
RUN python -m regctl.worker.judge.libtorch && chmod -R a+rX,go-w /opt/regctl
# The CLI runs as an ordinary user. Workers run as root in compose: root is what lets the sandbox
# build namespaces and drop each model process to an unprivileged uid of its own (README, Trust model).
USER regctl
ENV REGCTL_HOME=/home/regctl/.regctl
ENTRYPOINT ["regctl"]
