"""Register an in-memory `nn.Module` (or a function) from a training script or a notebook.

    import regctl
    version = regctl.register_module(
        "tiny", model, inputs=[{"name": "x", "dtype": "float32", "shape": ["batch", 8]}],
        dims={"batch": (1, 16)}, tags={"run": "42"}, wait=True,
    )

What is registered is what `regctl register DIR` would register, built in a temporary directory:
- the source file that defines the class (or function), with the other files under the same import
  root that this process has imported from there (its local helpers), paths preserved;
- the `state_dict` as `weights.safetensors` (never a pickle: no code travels as data);
- a generated `regctl_entry.py` whose `build()` constructs the class with `init` (JSON-safe keyword
  arguments) and a generated `regctl.toml`.
A class defined in `__main__` (a notebook cell, or the script being run) has no file the worker
could import without running the whole script; it is refused with how to move it into a file.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from regctl.client import Progress, RegistryClient, WaitTimeout
from regctl.login import find_login
from regctl.registry.card import CARD_FILENAME, check_card
from regctl.registry.entities import JobInfo, RegisteredVersion
from regctl.registry.errors import ConversionFailed, InvalidInput
from regctl.registry.errors.files import CodeNotImportable, InstalledPackageCode, NoSourceFile
from regctl.registry.errors.inputs import BadDimRange, InitMismatch, InitNotJson, NotFinite, NotTomlValue
from regctl.registry.lineage import Lineage, with_git
from regctl.registry.requests import RegisterRequest
from regctl.registry.text import human_size, visible
from regctl.worker.dispatch import dispatcher_for, warmed

ENTRY_FILE = "regctl_entry.py"
WEIGHTS_FILE = "weights.safetensors"
_SKIPPED_PARTS = {"site-packages", "dist-packages", ".venv", "venv", "__pycache__", ".git"}
_MAIN_MODULES = ("__main__", "__mp_main__")  # the script being run is not one of its imports
UPLOAD_LINES_FROM = 8 * 1024 * 1024  # smaller uploads take a moment: the "registered" line says enough

Say = Callable[[str], None]


def register_module(
    name: str,
    module: Any,
    *,
    inputs: Iterable[Mapping[str, Any]],
    dims: Mapping[str, Any] | None = None,
    method: str = "auto",
    device: str = "cpu",
    init: Mapping[str, Any] | None = None,
    validation: Mapping[str, Any] | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_url: str | None = None,
    convert: bool = True,
    wait: bool = False,
    timeout: float | None = None,
    client: RegistryClient | None = None,
    formats: Iterable[str] | None = None,
    new_version: bool = False,
    progress: bool | Say = True,
    card: str | None = None,
) -> RegisteredVersion:
    """Register `module` (an `nn.Module` instance or a function) as the next version of `name`.

    `inputs` and `dims` take the shapes of `regctl.toml`'s `[[inputs]]` and `[dims]` (a dim may be
    `(min, max)`); `init` are the keyword arguments `build()` passes to the class. The client is
    `client`, else the server `regctl login` or `REGCTL_URL` names, else this machine's registry.
    `convert=False` only records the version; `formats=["torchscript", "aoti"]` also builds a proved
    AOTInductor package (default: the registry's REGCTL_FORMATS). `card` is the version's model card:
    markdown, as a README.md in a model directory would be (at most 256 KB).
    With `wait` (and always on the embedded default, where nothing else runs jobs), returns the
    version once its conversion chain has finished; `timeout` raises WaitTimeout after that many
    seconds (a job this process was running goes back to the queue).
    When the code, weights and spec equal the newest version's, nothing is created: the answer is
    that version with `unchanged=True` (its unfinished jobs followed as above), unless `new_version`.
    `progress` prints one line per step to stderr (bundling, registering, each job change); pass
    False for silence, or a callable that takes each line.
    """
    request = RegisterRequest(
        name,
        lineage=Lineage(description=description, tags=dict(tags or {}), run_url=run_url),
        formats=formats,
        convert=convert,
        new_version=new_version,
    )
    say = _sayer(progress)
    target = module if inspect.isfunction(module) else type(module)
    source, import_name = _defining_file(target)
    root = _import_root(source, import_name)
    client = client or _default_client()
    # Where only a follower runs the jobs (direct, on the embedded default), follow them, as the CLI does.
    only_followed = (
        client.mode == "direct"
        and getattr(client, "settings", None) is not None
        and dispatcher_for(client.settings).runs_jobs_when_followed
    )
    # This process runs the conversion it follows: its child starts now, while the bundle is built.
    with warmed(client.settings if only_followed and convert else None):
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="regctl-module-") as tmp:
            bundle = Path(tmp) / "model"
            originals = _copy_local_files(root, source, bundle)
            weights = _write_weights(module, bundle) if not inspect.isfunction(module) else False
            entry = _entry_source(target, import_name, init, inspect.isfunction(module))
            (bundle / ENTRY_FILE).write_text(entry)
            spec = _spec(inputs, dims, method, device, validation, weights)
            (bundle / "regctl.toml").write_text(spec)
            if card is not None:  # checked here, so a bad card is refused before anything is uploaded
                (bundle / CARD_FILENAME).write_text(check_card(card), encoding="utf-8")
            # The commit of the code's own work tree, not of the temporary copy.
            files = [path.relative_to(root).as_posix() for path in originals]
            lineage = with_git(request.lineage, root, files)
            say(
                f"bundled {target.__qualname__}: {_count(len(originals), 'file')} from {root}"
                + (f", weights {human_size((bundle / WEIGHTS_FILE).stat().st_size)}" if weights else "")
                + f" ({time.monotonic() - started:.1f}s); registering {name} on {_where(client)}"
            )
            info = client.register(
                dataclasses.replace(request, lineage=lineage), bundle, progress=_uploading(say)
            )
        if info.unchanged:
            hint = _retry_hint(info)
            say(f"unchanged: identical to {info.ref} ({info.status}); nothing was registered{hint}")
        else:
            say(f"registered {info.ref} ({info.status}) in {time.monotonic() - started:.1f}s")
        pending = [job for job in info.jobs if not job.finished]
        if pending and (wait or (only_followed and convert)):
            _follow(client, pending[0], timeout, say)
            return RegisteredVersion.of(client.version(info.ref), unchanged=info.unchanged)
        return info


def _follow(client: RegistryClient, job: JobInfo, timeout: float | None, say: Say) -> JobInfo:
    """Follow the job chain as `client.wait` does, saying each change in the words `regctl --wait` uses."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = job
    for update in client.follow(job):
        last = update
        say(
            " ".join(
                f"{update.model}:{update.version} {update.kind} job {update.id} [{update.state}] "
                f"{update.progress}".split()
            )
        )
        if deadline is not None and time.monotonic() > deadline and not update.finished:
            raise WaitTimeout(job_id=update.id, state=update.state, timeout=timeout)
    if last.state == "succeeded":
        say(
            f"{last.model}:{last.version} is ready"
            if last.kind == "validate" or (last.result or {}).get("proved")
            else f"job {last.id} succeeded"
        )
    elif last.state == "failed":
        say(str(ConversionFailed.of_job(last)))
    else:
        error = " ".join((last.error or "no reason recorded").split())[:600]
        say(f"{last.kind} job {last.id} for {last.model}:{last.version} {last.state}: {error}")
    return last


def _uploading(say: Say) -> Progress:
    """An upload's progress as a line per tenth sent, for uploads large enough to take a while."""
    said = -1

    def report(sent: int, total: int) -> None:
        nonlocal said
        tenth = sent * 10 // total if total else 10
        if total >= UPLOAD_LINES_FROM and tenth > said:
            said = tenth
            say(f"uploading: {human_size(sent)} of {human_size(total)}")

    return report


def _retry_hint(info: RegisteredVersion) -> str:
    """How to try an identical version again whose job chain ended without making it ready."""
    if info.status == "ready" or any(not job.finished for job in info.jobs):
        return ""
    ended = [job for job in info.jobs if job.state in ("failed", "cancelled")]
    if not ended:
        return ""
    return (
        f"; its {ended[-1].kind} job {ended[-1].id} {ended[-1].state}: run it again with "
        f"client.retry({ended[-1].id}) ('regctl jobs retry {ended[-1].id}'), or pass new_version=True"
    )


def _sayer(progress: bool | Say) -> Say:
    """Where progress lines go: stderr, a caller's function, or nowhere."""
    if callable(progress):
        return progress
    if not progress:
        return lambda line: None

    def to_stderr(line: str) -> None:
        # A model's progress and error text is shown as text: hidden characters become escapes.
        print(f"regctl: {visible(line, multiline=False)}", file=sys.stderr, flush=True)

    return to_stderr


def _where(client: RegistryClient) -> str:
    """The registry a client talks to, in words."""
    url = getattr(client, "url", None)
    if url:
        return str(url)
    settings = getattr(client, "settings", None)
    home = getattr(settings, "home", None)
    return f"this machine's registry ({home})" if home is not None else "this machine's registry"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _defining_file(target: Any) -> tuple[Path, str]:
    """The .py file that defines `target` and the name it is imported by; InvalidInput when there is none."""
    what = f"{'function' if inspect.isfunction(target) else 'class'} {target.__qualname__}"
    import_name = getattr(target, "__module__", None) or ""
    if import_name == "__main__" or "<locals>" in target.__qualname__:
        where = (
            "inside a function"
            if "<locals>" in target.__qualname__
            else "in __main__ (a notebook or the script being run)"
        )
        raise CodeNotImportable(what=what, where=where)
    try:
        source = inspect.getsourcefile(target)
    except TypeError:
        source = None
    if source is None or not source.endswith(".py") or not Path(source).is_file():
        raise NoSourceFile(what=what, source=source or "none")
    return Path(source).resolve(), import_name


def _import_root(source: Path, import_name: str) -> Path:
    """The directory `import_name` is imported from: `pkg/models/net.py` as `pkg.models.net` -> `.`."""
    root = source.parent
    for _ in range(import_name.count(".")):
        root = root.parent
    if any(part in _SKIPPED_PARTS for part in source.relative_to(root).parts) or any(
        part in _SKIPPED_PARTS for part in root.parts
    ):
        raise InstalledPackageCode(source=source)
    return root


def _copy_local_files(root: Path, source: Path, bundle: Path) -> list[Path]:
    """The defining file, plus every module this process imported from under `root`, paths kept."""
    files = {source}
    for module_name, loaded in list(sys.modules.items()):
        path = _imported_from(module_name, loaded, root)
        if path is not None:
            files.add(path)
    for path in sorted(files):
        relative = path.relative_to(root)
        for parent in relative.parents:  # keep packages importable: their __init__.py comes along
            init = root / parent / "__init__.py"
            if parent != Path(".") and init.is_file():
                files.add(init)
    for path in sorted(files):
        dest = bundle / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())
    return sorted(files)


