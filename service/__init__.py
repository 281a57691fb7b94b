"""The service layer: one function per operation, called by the direct CLI, the HTTP API and the client.

Each operation checks what the caller may do, makes the change through `registry` (which writes the
audit row in the same transaction) and hands new jobs to `dispatch`. It imports neither torch nor
Celery: dispatch loads the broker code only when a broker is configured.
"""
