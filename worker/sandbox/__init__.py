"""The confinement a job's untrusted roles run in: Linux namespaces, seccomp, a leased uid per role,
resource limits, and the warm zygote they fork from. `protocol.py` is all that crosses the boundary;
the supervisor drives it through `client.py` and never imports torch."""
