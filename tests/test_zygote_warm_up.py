"""The zygote warms torch.export only for jobs that export: the default formats never pay for dynamo."""

from __future__ import annotations

import subprocess
import sys

from regctl.worker.sandbox.zygote import exports

CHECK = """
import sys
from regctl.worker.sandbox.zygote import warm_export, warm_up
warm_up()
print("torch._dynamo.eval_frame" in sys.modules)
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
    assert done.stdout.split() == ["False", "True"]
