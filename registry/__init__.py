"""The regctl domain: database, artifact store, model spec, versions, jobs and aliases.

This package imports neither Celery nor torch, so read-only commands stay fast.
"""
