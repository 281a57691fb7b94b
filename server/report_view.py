"""A version's validation report laid out for people: what the version page shows, computed from the
report the judge wrote (worker/judge/report.py documents its shape).

Reports are read defensively: an older report may lack a section, and every string in one may come
from model code, so nothing here trusts a value's type or renders it unescaped (the templates
autoescape HTML, and the pages' finalize shows hidden characters as visible escapes: page_format).
A report's warnings are bounded when it is made; an older or forged one is bounded here too.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from regctl.registry.entities import VersionInfo
from regctl.server.artifacts_api import SUFFIX
from regctl.server.charts import Bar, ErrorPoint, bar_chart, error_chart

MAX_SHOWN_WARNINGS = 100  # per source (trace, torch, model), as the report itself keeps them
MAX_SHOWN_CHARS = 2000
NOT_RUN = "not run"  # a candidate's `judged_on` when it was held back (worker/judge/verdicts.py)


@dataclass(frozen=True)
class Candidate:
    """One method regctl tried: did it match eager, and if not, on which input and why."""

    name: str
    ok: bool
    chosen: bool
    error: str | None
    failed_input: str | None
    hint: str | None
    detail: str | None
    max_abs_error: float | None
    max_rel_error: float | None
    compile_s: float | None
    cases: list[dict[str, Any]]
    chart: Markup | None
    ran: str | None = None  # "14 inputs (the whole battery) in LibTorch", or None in older reports
    not_run: bool = False  # held back, not compiled: another was kept and the weights are large


@dataclass(frozen=True)
class Warning_:
    """A warning raised while converting, with where it came from."""

    source: str  # "trace", "torch" or "model"
    message: str
    where: str | None
    count: int


@dataclass(frozen=True)
class Segment:
    """A piece of a warning's message: plain text, or code that torch quoted in backticks."""

    text: str
    code: bool


@dataclass(frozen=True)
class Download:
    """An artifact with its digest, a link for the browser and the CLI line that fetches it."""

    kind: str
    sha256: str
    size: int
    href: str
    fetch: str


@dataclass
class ReportView:
    """Everything the version page shows about the report."""

    method: str | None = None
    why: str | None = None
    error: str | None = None
    battery_size: int = 0
    battery_seed: int | None = None  # the secret seed the job drew (after the builder's files were sealed)
    rtol: Any = None
    atol: Any = None
    candidates: list[Candidate] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)  # the model's: TracerWarnings and its own
    # torch's own notices (its deprecations), shown apart in one collapsed line: they are not the model's
    torch_warnings: list[Warning_] = field(default_factory=list)
    warnings_dropped: int = 0  # raised but not kept in the report (or not shown here)
    battery: list[dict[str, Any]] = field(default_factory=list)
    latency_chart: Markup | None = None
    latency: dict[str, Any] = field(default_factory=dict)
    libtorch: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    aoti: dict[str, Any] = field(default_factory=dict)  # empty when the version did not ask for it
    aoti_chart: Markup | None = None
    # the ExecuTorch program and the ONNX model, each when the version asked for it
    formats: list[FormatView] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    downloads: list[Download] = field(default_factory=list)

    @property
    def rejected(self) -> list[Candidate]:
        """The candidates that did not match eager."""
        return [c for c in self.candidates if not c.ok]


@dataclass
class FormatView:
    """A deployment format built from the exported program, as its report section tells it."""

    fmt: str  # executorch | onnx
    title: str
    section: dict[str, Any]
    chart: Markup | None


FORMAT_TITLES = {"executorch": "ExecuTorch program", "onnx": "ONNX model"}


def _formats(report: dict[str, Any]) -> list[FormatView]:
    views = []
    for fmt, title in FORMAT_TITLES.items():
        section = _dict(report.get(fmt))
        if not section.get("requested"):
            continue
        cases = [_case(c) for c in section.get("cases") or [] if isinstance(c, dict)]
        points = [ErrorPoint(c["label"], c["tolerance_used"], c["ok"], _point_detail(c)) for c in cases]
        chart = (
            error_chart(f"{fmt}: error per battery input against the tolerance", points) if points else None
        )
        views.append(FormatView(fmt, title, section, chart))
    return views


