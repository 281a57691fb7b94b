"""Values regctl refuses: settings, tags and lineage, search, webhooks, text, job and version moves."""

from __future__ import annotations

from regctl.registry.errors import InvalidInput, InvalidTransition

WEBHOOK_URL_HINT = (
    "use an http:// or https:// URL without a user or password, e.g. https://hooks.example.com/regctl"
)


class BadSetting(InvalidInput):
    """Raised when a REGCTL_* variable does not hold the kind of value it needs."""

    template = "{key}={raw!r} is not {wanted}; set it to e.g. {default}"


class BadFlag(InvalidInput):
    """Raised when an on/off REGCTL_* variable holds neither."""

    template = "{key}={raw!r} is not on or off; set it to 1, true, yes or on; 0, false, no or off"


class BadSandboxMode(InvalidInput):
    """Raised when REGCTL_SANDBOX names no sandbox mode."""

    template = (
        "REGCTL_SANDBOX={raw!r} is not a sandbox mode; set it to auto (confine model code as far "
        "as this machine allows), strict (refuse to run without the full sandbox) or off"
    )


class WorkDirMissing(InvalidInput):
    """Raised when REGCTL_WORK_DIR names no directory."""

    template = (
        "REGCTL_WORK_DIR={raw!r} is not a directory; create it, or unset it to use the system's "
        "temp directory"
    )


class HomeIsFile(InvalidInput):
    """Raised when REGCTL_HOME names a file."""

    template = (
        "REGCTL_HOME={home!r} is a file, not a directory; point it at a directory "
        "(it is created when missing)"
    )


class HeartbeatTooSlow(InvalidInput):
    """Raised when jobs would beat less often than the time after which they count as dead."""

    template = (
        "REGCTL_HEARTBEAT_INTERVAL ({interval:g} s) must be below REGCTL_HEARTBEAT_TIMEOUT ({timeout:g} s), "
        "or live jobs look dead; lower the interval or raise the timeout"
    )


class TooManyTags(InvalidInput):
    """Raised when a version would carry more tags than the registry keeps."""

    template = "{whose} would carry {count} tags; keep to at most {limit}"


class BadTagPair(InvalidInput):
    """Raised when a --tag is not KEY=VALUE."""

    template = "tag {pair!r} is not KEY=VALUE; write it as --tag team=vision"


class BadTagKey(InvalidInput):
    """Raised when a tag's key has characters or a length regctl does not allow."""

    template = "tag key {key!r} is not valid; use 1 to {limit} letters, digits, '_', '.', '-' or '/'"


class BadTagValue(InvalidInput):
    """Raised when a tag's value is not short printable text."""

    template = (
        "tag {key}'s value is not printable text of at most {limit} characters on one line{where}; "
        "write it without control, bidi or zero-width characters"
    )


class BadGitCommit(InvalidInput):
    """Raised when a git commit is not a full hex object name."""

    template = (
        "git commit {commit!r} is not a 40- or 64-digit hex object name; give the full hash "
        "(git rev-parse HEAD)"
    )


class BadRunUrl(InvalidInput):
    """Raised when --run-url is not a short http(s) URL."""

    template = (
        "--run-url {url!r} is not an http(s) URL of at most {limit} characters; "
        "give the address of the training run (https://wandb.ai/..., an MLflow run page)"
    )


class TextTooLong(InvalidInput):
    """Raised when a piece of text (a description, a search) is longer than regctl takes."""

    template = "{what} has {length} characters; {fix}"


class HiddenCharacter(InvalidInput):
    """Raised when given text holds a character that would not show (a control, bidi or zero-width one)."""

    template = (
        "{what} has a hidden character ({escaped} at position {position}); it may not contain "
        "control, bidi or zero-width characters{lines}: remove it and try again"
    )


class BadLimit(InvalidInput):
    """Raised when a --limit is not a whole number in range."""

    template = "limit {limit!r} is not a whole number from 1 to {most}; give one in that range"


class BadWebhookUrl(InvalidInput):
    """Raised when a webhook URL is not a plain http(s) URL of a host."""

    template = "{problem}; " + WEBHOOK_URL_HINT


