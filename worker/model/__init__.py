"""The only code that imports model code: loading a model directory, the eager reference, and the
candidate builder's trace, script and export. It runs only as the sandboxed candidate builder and
reference runner; the judge (worker/judge/) never imports it.
"""
