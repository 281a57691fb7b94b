"""The zygote warms torch.export only for jobs that export: the default formats never pay for dynamo.
It pays coverage.py's imports for every reference runner, and leaves no tracer behind."""

from __future__ import annotations

import subprocess
import sys

from regctl.worker.sandbox.zygote import exports

CHECK = """
import sys
from regctl.worker.sandbox.zygote import warm_export, warm_up
warm_up()
print("torch._dynamo.eval_frame" in sys.modules, "sympy" in sys.modules)
warm_export()
print("torch._dynamo.eval_frame" in sys.modules)
"""


def test_only_a_spec_asking_for_a_program_format_warms_export() -> None:
    assert exports({"spec": {"formats": ["torchscript", "exported"]}})
    assert exports({"spec": {"formats": ["aoti"]}})
    assert not exports({"spec": {"formats": ["torchscript"]}})
    # a role's args come from the supervisor, but a malformed spec must not crash the template
    assert not exports({}) and not exports({"spec": "x"}) and not exports({"spec": {"formats": "aoti"}})


def test_the_zygote_warm_up_leaves_dynamo_unloaded_and_the_export_warm_up_loads_it() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # nor sympy, which trace's own check would import (0.8 s of the zygote's start), unused by any role
    assert done.stdout.split() == ["False", "False", "True"]


LEFT = """
import sys, threading
from regctl.worker.sandbox.zygote import warm_up
warm_up()
print("coverage.control" in sys.modules)
import coverage
print(sys.gettrace() is None, threading.gettrace() is None, coverage.Coverage.current() is None)
"""


def test_the_warm_up_imports_coverage_and_leaves_nothing_tracing() -> None:
    done = subprocess.run([sys.executable, "-c", LEFT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # what the first start of a reference runner would import, already there; and no tracer a fork inherits
    assert done.stdout.split() == ["True"] * 4
