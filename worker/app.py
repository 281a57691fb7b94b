"""The Celery application, configured from the settings object.

No result backend: the database holds job state. Late acknowledgement, one prefetched task per
process and a visibility timeout longer than the hard time limit mean a job whose worker dies is
delivered again, and the claim in `registry.jobs` makes that second delivery safe.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from regctl.registry.settings import Settings
from regctl.worker.queues import CPU_QUEUE, QUEUES, RECONCILE_TASK

BROKER_TIMEOUT_S = 3.0


def make_app(settings: Settings) -> Celery:
    """A Celery app for `settings` (its broker URL must be set)."""
    app = Celery("regctl", broker=settings.broker_url, include=["regctl.worker.tasks"])
    app.conf.update(
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],
        task_create_missing_queues=False,
        task_default_queue=CPU_QUEUE,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.job_soft_time_limit,
        task_time_limit=settings.job_time_limit,
        worker_max_memory_per_child=settings.worker_max_memory_kb,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=BROKER_TIMEOUT_S,
        broker_transport_options={
            # Longer than the hard time limit, or Redis would hand a running job to a second worker.
            "visibility_timeout": int(settings.job_time_limit + 300),
            "socket_connect_timeout": BROKER_TIMEOUT_S,
            "socket_timeout": 30,
            "max_retries": 1,
        },
        beat_schedule={
            "reconcile": {
                "task": RECONCILE_TASK,
                "schedule": settings.reconcile_interval,
                "options": {"queue": CPU_QUEUE, "expires": settings.reconcile_interval},
            }
        },
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
