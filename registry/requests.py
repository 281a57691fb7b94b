"""What a caller asks for, as one frozen value: built once at the front door, passed on whole.

A front door (a click command, an HTTP handler, a Python call) turns what it received into one of
these requests; the client, the service and the registry hand it on unchanged, so each option of an
operation is named here and nowhere else. Building one checks it: a request that exists is
well-formed, and no layer below checks its name or its lineage again. What a request cannot know
(whether the model exists, whether the caller may act on it) is for the service to decide.

Imports nothing beyond the registry's pure modules (no SQLAlchemy), so a client builds them cheaply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from regctl.registry.errors import InvalidInput
from regctl.registry.errors.inputs import NamesGivenAsString
from regctl.registry.lineage import Lineage
from regctl.registry.refs import Ref, check_model_name, parse_version_ref


@dataclass(frozen=True, kw_only=True)
class RegisterRequest:
    """Register a model directory as the next version of `name` (the directory travels beside it).

    `method` and `device` override the spec's (the device picks the queue); `formats` overrides the
    spec's `formats`, e.g. ("torchscript", "aoti"). `description` is the version's (the model keeps
    the newest one too); it is the lineage's description, which may be given either way. Unless
    `convert` is False a conversion starts. When the code, weights and spec equal the newest
    version's nothing is created, unless `new_version` asks for a new version anyway.
    """

    name: str = field(kw_only=False)
    method: str | None = None
    device: str | None = None
    description: str | None = None
    lineage: Lineage = field(default_factory=Lineage)
    formats: tuple[str, ...] | None = None
    convert: bool = True
    new_version: bool = False

    def __post_init__(self) -> None:
        check_model_name(self.name)
        lineage = self.lineage
        if self.description is not None:
            if lineage.description not in (None, self.description):
                raise InvalidInput("the description is given twice, differently; give it once")
            lineage = dataclasses.replace(lineage, description=self.description)
        lineage = lineage.checked()
        object.__setattr__(self, "lineage", lineage)
        object.__setattr__(self, "description", lineage.description)
        if self.formats is not None:
            object.__setattr__(self, "formats", _names(self.formats, "formats"))


@dataclass(frozen=True, kw_only=True)
class SubmitRequest:
    """Queue a job of `kind` (convert or validate) for the exact version `ref`, NAME:VERSION.

    `method` and `device` override the version's spec for this job. `ref` is kept in its canonical
    form; `version` is the parsed reference.
    """

    ref: str = field(kw_only=False)
    kind: str = field(kw_only=False)
    method: str | None = None
    device: str | None = None
    version: Ref = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        version = parse_version_ref(self.ref)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "ref", str(version))


def _names(value: Iterable[str], what: str) -> tuple[str, ...]:
    """A tuple of names; a lone string is refused (it would read as its letters)."""
    if isinstance(value, str):
        raise NamesGivenAsString(what=what, value=value)
    return tuple(value)
