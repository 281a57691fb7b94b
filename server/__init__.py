"""`regctl serve`: the registry over HTTP (FastAPI on uvicorn), under /api/v1.

Handlers are thin: they authenticate the token, call the service layer and return its records.
The server never imports torch and never runs model code.
"""