class WebhookUrlTooLong(InvalidInput):
    """Raised when a webhook URL is longer than regctl stores."""

    template = "the webhook URL is {length} characters long; the limit is {limit}, so use a shorter one"


class BadWebhookEvents(InvalidInput):
    """Raised when a webhook names no event or an unknown one."""

    template = "{problem}; choose from {events} (comma-separated)"


class UnknownQueues(InvalidInput):
    """Raised when a worker is asked to serve queues that do not exist."""

    template = "--queues {text!r} names unknown queues {unknown}; use cpu, gpu, webhooks or a mix"


class NoCudaForGpuQueue(InvalidInput):
    """Raised when a worker on a machine without CUDA is asked to serve the gpu queue."""

    template = (
        "this machine has no CUDA device, so it cannot serve the gpu queue; run the worker on a GPU "
        "machine, or set REGCTL_GPU_ON_CPU=1 to run gpu jobs on the CPU (tests, CPU-only development)"
    )


class SandboxUnavailable(InvalidInput):
    """Raised when REGCTL_SANDBOX=strict and this machine lacks a protection the sandbox needs."""

    template = (
        "REGCTL_SANDBOX=strict, but this machine cannot confine model code ({missing}); "
        "see README, Trust model, or set REGCTL_SANDBOX=auto"
    )


class NothingToValidate(InvalidTransition):
    """Raised when a validate job is asked for a version that has no TorchScript artifact."""

    template = "{ref} has no TorchScript artifact to validate; submit a convert job first"


class JobFinished(InvalidTransition):
    """Raised when cancelling a job that already finished."""

    template = (
        "job {job_id} is already {state}; nothing to cancel ('regctl jobs show {job_id}' says how it ended)"
    )


class JobNotRetryable(InvalidTransition):
    """Raised when retrying a job that neither failed nor was cancelled."""

    template = (
        "job {job_id} is {state}; only failed or cancelled jobs can be retried (submit a new job with "
        "'regctl submit')"
    )


class JobNotOwned(InvalidTransition):
    """Raised when a worker records an outcome for a job another worker owns now."""

    template = (
        "job {job_id} is {state} and owned by {owner}, not {worker}; its outcome is dropped "
        "('regctl jobs show {job_id}' says what happened to it)"
    )


class VersionBusy(InvalidTransition):
    """Raised when deleting a version with a job queued or running."""

    template = (
        "{ref} has a job queued or running (job {job_id}); cancel it first ('regctl jobs cancel {job_id}'), "
        "then delete"
    )


class AliasesPointAt(InvalidTransition):
    """Raised when deleting a version that aliases still point at, without --force."""

    template = "{aliases} point{s} at {ref}; move {them} first, or delete with --force to remove {them} too"

    @classmethod
    def of(cls, aliases: list[str], ref: str) -> AliasesPointAt:
        """The error for `aliases` (NAME@ALIAS) pointing at `ref`."""
        one = len(aliases) == 1
        return cls(aliases=aliases, ref=ref, s="s" if one else "", them="it" if one else "them")


class DeliveryBeingSent(InvalidTransition):
    """Raised when redelivering a webhook delivery that a sender holds right now."""

    template = "delivery {delivery_id} is being sent right now; look again in a minute"


class DeliveryOfRemovedWebhook(InvalidTransition):
    """Raised when redelivering a delivery whose webhook was removed."""

    template = (
        "delivery {delivery_id} belongs to webhook {webhook_id}, which was removed; nothing can send it "
        "('regctl webhooks list' shows the webhooks that remain)"
    )


# Versions a Triton repository cannot take as they are (regctl export-triton).


class NotReadyToDeploy(InvalidInput):
    """Raised when deploying a version that is not ready (still converting, or failed)."""

    template = (
        "{ref} is {status}, not ready; only a validated version can be deployed "
        "('regctl versions show' says why; 'regctl jobs list' shows running jobs)"
    )


class ScalarInputNotServable(InvalidInput):
    """Raised when a version with a Python scalar input is exported to Triton, which passes tensors only."""

    template = (
        "{ref} cannot be served by Triton: input {name!r} is a Python {dtype} and Triton's PyTorch backend "
        "passes only tensors to forward(); make it a tensor input (a shape such as [1]) in regctl.toml "
        "and register a new version"
    )


