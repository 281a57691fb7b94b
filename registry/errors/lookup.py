"""Names and references that do not parse, and the things they name that do not exist."""

from __future__ import annotations

from regctl.registry.errors import AlreadyExists, InvalidInput, NotFound

REF_USAGE = "expected NAME, NAME:VERSION (e.g. resnet:3) or NAME@ALIAS (e.g. resnet@prod)"


class NameTooLike(AlreadyExists):
    """Raised when a new model's name differs from an existing model's only by case or look-alikes."""

    template = (
        "model name {name!r} reads like the existing model {existing!r} (names must differ by more "
        "than case, 0/o and 1/i/l); register under {existing!r}, or choose a name that reads differently"
    )


class InvalidModelName(InvalidInput):
    """Raised when a model name has characters or a length regctl does not allow."""

    template = (
        "model name {name!r} is not valid; use letters, digits, '.', '_' and '-' "
        "(no spaces or slashes), starting with a letter or digit, at most 128 characters"
    )


class InvalidAliasName(InvalidInput):
    """Raised when an alias name has characters or a length regctl does not allow."""

    template = (
        "alias {alias!r} is not valid; use a letter followed by letters, digits, '_' or '-' "
        "(at most 64 characters), e.g. prod or staging"
    )


class UnparsedRef(InvalidInput):
    """Raised when a REF is none of NAME, NAME:VERSION and NAME@ALIAS."""

    template = "reference {text!r} does not parse; " + REF_USAGE


class BadRefVersion(InvalidInput):
    """Raised when the VERSION of NAME:VERSION is not a positive integer."""

    template = "reference {text!r} has version {number!r}, not a positive integer; " + REF_USAGE


class RefWithoutAlias(InvalidInput):
    """Raised when a command needs NAME@ALIAS and was given another kind of REF."""

    template = "{text!r} names no alias; expected NAME@ALIAS, e.g. {name}@prod"


class RefWithoutVersion(InvalidInput):
    """Raised when a command needs NAME:VERSION and was given another kind of REF."""

    template = "{text!r} names no version; expected NAME:VERSION, e.g. {name}:1"


class NotAChoice(InvalidInput):
    """Raised when a value must be one of a fixed set (a job kind, a state, a role, a status)."""

    template = "{what} {value!r} is not one of {choices}; use one of those"


class UnknownModel(NotFound):
    """Raised when no model has the name given."""

    template = "model {name!r} not found; 'regctl models list' shows the registered models"


class UnknownVersion(NotFound):
    """Raised when NAME:VERSION names a version the model does not have."""

    template = "version {ref} not found; {name} has {known} ('regctl versions list {name}')"

    @classmethod
    def of(cls, ref: object, name: str, last_version: int) -> UnknownVersion:
        """The error for `ref` of a model whose newest version is `last_version` (0: none)."""
        return cls(
            ref=ref, name=name, known=f"versions 1 to {last_version}" if last_version else "no versions"
        )


class UnknownAlias(NotFound):
    """Raised when NAME@ALIAS names an alias that is not set."""

    template = "alias {ref} not found; set it with 'regctl alias set {ref} VERSION'"


class AliasNotSet(NotFound):
    """Raised when removing an alias that is not set."""

    template = "alias {name}@{alias} is not set; 'regctl models show {name}' lists its aliases"


class NoReadyVersion(NotFound):
    """Raised when a bare NAME is resolved and none of the model's versions is ready."""

    template = (
        "model {name!r} has no ready version yet; name one with {name}:VERSION "
        "or wait for its conversion ('regctl jobs list')"
    )


class UnknownJob(NotFound):
    """Raised when no job has the id given."""

    template = "job {job_id} not found; 'regctl jobs list' shows the jobs"


class UnknownToken(NotFound):
    """Raised when no token has the name given."""

    template = "token {name!r} not found; 'regctl tokens list' shows the tokens"


class UnknownWebhook(NotFound):
    """Raised when no webhook has the id given."""

    template = "webhook {webhook_id} not found; 'regctl webhooks list' shows the webhooks"


class UnknownDelivery(NotFound):
    """Raised when no webhook delivery has the id given."""

    template = "delivery {delivery_id} not found; 'regctl webhooks deliveries WEBHOOK_ID' lists a webhook's"


class MissingArtifact(NotFound):
    """Raised when a version has no artifact of the kind asked for."""

    template = "{ref} has no {kind} artifact; {hint}"
