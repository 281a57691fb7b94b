"""Files regctl refuses: model directories and their bundles, uploads, files to store or to write."""

from __future__ import annotations

from regctl.registry.errors import InvalidInput, InvalidSpec, TooLarge

_UPLOAD_FIX = "upload what 'regctl register' builds"


class PathEscapes(InvalidSpec):
    """Raised when the spec names a file by a path that leaves the model directory."""

    template = "{path}: the path escapes the model directory {directory}; keep files inside it"


class NamedPathNotFile(InvalidSpec):
    """Raised when the spec names something that is not a regular file (a directory, say)."""

    template = "{path} is not a regular file; the spec must name a file in {directory}"


class NamedFileMissing(InvalidSpec):
    """Raised when a file the spec names is not in the model directory."""

    template = (
        "{path}: the file is missing; the spec names it, so it must be in {directory}: copy it in or "
        "change regctl.toml"
    )


class BrokenSymlink(InvalidSpec):
    """Raised when a code file in the model directory is a link to nothing."""

    template = "{path} is a broken symlink; remove it or point it at a file in {root}"


class SpecialFile(InvalidSpec):
    """Raised when a code file in the model directory is a pipe, a socket or a device."""

    template = "{path} is not a regular file (a named pipe, socket or device); remove it from {root}"


class SymlinkLoop(InvalidSpec):
    """Raised when a link in the model directory leads back to itself."""

    template = "{path} is a symlink loop; replace the link with the file it should name"


class SymlinkOutside(InvalidSpec):
    """Raised when a link in the model directory points outside it."""

    template = (
        "{path} is a symlink to {real}, outside the model directory {root}; "
        "copy the file into the directory instead of linking to it"
    )


class EntrypointLeftOut(InvalidSpec):
    """Raised when the entrypoint's file lies where the bundle does not look (a hidden folder, a venv)."""

    template = (
        "{path}: the entrypoint {entrypoint} lives where the bundle does not look (hidden files and "
        "folders, __pycache__ and virtualenv folders are left out); move it"
    )


class WeightsTooBig(InvalidSpec):
    """Raised when the weights file is larger than REGCTL_MAX_WEIGHTS_BYTES."""

    template = (
        "weights file {path} holds {size}, more than the cap of {cap} (REGCTL_MAX_WEIGHTS_BYTES); "
        "raise REGCTL_MAX_WEIGHTS_BYTES if the model really is that big"
    )


class TooManyFiles(InvalidSpec):
    """Raised when a model directory holds more files to bundle than a bundle may."""

    template = (
        "model directory {directory} holds {count} files to bundle, more than {limit}; "
        "keep data out of the directory (only .py files and the spec's files are bundled)"
    )


class BundleTooBig(InvalidSpec):
    """Raised when a model directory's code and data are larger than REGCTL_MAX_BUNDLE_BYTES."""

    template = (
        "model directory {directory} holds {size} of code and data, more than the cap of {cap} "
        "(REGCTL_MAX_BUNDLE_BYTES); the largest file is {largest} ({largest_size}): remove what the "
        "model does not need or raise REGCTL_MAX_BUNDLE_BYTES"
    )


class BadUpload(InvalidInput):
    """Raised when an uploaded bundle is not the tar 'regctl register' builds."""

    template = "the uploaded bundle {problem}; " + _UPLOAD_FIX


class UploadTooBig(InvalidInput):
    """Raised when an uploaded bundle unpacks to more than the registry's caps allow."""

    template = (
        "the uploaded bundle unpacks to more than {limit} bytes (REGCTL_MAX_BUNDLE_BYTES + "
        "REGCTL_MAX_WEIGHTS_BYTES); keep large data out of the model directory"
    )


class UploadTooLarge(TooLarge):
    """Raised when a request body is larger than the registry accepts, before it is read."""

    template = (
        "the upload is larger than this registry accepts ({bundle_bytes} bytes of code and data, "
        "REGCTL_MAX_BUNDLE_BYTES, plus {weights_bytes} of weights, REGCTL_MAX_WEIGHTS_BYTES); "
        "keep large data out of the model directory"
    )


class CardNotAFile(InvalidSpec):
    """Raised when the model card's path is not a regular file."""

    template = "{path} is not a regular file; the model card must be a markdown file: replace it with one"


class CardNotText(InvalidSpec):
    """Raised when a model card given from Python is not text."""

    template = "{where} must be markdown text, not {kind}; pass a str or UTF-8 bytes"


class CardTooLarge(InvalidSpec):
    """Raised when a model card is larger than the registry keeps."""

    template = (
        "{where} is larger than {limit_kb} KB, the cap on a model card; shorten it "
        "(link to longer documents instead)"
    )


class CardNotUtf8(InvalidSpec):
    """Raised when a model card's bytes are not UTF-8."""

    template = "{where} is not UTF-8 text (byte {position} is not); save it as UTF-8"


class CannotStore(InvalidInput):
    """Raised when a file cannot be opened to be stored."""

    template = "{path} cannot be stored: {reason}; check that it exists and can be read"