class OutputNotServable(InvalidInput):
    """Raised when a version's output is not a tensor or a flat tuple of tensors of fixed rank."""

    template = (
        "{ref} cannot be served by Triton: {path} {problem}; Triton's PyTorch backend serves a tensor "
        "or a tuple of tensors{fix}"
    )


class NoOutputSignature(InvalidInput):
    """Raised when a version's conversion report predates output signatures, which a Triton config needs."""

    template = (
        "the conversion report of {ref} does not describe its outputs (it predates output signatures); "
        "convert it again with 'regctl submit {ref} --job convert' and export again"
    )


class BatchDimMissing(InvalidInput):
    """Raised when --max-batch-size is given for a spec that marks no batch dim."""

    template = (
        "--max-batch-size {wanted}: the spec of {ref} marks no dim as the batch dim; "
        "set batch = true on that dim in [dims], or drop --max-batch-size"
    )


class NotBatchable(InvalidInput):
    """Raised when --max-batch-size is given for a version whose tensors do not lead with the batch dim."""

    template = (
        "--max-batch-size {wanted}: {reason}, so {ref} cannot be batched by Triton; "
        "drop --max-batch-size to export it unbatched"
    )


class BatchTooLarge(InvalidInput):
    """Raised when --max-batch-size is above the largest batch the version was validated on."""

    template = (
        "--max-batch-size {wanted} is above the largest batch {ref} was validated on "
        "({dim} max = {max}); raise that max in regctl.toml and register again"
    )


class TritonHasNoType(InvalidInput):
    """Raised when an input or output has a dtype Triton has no data type for (complex, float8)."""

    template = (
        "{what} has dtype {dtype}, for which Triton has no data type; "
        "change it to a real or integer dtype to serve the model with Triton"
    )


class TritonEntryDiffers(InvalidInput):
    """Raised when a Triton entry's config serves other inputs or outputs than the version exported."""

    template = (
        "{path} declares other inputs, outputs or batching than {ref} needs; the versions already "
        "there would break: export to another --repo, or remove that entry first"
    )


class BadFormats(InvalidInput):
    """Raised when --format or REGCTL_FORMATS names an unknown format or one twice, or no torchscript."""

    template = "{option}{text!r} {problem}; use {option}aoti or {option}torchscript,aoti"


class NamesGivenAsString(InvalidInput):
    """Raised when a request's list of names (formats) is one string, which would read as its letters."""

    template = "{what} is a list of names, not the string {value!r}; pass e.g. ('torchscript', 'aoti')"


# What `register_module` is given from Python that a spec or a constructor cannot take.


class InitNotJson(InvalidInput):
    """Raised when `init=` holds values that cannot be written as JSON."""

    template = (
        "init for {class_name} is not JSON-safe keyword arguments ({reason}); "
        "pass numbers, text, lists and tables"
    )


class InitMismatch(InvalidInput):
    """Raised when `init=` does not fit the signature of the class it builds."""

    template = (
        "{class_name}(**init) does not match its constructor ({reason}); "
        "pass the arguments it needs as init={{...}}"
    )


class BadDimRange(InvalidInput):
    """Raised when a dim given from Python is neither (min, max) nor a table."""

    template = "dims[{dim!r}] is not (min, max) or a table; give e.g. (1, 8) or {{'min': 1, 'max': 8}}"


class NotFinite(InvalidInput):
    """Raised when a number for the spec is inf or nan."""

    template = "{value} is not a finite number; give a finite one (a spec holds no inf or nan)"


class NotTomlValue(InvalidInput):
    """Raised when a value for the spec is of a type regctl.toml cannot hold."""

    template = "{value!r} ({kind}) cannot go in regctl.toml; use numbers, text or lists"


class PromotionRefused(InvalidInput):
    """Raised when an alias may not move to a version (not ready, unsigned, an unlisted torch)."""

    http_status = 409
    code = "promotion_refused"
    template = "{target} cannot move to version {version}: {reason}; {hint}"
