"""Process set-up for workers: CUDA discovery without touching CUDA, per-child threads and GPUs.

The parent of a prefork pool must never initialise CUDA (a forked child could not use it), so the
parent asks a throw-away subprocess how many GPUs there are, and each child picks its own GPU
through CUDA_VISIBLE_DEVICES, which its zygote and every sandboxed role process inherit; only the
role processes ever touch CUDA.
"""

from __future__ import annotations

import os
import subprocess
import sys

from regctl.registry.errors.inputs import NoCudaForGpuQueue
from regctl.registry.settings import CONCURRENCY_ENV, GPUS_ENV, QUEUES_ENV
from regctl.worker.sandbox.client import shared_zygote

__all__ = ["CONCURRENCY_ENV", "GPUS_ENV", "QUEUES_ENV", "init_child", "plan_gpu_worker"]


def count_gpus_in_subprocess(timeout: float = 120.0) -> int:
    """How many CUDA devices torch sees, asked in a separate process so this one stays CUDA-free."""
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
        return int(out.stdout.strip() or 0)
    except (subprocess.SubprocessError, ValueError):
        return 0


def plan_gpu_worker(
    queues: tuple[str, ...], concurrency: int | None, gpu_on_cpu: bool
) -> tuple[int, list[str]]:
    """Concurrency and visible GPU ids for a worker; refuse a gpu worker on a machine without CUDA."""
    if "gpu" not in queues or gpu_on_cpu:
        return concurrency or os.cpu_count() or 1, []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = count_gpus_in_subprocess()
    if count == 0:
        raise NoCudaForGpuQueue()
    ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(count)]
    ids = ids[:count]
    return concurrency or len(ids), ids


def init_child(index: int, gpus: tuple[str, ...]) -> None:
    """Set up one pool child: its GPU (one of `gpus`, round robin) and a warm sandbox zygote.

    The child itself never imports torch or model code; its zygote imports torch in the
    background, so the first job does not wait for it.
    """
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    shared_zygote()