def _imported_from(module_name: str, loaded: Any, root: Path) -> Path | None:
    """The .py file under `root` that `loaded` was imported from, or None.

    Only a real import counts: a module whose `__file__` is relative names no file at all (torch
    sets `torch.classes.__file__ = "_classes.py"` and `torch.ops.__file__ = "_ops.py"`), so it is
    never resolved against the current folder; nor does the script being run (`__main__`).
    """
    path = getattr(loaded, "__file__", None)
    if module_name in _MAIN_MODULES or not isinstance(path, str) or not path.endswith(".py"):
        return None
    if not os.path.isabs(path):
        return None
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):  # a link loop or an unreadable folder: not a file we can bundle
        return None
    if not resolved.is_relative_to(root) or _SKIPPED_PARTS & set(resolved.relative_to(root).parts):
        return None
    return resolved if resolved.is_file() else None


def _write_weights(module: Any, bundle: Path) -> bool:
    """The module's state_dict as safetensors (tied tensors saved once per name); False when empty."""
    from safetensors.torch import save_file  # imports torch: only once a module's weights are written

    state = module.state_dict()
    if not state:
        return False
    seen: set[tuple[int, int]] = set()
    tensors = {}
    for key, tensor in state.items():
        tensor = tensor.detach().to("cpu")
        place = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        # safetensors refuses tensors that share memory; each name gets its own copy.
        tensors[key] = tensor.clone().contiguous() if place in seen or not tensor.is_contiguous() else tensor
        seen.add(place)
    save_file(tensors, str(bundle / WEIGHTS_FILE))
    return True


