"""Queue and task names in one place, and which device a queue's jobs run on."""

from __future__ import annotations

from regctl.registry.errors.inputs import UnknownQueues

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
# Webhook deliveries: a worker consumes it beside its job queues unless told not to (`--no-webhooks`).
WEBHOOK_QUEUE = "webhooks"
QUEUES = (CPU_QUEUE, GPU_QUEUE, WEBHOOK_QUEUE)

RUN_JOB_TASK = "regctl.run_job"
RECONCILE_TASK = "regctl.reconcile"
DELIVER_WEBHOOK_TASK = "regctl.deliver_webhook"


def parse_queues(text: str) -> tuple[str, ...]:
    """`cpu,gpu` -> ("cpu", "gpu"); unknown names are refused rather than silently created."""
    names = tuple(dict.fromkeys(q.strip() for q in text.split(",") if q.strip()))
    unknown = [q for q in names if q not in QUEUES]
    if not names or unknown:
        raise UnknownQueues(text=text, unknown=unknown or "(none)")
    return names
