"""An embedded registry driven through the real `regctl` command, in its own REGCTL_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGCTL = str(Path(sys.executable).with_name("regctl"))


@dataclass
class Registry:
    """An embedded registry the tests drive through the real `regctl` command."""

    home: Path
    env: dict[str, str]

    def regctl(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `regctl ARGS` against this registry."""
        return subprocess.run(
            [REGCTL, *args], env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=600
        )

    def show(self, ref: str) -> dict[str, Any]:
        """`versions show REF --json`, parsed."""
        done = self.regctl("versions", "show", ref, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def public_key(self, to: Path) -> Path:
        """The registry's current public key as a PEM file at `to`."""
        keys = json.loads(self.regctl("keys", "show", "--json").stdout)
        to.write_text(next(k for k in keys if k["current"])["public_pem"])
        return to


def embedded_registry(home: Path, **env: str) -> Registry:
    """A registry at `home`, with none of this process's REGCTL_ variables, and `env` on top."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REGCTL_")}
    return Registry(home, {**base, "REGCTL_HOME": str(home), **env})
