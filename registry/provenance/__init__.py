"""Signed provenance: the registry's signing keys, in-toto statements and DSSE envelopes."""
