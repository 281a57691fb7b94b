"""Verdicts: each sealed candidate loaded in the runtime that deploys it (TorchScript, LibTorch,
the exported program, AOTInductor) and compared with the eager outputs. It never imports
worker/model/ (tests/test_trust_layout.py checks), so no model code runs in the judge.
"""
