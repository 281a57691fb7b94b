"""Queue and task names in one place, and which device a queue's jobs run on."""

from __future__ import annotations

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
QUEUES = (CPU_QUEUE, GPU_QUEUE)

RUN_JOB_TASK = "regctl.run_job"
RECONCILE_TASK = "regctl.reconcile"


def parse_queues(text: str) -> tuple[str, ...]:
    """`cpu,gpu` -> ("cpu", "gpu"); unknown names are refused rather than silently created."""
    from regctl.registry.errors import InvalidInput

    names = tuple(dict.fromkeys(q.strip() for q in text.split(",") if q.strip()))
    unknown = [q for q in names if q not in QUEUES]
    if not names or unknown:
        raise InvalidInput(
            f"--queues {text!r} names unknown queues {unknown or '(none)'}; use cpu, gpu or cpu,gpu"
        )
    return names