def _entry_source(target: Any, import_name: str, init: Mapping[str, Any] | None, is_function: bool) -> str:
    if is_function:
        if init:
            raise InvalidInput("init= is for a module's class; a function is registered as it is")
        body = f"    return {target.__name__}\n"
    else:
        _check_init(target, init or {})
        body = f"    return {target.__name__}(**json.loads({json.dumps(json.dumps(dict(init or {})))}))\n"
    return (
        '"""Generated by regctl.register_module: builds the registered module."""\n\n'
        "import json\n\n"
        f"from {import_name} import {target.__name__}\n\n\n"
        "def build():\n" + body
    )


def _check_init(cls: type, init: Mapping[str, Any]) -> None:
    try:
        json.dumps(dict(init), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InitNotJson(class_name=cls.__name__, reason=exc) from None
    try:
        inspect.signature(cls).bind(**init)
    except TypeError as exc:
        raise InitMismatch(class_name=cls.__name__, reason=exc) from None
    except ValueError:
        pass  # no signature to check (a C extension class): building it in the worker will say


def _spec(
    inputs: Iterable[Mapping[str, Any]],
    dims: Mapping[str, Any] | None,
    method: str,
    device: str,
    validation: Mapping[str, Any] | None,
    weights: bool,
) -> str:
    """regctl.toml for the generated bundle (checked like any other when it is registered)."""
    lines = [
        f"entrypoint = {_toml(ENTRY_FILE + ':build')}",
        f"method = {_toml(method)}",
        f"device = {_toml(device)}",
    ]
    if weights:
        lines.append(f"weights = {_toml(WEIGHTS_FILE)}")
    for item in inputs:
        lines += ["", "[[inputs]]", *(f"{k} = {_toml(v)}" for k, v in dict(item).items())]
    if dims:
        lines += ["", "[dims]"]
        for dim, value in dims.items():
            if isinstance(value, tuple | list) and len(value) == 2:
                value = {"min": value[0], "max": value[1]}
            if not isinstance(value, Mapping):
                raise BadDimRange(dim=dim)
            inner = ", ".join(f"{k} = {_toml(v)}" for k, v in value.items())
            lines.append(f"{_key(dim)} = {{ {inner} }}")
    if validation:
        lines += ["", "[validation]", *(f"{k} = {_toml(v)}" for k, v in validation.items())]
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() and name.isascii() else _toml(name)


def _toml(value: Any) -> str:
    """A TOML value for the few types a spec holds (JSON's string escapes are TOML's too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotFinite(value=value)
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise NotTomlValue(value=value, kind=type(value).__name__)


def _default_client() -> RegistryClient:
    """The server `regctl login` or REGCTL_URL names, else this machine's registry."""
    login = find_login(url=None)
    if login is not None:
        from regctl.remote import Client  # only the client chosen is loaded: httpx here

        return Client(login.url, login.token)
    from regctl.local import LocalClient  # and the database layer here

    return LocalClient()
