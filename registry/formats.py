"""The formats a conversion produces: one rule for the spec's `formats`, --format and REGCTL_FORMATS.

Apart from registry/spec/ so that Settings reads REGCTL_FORMATS without the spec's pydantic models.
"""

from __future__ import annotations

from collections.abc import Callable

from regctl.registry.errors import InvalidInput
from regctl.registry.errors.inputs import BadFormats

# What a conversion produces: TorchScript always (it decides whether the version is ready), and on
# request the torch.export program (`exported`, a .pt2) and the formats built from that program, each
# in a sandboxed stage of its own and proved in the runtime that deploys it: an AOTInductor package
# (worker/judge/aoti.py), an ExecuTorch program and an ONNX model (worker/judge/format_role.py).
# A format nobody asked for costs nothing: no export, no judging.
FORMATS = ("torchscript", "exported", "aoti", "executorch", "onnx")
PROGRAM_FORMATS = ("exported", "aoti", "executorch", "onnx")  # the formats that need the exported program
BUILT_FORMATS = ("aoti", "executorch", "onnx")  # built from the proved program by a stage of their own

# The optional installs a format needs beyond torch: the modules its stage imports, and the extra
# that brings them. A worker without them records why the format was not built and stays ready.
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "executorch": (("executorch",), "regctl[executorch]"),
    "onnx": (("onnxruntime", "onnxscript", "onnx"), "regctl[onnx]"),
}


def check_formats(formats: tuple[str, ...], error: Callable[[str], Exception]) -> tuple[str, ...]:
    """Formats in their canonical order; `error(problem)` builds the exception for a bad list."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise error(f"names {unknown[0]!r}, which is not one of {', '.join(FORMATS)}")
    if "torchscript" not in formats:
        raise error("leaves out torchscript, which every conversion produces and proves first")
    if len(set(formats)) != len(formats):
        raise error("names a format twice")
    return tuple(f for f in FORMATS if f in formats)


def parse_formats(text: str, option: str = "--format") -> tuple[str, ...]:
    """`--format aoti` or `--format exported,aoti`: TorchScript is always included."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    wanted = tuple(dict.fromkeys(["torchscript", *names]))

    sep = "" if option.endswith("=") else " "  # an environment variable reads REGCTL_FORMATS=aoti

    def error(problem: str) -> InvalidInput:
        return BadFormats(option=f"{option}{sep}", text=text, problem=problem)

    return check_formats(wanted, error)


# A downloaded artifact's file name ends so: the API's Content-Disposition, the pages' fetch lines,
# the subject names of attestations.
FILE_SUFFIX = {
    "torchscript": ".pt",
    "exported": ".pt2",
    "source": ".tar",
    "weights": ".weights",  # .safetensors or a state_dict: the spec names the file
    "conversion-report": ".conversion-report.json",
    "validation-report": ".validation-report.json",
    "aoti": ".aoti.pt2",  # AOTIModelPackageLoader wants the .pt2 suffix
    "executorch": ".pte",
    "onnx": ".onnx",
    "attestation": ".intoto.jsonl",
}