def report_of(version: VersionInfo) -> dict[str, Any]:
    """The conversion report kept on the version (empty before a convert job finished)."""
    report = (version.summary or {}).get("report")
    return report if isinstance(report, dict) else {}


def build_view(version: VersionInfo) -> ReportView:
    """The report of `version` as the page lays it out."""
    report = report_of(version)
    validation_spec = _dict(version.spec.get("validation"))
    view = ReportView(
        method=_str(report.get("method")),
        why=_str(report.get("why")),
        error=_str(report.get("error")),
        battery_size=_int(report.get("battery_size")),
        battery_seed=_int(report.get("battery_seed")) if report.get("battery_seed") is not None else None,
        rtol=validation_spec.get("rtol"),
        atol=validation_spec.get("atol"),
        libtorch=_dict(report.get("libtorch")),
        export=_dict(report.get("export")),
        aoti=_dict(report.get("aoti")),
        timings=_dict(report.get("timings")),
        versions=_dict(report.get("versions")),
        validation=_dict((version.summary or {}).get("validation")),
    )
    view.candidates = _candidates(report, view.method)
    shown, shown_dropped = _warnings(report)
    view.warnings = [w for w in shown if w.source != "torch"]
    view.torch_warnings = [w for w in shown if w.source == "torch"]
    view.warnings_dropped = max(0, _int(report.get("warnings_dropped"))) + shown_dropped
    chosen = next((c for c in view.candidates if c.chosen), None)
    view.battery = chosen.cases if chosen else []
    view.latency, view.latency_chart = _latency(report)
    aoti_cases = [_case(c) for c in view.aoti.get("cases") or [] if isinstance(c, dict)]
    if aoti_cases:
        points = [ErrorPoint(c["label"], c["tolerance_used"], c["ok"], _point_detail(c)) for c in aoti_cases]
        view.aoti_chart = error_chart("aoti: error per battery input against the tolerance", points)
    view.formats = _formats(report)
    view.downloads = downloads(version)
    return view


def downloads(version: VersionInfo) -> list[Download]:
    """The version's artifacts, newest of each kind, as links under the pages' own download route."""
    newest: dict[str, Any] = {}
    for artifact in version.artifacts:
        newest[artifact.kind] = artifact
    ref = version.ref
    found = []
    kinds = (
        "torchscript",
        "aoti",
        "executorch",
        "onnx",
        "exported",
        "conversion-report",
        "validation-report",
        "weights",
        "source",
    )
    for kind in kinds:
        artifact = newest.get(kind)
        if artifact is None:
            continue
        target = f"{version.model}-{version.version}{SUFFIX[kind]}"
        fetch = f"regctl fetch {shlex.quote(ref)} -o {shlex.quote(target)}"
        if kind in DEPLOYABLE and kind != "torchscript":
            fetch += f" --format {kind}"
        elif kind != "torchscript":  # not a deployable format: named by its artifact kind
            fetch += f" --kind {kind}"
        found.append(
            Download(kind, artifact.sha256, artifact.size, f"/files/{quote(ref, safe='')}/{kind}", fetch)
        )
    return found


DEPLOYABLE = ("torchscript", "aoti", "executorch", "onnx", "exported")  # fetched with --format


def segments(message: str) -> list[Segment]:
    """A message split at its backticks: torch writes `torch.jit.script` and the page shows it as code.

    An unpaired backtick stays as text.
    """
    pieces = message.split("`")
    if len(pieces) % 2 == 0:  # an odd number of backticks: the last one opens nothing
        pieces[-2:] = ["`".join(pieces[-2:])]
    return [Segment(piece, i % 2 == 1) for i, piece in enumerate(pieces) if piece]


def _candidates(report: dict[str, Any], method: str | None) -> list[Candidate]:
    found = []
    for name, entry in _dict(report.get("candidates")).items():
        entry = _dict(entry)
        cases = [_case(c) for c in entry.get("cases") or [] if isinstance(c, dict)]
        ok = entry.get("ok") is True
        chart = None
        if cases:
            points = [ErrorPoint(c["label"], c["tolerance_used"], c["ok"], _point_detail(c)) for c in cases]
            chart = error_chart(f"{name}: error per battery input against the tolerance", points)
        found.append(
            Candidate(
                name=str(name),
                ok=ok,
                chosen=ok and name == method,
                error=_str(entry.get("error")),
                failed_input=_str(entry.get("failed_input")),
                hint=_str(entry.get("hint")),
                detail=_str(entry.get("detail")),
                max_abs_error=_float(entry.get("max_abs_error")),
                max_rel_error=_float(entry.get("max_rel_error")),
                compile_s=_float(entry.get("compile_s")),
                cases=cases,
                chart=chart,
                ran=_ran(entry),
                not_run=entry.get("judged_on") == NOT_RUN,
            )
        )
    found.sort(key=lambda c: (not c.chosen, c.name))
    return found