class NotOwnFile(InvalidInput):
    """Raised when a file to store is not a plain file with a single link (a device, a hard link)."""

    template = "{path} is not a plain file of its own; it cannot be stored: copy it to a file of its own"


class ChangedWhileStored(InvalidInput):
    """Raised when a file changes or is replaced while the store reads it."""

    template = "{path} {change} while it was being stored; try again once nothing writes to it"


class BadDigest(InvalidInput):
    """Raised when a blob is named by something that is not a sha256 hex digest."""

    template = "{sha256!r} is not a sha256 digest; expected 64 lowercase hex characters"


class CannotWrite(InvalidInput):
    """Raised when a destination cannot be written (permissions, a read-only filesystem)."""

    template = "cannot write to {path}: {reason}; pick a place you can write to"


class ParentNotDirectory(InvalidInput):
    """Raised when a destination's parent is a file."""

    template = "{parent} is not a directory; name a file inside a directory"


class MissingDirectory(InvalidInput):
    """Raised when a destination's directory does not exist and may not be created."""

    template = "directory {parent} does not exist; create it, or pass --create-dirs"


class CannotCreateDirectory(InvalidInput):
    """Raised when a destination's directory cannot be created."""

    template = "cannot create directory {parent}: {reason}; create it yourself or pick another place"


class DestinationIsDirectory(InvalidInput):
    """Raised when a destination names a directory rather than a file."""

    template = "{path} is a directory; name the file to write, e.g. {example}"


class DestinationIsLink(InvalidInput):
    """Raised when a destination is a symbolic link (writing would follow it somewhere else)."""

    template = "{path} is a symbolic link; name the file it points at ({real}) or remove the link"


class DestinationNotRegular(InvalidInput):
    """Raised when a destination is a pipe, a socket or a device."""

    template = "{path} is {what}; fetch to a regular file, or use '-o -' to write to stdout"


class ArchiveNotFile(InvalidInput):
    """Raised when `regctl import` is given something that is not a file."""

    template = "{archive} is not a file; give the archive 'regctl export -o' wrote"


class BadServerUrl(InvalidInput):
    """Raised when `regctl login` is given something that is not an http(s) URL."""

    template = "server URL {url!r} is not valid; use e.g. https://regctl.example.com"


class LoginUnreadable(InvalidInput):
    """Raised when the saved login cannot be read."""

    template = "{path} cannot be read ({reason}); run 'regctl login URL' again"


class LoginWithoutUrl(InvalidInput):
    """Raised when the saved login names no server."""

    template = "{path} has no server URL; run 'regctl login URL' again"


class NotAnArchive(InvalidInput):
    """Raised when `regctl import` is given a file that is not an archive `regctl export` wrote."""

    template = "{source} is not a regctl export archive ({why}); make one with 'regctl export'"


class ArchiveFormatTooNew(InvalidInput):
    """Raised when an export archive's format version is not the one this regctl reads."""

    template = (
        "{where} has format version {found!r}; this regctl reads {reads}: use the regctl release that "
        "wrote the archive, or a newer one"
    )


class ArchiveDamaged(InvalidInput):
    """Raised when an export archive or its manifest holds what no export writes (damaged or altered)."""

    template = "{where} {problem}; the archive was damaged or altered: export it again with 'regctl export'"


class ModelDirMissing(InvalidSpec):
    """Raised when the model directory given does not exist or is a file."""

    template = "model directory {directory} {what}; pass the directory that holds regctl.toml"


class SpecFileMissing(InvalidSpec):
    """Raised when the model directory holds no regctl.toml."""

    template = "model directory {directory} has no regctl.toml; create one with at least {minimal}"


class SpecNotToml(InvalidSpec):
    """Raised when regctl.toml is not valid TOML."""

    template = "{path}: not valid TOML: {reason}; check the syntax there"


class SpecTooBig(InvalidSpec):
    """Raised when regctl.toml is larger than any spec needs to be (hostile or generated by mistake)."""

    template = "{path}: larger than {limit} bytes; a spec names files and shapes, keep data in files it names"


class SpecNestsTooDeeply(InvalidSpec):
    """Raised when a spec's tables or arrays nest deeper than Python can read (hostile input)."""

    template = "{source}: tables or arrays nest too deeply to read; keep the spec to a few levels"


class SpecNotUtf8(InvalidSpec):
    """Raised when regctl.toml is not UTF-8 text."""

    template = "{path}: not UTF-8 text ({reason} at byte {position}); save it as UTF-8"


# Model code that `register_module` cannot bundle from where it is defined.


class CodeNotImportable(InvalidInput):
    """Raised when a class or function to register is defined where a worker cannot import it from."""

    template = (
        "{what} is defined {where}, which the worker cannot import; move it into a .py file beside your "
        "script (model.py), import it from there, and register again (regctl never pickles code)"
    )


class NoSourceFile(InvalidInput):
    """Raised when a class or function to register has no .py file to bundle."""

    template = "{what} has no source file regctl can bundle ({source}); move it into a .py file and import it"


class InstalledPackageCode(InvalidInput):
    """Raised when a class or function to register belongs to an installed package, not to the project."""

    template = (
        "{source} belongs to an installed package, not to your project; use a class or function "
        "defined in your own code"
    )
