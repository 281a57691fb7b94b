"""The version page against the same version's JSON endpoint, on one `regctl serve`, in one run.

Registers examples/conditional on the embedded default (SQLite, local store; its report has a rejected
trace, warnings, a 12-input battery and both charts), signs a reader in, then alternates
GET /versions/conditional:1 (the page: the same service call, the report laid out, two SVG charts,
the Jinja2 template) with GET /api/v1/versions/conditional:1 (JSON) from one keep-alive client.
Both travel the same loopback socket, so the difference between their latencies is the page's own
server-side cost. Prints one JSON document; exits 1 when the page's p50 is over TARGET x the JSON's.

    python benchmarks/pages.py [--rounds 400]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.service_support import REPO, log_problems, regctl, regctl_server_argv, serving

TARGET = 2.0
REF = "conditional:1"


def _timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:200]}")
    return elapsed


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


def main() -> int:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="regctl-bench-pages-") as tmp:
        root = Path(tmp)
        env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "REGCTL_HOME": str(root / "home")}
        env["REGCTL_CONFIG"] = str(root / "no-login.json")
        regctl(env, "register", "conditional", str(REPO / "examples" / "conditional"), "--wait")
        secret = json.loads(regctl(env, "tokens", "create", "bench", "--role", "reader", "--json"))["secret"]
        with serving(regctl_server_argv(8), env, root / "serve.log") as server:
            with httpx.Client(base_url=server.url, timeout=30) as browser:
                login = browser.post("/login", data={"token": secret, "next": "/"})
                if login.status_code != 303 or not browser.cookies:
                    raise RuntimeError(f"signing in failed: {login.status_code}")
                with httpx.Client(
                    base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
                ) as api:
                    page_path, json_path = f"/versions/{REF}", f"/api/v1/versions/{REF}"
                    for _ in range(30):  # warm both paths: templates compiled, caches filled
                        _timed(browser, page_path), _timed(api, json_path)
                    page, data = [], []
                    for _ in range(args.rounds):
                        page.append(_timed(browser, page_path))
                        data.append(_timed(api, json_path))
                    page_bytes = len(browser.get(page_path).content)
                    json_bytes = len(api.get(json_path).content)
            problems = log_problems(server.log)
    ratio = statistics.median(page) / statistics.median(data)
    result = {
        "benchmark": "version page vs JSON endpoint",
        "rounds": args.rounds,
        "page": {**_summary(page), "bytes": page_bytes},
        "json": {**_summary(data), "bytes": json_bytes},
        "p50_ratio": round(ratio, 3),
        "target": f"p50 ratio <= {TARGET}",
        "met": ratio <= TARGET,
        "server_log": problems,
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