def _ran(entry: dict[str, Any]) -> str | None:
    """Which inputs a candidate ran and in which runtime, in words (None where the report predates it)."""
    runtime, inputs = entry.get("runtime"), entry.get("inputs_run")
    if entry.get("judged_on") == NOT_RUN:
        return _str(entry.get("judged_note")) or "Not run"
    if runtime not in ("libtorch", "python") or not isinstance(inputs, int) or isinstance(inputs, bool):
        return None
    scope = "the whole battery" if entry.get("judged_on") == "battery" else "the deciding inputs"
    where = "LibTorch (C++), then its smallest input in Python" if runtime == "libtorch" else "Python"
    text = f"Ran {inputs} inputs ({scope}) in {where}"
    note = _str(entry.get("judged_note")) or _str(entry.get("runtime_note"))
    return f"{text}: {note}" if note else text


def _case(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": str(entry.get("label", "")),
        "group": _str(entry.get("group")),
        "ok": entry.get("ok") is True,
        "max_abs_error": _float(entry.get("max_abs_error")),
        "max_rel_error": _float(entry.get("max_rel_error")),
        "tolerance_used": _float(entry.get("tolerance_used")),
    }


def _point_detail(case: dict[str, Any]) -> str:
    verdict = "passes" if case["ok"] else "fails"
    if case["tolerance_used"] is None:
        return f"{case['label']}: raised, {verdict}"
    return (
        f"{case['label']}: max abs error {_num(case['max_abs_error'])}, "
        f"{_num(case['tolerance_used'])} of the tolerance, {verdict}"
    )


def _warnings(report: dict[str, Any]) -> tuple[list[Warning_], int]:
    """The warnings to show, at most MAX_SHOWN_WARNINGS per source, and how many more there were."""
    found = []
    more = 0
    trace = _dict(_dict(report.get("candidates")).get("trace"))
    sources = (("trace", trace.get("warnings")), ("torch", report.get("torch_warnings")))
    for source, entries in (*sources, ("model", report.get("model_warnings"))):
        listed = [w for w in entries if isinstance(w, dict)] if isinstance(entries, list) else []
        for w in listed[MAX_SHOWN_WARNINGS:]:
            more += _int(w.get("count")) or 1
        for w in listed[:MAX_SHOWN_WARNINGS]:
            file, line = _str(w.get("file")), w.get("line")
            where = f"{file}:{line}" if file and isinstance(line, int) else file
            message = str(w.get("message", ""))
            if len(message) > MAX_SHOWN_CHARS:
                message = message[: MAX_SHOWN_CHARS - 1] + "…"
            found.append(Warning_(source, message, where, _int(w.get("count")) or 1))
    return found, more


def _latency(report: dict[str, Any]) -> tuple[dict[str, Any], Markup | None]:
    latency = _dict(report.get("latency"))
    eager, artifact = _float(latency.get("eager_ms")), _float(latency.get("artifact_ms"))
    if eager is None or artifact is None:
        return latency, None
    bars = [Bar("eager PyTorch", eager), Bar("TorchScript", artifact)]
    unoptimized = _float(_dict(report.get("optimize")).get("unoptimized_ms"))
    if unoptimized is not None and _dict(report.get("optimize")).get("applied"):
        bars.insert(1, Bar("TorchScript unoptimized", unoptimized))
    for fmt, label in (("aoti", "AOTInductor"), ("executorch", "ExecuTorch"), ("onnx", "ONNX Runtime")):
        measured = _float(_dict(report.get(fmt)).get("latency_ms"))
        if measured is not None and _dict(report.get(fmt)).get("ok"):
            bars.append(Bar(label, measured))
    return latency, bar_chart("median latency on the same input", bars)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("inf") if value == "inf" else None
    return float(value)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"
