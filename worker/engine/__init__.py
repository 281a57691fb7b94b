"""Torch-level helpers shared by the model side (worker/model/) and the judge (worker/judge/).

The battery, capturing warnings and errors, the exchange files' formats, seeds and devices,
calling a function on a case, latency, report entries: no model code is imported here, and
nothing here imports worker/model/. `convert_model` and `validate_artifact`, which chain the model
side and the judge in one process for unit tests, are in worker/inprocess/.
"""
