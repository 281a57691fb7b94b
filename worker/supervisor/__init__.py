"""The trusted side of a job: claims it, starts the sandboxed roles, seals what they hand over,
uploads and records. Nothing here imports torch or model code (tests/test_cli_imports.py checks).
"""
