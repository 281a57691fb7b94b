"""The files a spec names: relative paths that stay inside the model directory and exist there.

Each check raises `fail(...)` (registry/spec/messages.py); without a directory only the form of a
path is checked (a stored spec, an import manifest).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from regctl.registry.spec.checked import MAX_RECORDED_TENSORS
from regctl.registry.spec.messages import fail, is_identifier

_INSIDE = "a path relative to the model directory, inside it"
ENTRYPOINT_EXPECTED = '"file.py:callable" or "package.module:callable" inside the model directory'


def entrypoint_files(entrypoint: str) -> list[str]:
    """The files an entrypoint may live in, relative to the model directory, preferred first."""
    module = entrypoint.partition(":")[0]
    if module.endswith(".py"):
        return [str(PurePosixPath(module.replace("\\", "/")))]
    return [module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"]


def relative(rel: str) -> str:
    """`rel` as a normalised POSIX path; it must be relative and must not climb out with `..`."""
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or rel[1:2] == ":" or str(pure) == ".":
        raise fail("is not a relative path to a file", _INSIDE)
    if ".." in pure.parts:
        raise fail("escapes the model directory", f"{_INSIDE}; copy the file in")
    return str(pure)


def find(directory: Path | None, candidates: list[str], expected: str) -> str:
    """The first candidate that is a file inside `directory` (the first one if there is no directory)."""
    if directory is None:
        return candidates[0]
    root = directory.resolve()
    for rel in candidates:
        try:
            real = (directory / rel).resolve()
        except (RuntimeError, OSError):  # a symlink loop
            raise fail("is a symlink loop", f"{expected}; replace the link with the file") from None
        if not real.is_relative_to(root):
            problem = f"resolves to {real}, outside the model directory {root}"
            raise fail(problem, f"{expected}; copy the file in instead of linking to it")
        if real.is_file():
            return rel
        if real.exists() and not real.is_dir():
            raise fail("is not a regular file (a pipe, socket or device)", expected)
    looked = " or ".join(str(directory / rel) for rel in candidates)
    raise fail(f"names a file that does not exist: looked for {looked}", expected)


def data_file(value: str | None, suffixes: tuple[str, ...], directory: Path | None) -> str | None:
    """A data file the spec names (weights, recorded inputs), normalised, checked to exist."""
    if value is None:
        return None
    expected = f"an existing {' or '.join(suffixes)} file inside the model directory"
    if not value.endswith(suffixes):
        raise fail("has the wrong file type", expected)
    return find(directory, [relative(value)], expected)


def entrypoint(value: str, directory: Path | None) -> str:
    """`file.py:callable` or `package.module:callable`, whose file exists in `directory`."""
    module, _, attr = value.partition(":")
    if value.count(":") != 1 or not module or not attr:
        raise fail("is not of the form module:callable", ENTRYPOINT_EXPECTED)
    if not all(is_identifier(part) for part in attr.split(".")):
        raise fail(f"names a callable {attr!r} that is not an identifier", ENTRYPOINT_EXPECTED)
    if module.endswith(".py"):
        candidates = [relative(module)]
    elif all(is_identifier(part) for part in module.split(".")):
        candidates = entrypoint_files(value)
    else:
        raise fail("is neither a .py file nor a dotted module name", ENTRYPOINT_EXPECTED)
    find(directory, candidates, ENTRYPOINT_EXPECTED)
    return value


def recorded_inputs(relative_path: str, directory: Path | None) -> None:
    """Refuse a recorded-inputs file whose header is unreadable or names over MAX_RECORDED_TENSORS tensors.

    Only the header is read (safetensors maps the file): a hostile file costs its header's size.
    """
    if directory is None:
        return
    from safetensors import safe_open  # the Rust reader checks the header's size and layout

    expected = f"a .safetensors file of at most {MAX_RECORDED_TENSORS} tensors (one per input and sample)"
    try:
        with safe_open(str(directory / relative_path), framework="numpy") as recorded:
            count = len(recorded.keys())
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise fail(f"is not a readable .safetensors file ({type(exc).__name__}: {exc})", expected) from None
    if count > MAX_RECORDED_TENSORS:
        raise fail(f"holds {count} tensors, more than {MAX_RECORDED_TENSORS}", expected)
