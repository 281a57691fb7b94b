"""Where the remote CLI finds its server: REGCTL_URL and REGCTL_TOKEN, else the file `regctl login` wrote.

The file is JSON at $REGCTL_CONFIG (default ~/.config/regctl/login.json), written 0600 because it
holds a token.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from regctl.registry.errors.files import BadServerUrl, LoginUnreadable, LoginWithoutUrl
from regctl.registry.settings import ClientSettings


@dataclass(frozen=True)
class Login:
    """A server URL and the token to send it."""

    url: str
    token: str | None


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where `regctl login` keeps the URL and token."""
    return ClientSettings.from_env(env).config


def check_url(url: str) -> str:
    """The URL without a trailing slash, or InvalidInput unless it is http(s)://host[:port][/path]."""
    url = url.strip().rstrip("/")
    if (
        not url.startswith(("http://", "https://"))
        or len(url.split("://", 1)[1]) == 0
        or not url.isprintable()
    ):
        raise BadServerUrl(url=url)
    return url


def find_login(env: Mapping[str, str] | None = None, url: str | None = None) -> Login | None:
    """The server to talk to: `url` or REGCTL_URL (with REGCTL_TOKEN), else the login file, else None."""
    client = ClientSettings.from_env(env)
    url = url or client.url
    if url:
        return Login(check_url(url), client.token or _saved_token(client, check_url(url)))
    saved = _read(client.config)
    if saved is None:
        return None
    return Login(check_url(saved["url"]), client.token or saved.get("token"))


def _saved_token(client: ClientSettings, url: str) -> str | None:
    saved = _read(client.config)
    return saved.get("token") if saved and saved.get("url", "").rstrip("/") == url else None


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LoginUnreadable(path=path, reason=exc) from None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise LoginWithoutUrl(path=path)
    return data


def save_login(login: Login, env: Mapping[str, str] | None = None) -> Path:
    """Write the login file, readable only by its owner, atomically; return its path."""
    path = config_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".login-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"url": login.url, "token": login.token}, out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def forget_login(env: Mapping[str, str] | None = None) -> bool:
    """Remove the login file; True if there was one."""
    path = config_path(env)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
