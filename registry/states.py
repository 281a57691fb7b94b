"""The statuses a version and the states a job pass through: plain names, free of SQLAlchemy.

The schema builds its enum columns from them, and a request checks a status against them when it is
built, on a client that never loads the database layer.
"""

from __future__ import annotations

# `cancelled`: its last job was cancelled before the version was ever proved (submit or retry again).
VERSION_STATUSES = ("registered", "converting", "validating", "ready", "failed", "cancelled")
JOB_KINDS = ("convert", "validate")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
