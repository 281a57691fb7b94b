"""What crosses the sandbox's boundary, as plain constants: the supervisor's side (client.py) and
the sandboxed side (zygote.py, launch.py, roles.py) both read them here, so neither imports the other.

The control socket: the supervisor starts the zygote (`python -P -m ZYGOTE_MODULE`) with the
socket's fd in $CONTROL_FD_ENV and its own pid in $PARENT_ENV, then exchanges JSON messages of at
most MAX_MESSAGE bytes (zygote.py documents the ops). A run request carries the progress pipe's
write end and up to MAX_HANDED open files, named in its "files" list in the order they follow.

The progress pipe: one line per message, its first two characters saying what it is. The sandbox's
init writes one PROTECTIONS (`S <protections json>`) or REFUSED (`E <reason>`) line before any
model code runs; the role then writes PROGRESS (`P <text>`) lines.
"""

from __future__ import annotations

ZYGOTE_MODULE = "regctl.worker.sandbox.zygote"
CONTROL_FD_ENV = "REGCTL_ZYGOTE_FD"
PARENT_ENV = "REGCTL_ZYGOTE_PARENT"
MAX_MESSAGE = 1 << 20
MAX_HANDED = 3  # open files a run request may hand its role, beside the progress pipe

PROTECTIONS = "S "
REFUSED = "E "
PROGRESS = "P "
