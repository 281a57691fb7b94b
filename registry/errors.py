"""The exceptions regctl raises, each with a message a user can act on.

Every error carries the CLI exit code that DESIGN.md documents:
1 a job or validation failed, 2 bad usage or input, 3 not found, 4 service unreachable.
"""

from __future__ import annotations


class RegctlError(Exception):
    """Raised for any failure regctl can explain to its user in one line."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(RegctlError):
    """Raised when an argument given by the user is malformed (a name, a REF, an option)."""

    exit_code = 2


class InvalidSpec(InvalidInput):
    """Raised when a model directory or its regctl.toml is wrong."""


class AlreadyExists(InvalidInput):
    """Raised when creating something whose name is already taken."""


class InvalidTransition(InvalidInput):
    """Raised when a job or version is asked to move to a state it cannot reach from its current one."""


class NotFound(RegctlError):
    """Raised when a model, version, alias, job or artifact does not exist."""

    exit_code = 3


class ConversionFailed(RegctlError):
    """Raised when a conversion or validation job ends in failure."""

    exit_code = 1


class CorruptedArtifact(RegctlError):
    """Raised when a stored blob no longer matches its sha256 and must not be handed out."""

    exit_code = 1


class ServiceUnavailable(RegctlError):
    """Raised when the database, the broker or the artifact store cannot be reached."""

    exit_code = 4
