"""Copies of examples whose float inputs are declared in [-10, 10), for tests of formats other runtimes build.

onnxruntime's and XNNPACK's kernels add in another order than eager's. On the battery's `large` draws
(standard normal x 1e3) an output that cancels to near zero can then differ by more than the spec's
atol 1e-5 + rtol 1e-4 x |output|: examples/linear's ONNX model failed 'batch=8 draw 1 large' in one
CI run (6.1e-5 at an output of -0.144); measured outside regctl, 4 of 3,000 such draws fail in
onnxruntime, 0 of 3,000 on [-10, 10) (worst 1.4e-6); tiny-transformer's ExecuTorch program, 5 of 200
seeds, 0 of 300 on [-10, 10) (worst 8e-7). The judge is right to refuse those under the spec's
tolerances; a test of the pipeline must not depend on the battery's seed, so it registers these.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RANGE = "low = -10.0\nhigh = 10.0\n"
_SHAPE = re.compile(r"^shape = .*\n", re.MULTILINE)


def in_range(example: str, root: Path) -> Path:
    """examples/`example` copied under `root`, each input's `shape` line followed by low and high."""
    model_dir = root / example
    shutil.copytree(EXAMPLES / example, model_dir)
    spec = model_dir / "regctl.toml"
    text = spec.read_text()
    assert 'dtype = "float32"' in text and "low =" not in text, f"{example}: expected float inputs, no range"
    bounded, count = _SHAPE.subn(lambda m: m.group(0) + RANGE, text)
    assert count == text.count("[[inputs]]"), f"{example}: one shape line per input"
    spec.write_text(bounded)
    return model_dir
