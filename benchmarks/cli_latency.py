"""How long `regctl models list` takes on an embedded registry, against importing sqlalchemy and click.

Prints one JSON document. Target (issue 2): ratio < 2.0.
    python benchmarks/cli_latency.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 2.0


def _median_wall(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _fill(home: Path, models: int) -> None:
    from regctl.registry.requests import RegisterRequest
    from regctl.registry.settings import Settings
    from regctl.registry.versions import register_version
    from tests.conftest import write_model_dir

    settings = Settings.from_env({}, home=home)
    directory = write_model_dir(home.parent / "model")
    for i in range(models):
        register_version(settings, RegisterRequest(f"model-{i:03d}"), directory)


def main() -> None:
    """Measure and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--models", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        _fill(home, args.models)
        env = {**os.environ, "REGCTL_HOME": str(home)}
        env.pop("REGCTL_DATABASE_URL", None)
        regctl = [sys.executable, "-m", "regctl.cli.main", "models", "list"]
        baseline = [sys.executable, "-c", "import sqlalchemy, click"]
        _median_wall(regctl, env, 2)  # warm the page cache and .pyc files for both sides
        _median_wall(baseline, env, 2)
        regctl_s = _median_wall(regctl, env, args.runs)
        baseline_s = _median_wall(baseline, env, args.runs)
    ratio = regctl_s / baseline_s
    print(
        json.dumps(
            {
                "benchmark": "cli_latency",
                "command": "regctl models list",
                "models": args.models,
                "runs": args.runs,
                "regctl_median_s": round(regctl_s, 4),
                "baseline_median_s": round(baseline_s, 4),
                "baseline": "python -c 'import sqlalchemy, click'",
                "ratio": round(ratio, 3),
                "target": TARGET,
                "meets_target": ratio < TARGET,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
