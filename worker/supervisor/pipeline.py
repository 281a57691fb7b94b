"""Running one job end to end: claim it, fetch its inputs, have it judged in sandboxes, record the outcome.

Used by the Celery tasks and by the embedded runner alike; it holds no Celery code. This is the
trusted supervisor: it holds the database and the store, and never imports torch or model code
(worker/supervisor/supervisor.py runs the model process and the judge).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regctl.registry.bundle import extract_stream
from regctl.registry.entities import JobInfo, VersionInfo
from regctl.registry.errors import ConversionFailed, CorruptedArtifact
from regctl.registry.errors.inputs import NothingToValidate
from regctl.registry.figures import ratio_text
from regctl.registry.formats import BUILT_FORMATS
from regctl.registry.jobs import claim_job, get_job
from regctl.registry.outcomes import NewArtifact, record_failure, record_success, start_stage
from regctl.registry.provenance.attest import SIGNED_KINDS, Subject, sign_proofs
from regctl.registry.settings import Settings
from regctl.registry.spec import ModelSpec
from regctl.registry.store import ArtifactStore, open_store
from regctl.registry.store.checks import BlobCheck
from regctl.worker.contract import FORMAT_NAMES
from regctl.worker.engine.bounds import trim_report
from regctl.worker.sandbox.uids import job_uids
from regctl.worker.supervisor.format_stage import add_formats
from regctl.worker.supervisor.identity import owner_is_dead_here, worker_identity
from regctl.worker.supervisor.progress import JobCancelled, JobReporter, JobTimedOut
from regctl.worker.supervisor.scratch import job_scratch, sweep_abandoned
from regctl.worker.supervisor.supervisor import WorkDir, run_conversion, run_validation


def run_job(settings: Settings, job_id: int, device: str | None = None) -> tuple[JobInfo, list[JobInfo]]:
    """Claim and run job `job_id`; return the job as claimed and the follow-up jobs to publish.

    A delivery of a job that is finished or alive elsewhere does nothing. Model failures are
    recorded on the job; only infrastructure errors (database, store) propagate.
    """
    worker = worker_identity()
    claim = claim_job(settings, job_id, worker, owner_is_dead=owner_is_dead_here)
    if not claim.should_run:
        return claim.job, []
    job = claim.job
    sweep_abandoned(settings.work_dir)  # what a job killed here before left behind
    with (
        JobReporter(settings, job_id, worker) as reporter,
        job_scratch(job_id, settings.work_dir) as tmp,
        job_uids(settings.sandbox_uid, settings.sandbox != "off") as lease,
    ):
        try:
            version = start_stage(settings, job_id, worker)
            store = open_store(settings.artifact_store)
            reporter.checkpoint("fetching source")
            model_dir, spec, weights_check = _prepare(store, version, tmp)
            stage = _convert if job.kind == "convert" else _validate
            work = Stage(
                settings,
                job,
                version,
                store,
                model_dir,
                _on_device(spec, device),
                tmp,
                reporter,
                worker,
                lease.by_role if lease is not None else {},
                [weights_check],
            )
            return job, stage(work)
        except JobCancelled as exc:
            _record_failure(reporter, str(exc), state="cancelled")
            return job, []
        except JobTimedOut as exc:
            _record_failure(reporter, str(exc))
            return job, []
        except ConversionFailed as exc:
            failed = exc.fields
            artifacts, summary = failed.get("artifacts"), failed.get("summary")
            _record_failure(reporter, failed["reason"], artifacts=artifacts, summary=summary)
            return job, []
        except CorruptedArtifact as exc:
            # The store's copy is damaged, not the model: a ready version stays ready (its proof
            # stands, and fetch refuses the damaged bytes), like every other version sharing the blob.
            keep = job.kind == "validate"
            _record_failure(reporter, str(exc), state="failed", keep_version=keep)
            return job, []
        except Exception as exc:
            # An engine bug or a store that went away: fail the job with the reason rather than leave
            # it running until the reconciler notices; if the database is what broke, this raises too.
            reason = f"internal error in the worker: {type(exc).__name__}: {exc}"
            _record_failure(reporter, reason)
            raise


def _record_failure(reporter: JobReporter, reason: str, **how: Any) -> None:
    """Fail the reporter's job, with the stages it began since its last progress write, in one commit."""
    began = reporter.unwritten_stages()
    record_failure(reporter.settings, reporter.job_id, reporter.worker, reason, began=began, **how)


def _prepare(store: ArtifactStore, version: VersionInfo, tmp: Path) -> tuple[Path, ModelSpec, BlobCheck]:
    """The model directory: the bundle unpacked as it streams from the store, the weights linked in.

    The weights are checked against their sha256 beside the job's work (`Stage.inputs_checked`).
    """
    spec = ModelSpec.from_dict(version.spec)
    source = next(a for a in version.artifacts if a.kind == "source")
    model_dir = extract_stream(store.open_chunks(source.sha256), tmp / "model", f"{version.ref} source")
    weights = next((a for a in version.artifacts if a.kind == "weights"), None)
    if weights is not None and spec.weights:
        # Versions registered before weights became their own artifact carry them in the bundle.
        return model_dir, spec, store.link_checking(weights.sha256, model_dir / spec.weights).check
    return model_dir, spec, BlobCheck()


def _store_report(store: ArtifactStore, report: dict, kind: str) -> NewArtifact:
    """The report as a JSON artifact: `conversion-report` from a convert job, `validation-report` else."""
    text = json.dumps(trim_report(report), indent=2, sort_keys=True, default=str)
    torch_version = report.get("versions", {}).get("torch")
    return NewArtifact(kind, store.put_bytes(text.encode()), torch_version=torch_version)


@dataclass(frozen=True)
class Stage:
    """Everything a convert or validate stage works with."""

    settings: Settings
    job: JobInfo
    version: VersionInfo
    store: ArtifactStore
    model_dir: Path
    spec: ModelSpec
    tmp: Path
    reporter: JobReporter
    worker: str  # `host:pid` that claimed the job; outcomes are recorded only while it still owns it
    uids: Mapping[str, int]  # each sandboxed role's uid, leased for this job alone (empty: not root)
    checks: list[BlobCheck]  # the stored inputs' checksums, checked while the model process reads them

    def inputs_checked(self) -> None:
        """Wait for the check of every stored input the job read; CorruptedArtifact when one is damaged.

        Called before anything is stored or recorded: what the job found came from bytes that
        match their sha256, or a damaged blob, not the model, is the reason it fails.
        """
        for check in self.checks:
            check.wait()


def _convert(work: Stage) -> list[JobInfo]:
    work.reporter.checkpoint("converting")
    work_dir = _work_dir(work, None)
    result = run_conversion(
        work.settings,
        work.spec,
        work_dir,
        work.job.method or work.spec.method,
        progress=work.reporter,
        check=work.reporter.check,
    )
    result = add_formats(work.settings, work.spec, work_dir, result, work.reporter, work.reporter.check)
    work.reporter.checkpoint("storing artifacts")
    work.inputs_checked()
    if not result.ok or result.torchscript_path is None:
        report = _store_report(work.store, result.report, "conversion-report")
        raise _failed(work, result.error or "conversion failed", [report], summarize(result.report))
    torch_version = result.report.get("versions", {}).get("torch")
    proved = result.report.get("proved") or {}
    scripted = work.store.adopt_file(result.torchscript_path, result.seals.get(result.torchscript_path))
    artifacts = [NewArtifact("torchscript", scripted, torch_version, result.method)]
    if result.exported_path is not None and work.spec.wants("exported"):  # aoti alone: proved, not kept
        exported = work.store.adopt_file(result.exported_path, result.seals.get(result.exported_path))
        if exported.sha256 == proved.get("exported"):
            artifacts.append(NewArtifact("exported", exported, torch_version, "export"))
        else:  # changed after the judge ran it: not what was proved, so not kept
            result.report["export"]["ok"] = False
            result.report["export"]["error"] = "the exported program changed after it was judged"
    for fmt, path in result.built.items():
        artifacts.extend(_proved_format(work, result.report, fmt, path, torch_version))
    proven = scripted.sha256 == proved.get("torchscript")
    report = _store_report(work.store, result.report, "conversion-report")
    artifacts.append(report)
    summary = summarize(result.report)
    if proven:
        summary.update(validated=True, validation=_proof(work.job.id, scripted.sha256, result.report))
        work.reporter.checkpoint("signing")
        subjects = [
            signed_subject(a.kind, a.blob.sha256, a.method, result.report)
            for a in artifacts
            if a.kind in SIGNED_KINDS
        ]
        artifacts += _attest(work, subjects, result.report, report.blob.sha256, summary)
    work.reporter.checkpoint("recording")
    return record_success(
        work.settings,
        work.job.id,
        work.worker,
        artifacts,
        summary,
        {"method": result.method, "report_sha256": report.blob.sha256, "proved": proven},
        method=result.method,
        proved=proven,
        began=work.reporter.unwritten_stages(),
    )


def _proved_format(
    work: Stage, report: dict, fmt: str, path: Path, torch_version: str | None
) -> list[NewArtifact]:
    """The format's artifact when the bytes stored are the ones its stage proved; else none, and why."""
    stored = work.store.adopt_file(path)
    if stored.sha256 == (report.get("proved") or {}).get(fmt):
        return [NewArtifact(fmt, stored, torch_version, fmt)]
    # as for the exported program: only the proved bytes are kept (the blob stays for gc)
    report[fmt].update(ok=False, error=f"the {FORMAT_NAMES[fmt]} changed after it was proved; not stored")
    return []


def _attest(
    work: Stage, subjects: list[Subject], report: dict, report_sha256: str, summary: dict
) -> list[NewArtifact]:
    """The signed statements, as `attestation` artifacts; the summary says what was signed, or why not."""
    what = f"{work.job.kind} job {work.job.id}"
    signed = sign_proofs(
        work.settings, work.store, work.version.ref, subjects, report, report_sha256, job=what
    )
    summary["attestation"] = signed.summary
    return [NewArtifact("attestation", blob, None, kind) for kind, blob in signed.envelopes]


def signed_subject(kind: str, sha256: str, method: str | None, report: dict) -> Subject:
    """A proved artifact as an attestation names it, with the runtimes that proved it."""
    if kind == "torchscript":
        libtorch = report.get("libtorch") or {}
        runtimes = (
            ("LibTorch C++ runner (the whole battery)", "torch.jit.load (one input)")
            if libtorch.get("ran") and libtorch.get("ok")
            else ("torch.jit.load (the whole battery)",)
        )
    elif kind == "exported":
        runtimes = ("torch.export.load(...).module() (the whole battery)",)
    else:
        runtimes = (str((report.get(kind) or {}).get("runtime")),)
    return Subject(kind, sha256, method, runtimes)


def _proof(job_id: int, sha256: str, report: dict) -> dict:
    """The version's validation summary when the convert job's judge proved the stored bytes."""
    libtorch = report.get("libtorch") or {}
    return {
        "by": f"convert job {job_id}: the judge ran the battery and LibTorch on these exact bytes",
        "sha256": sha256,
        "battery_size": report.get("battery_size"),
        "battery_seed": report.get("battery_seed"),
        "libtorch": libtorch.get("ok"),
        "latency_ratio": (report.get("latency") or {}).get("ratio"),
        "latency": ratio_text(report.get("latency")),  # the ratio with its spread, as shown
    }


def _validate(work: Stage) -> list[JobInfo]:
    scripted = [a for a in work.version.artifacts if a.kind == "torchscript"]
    if not scripted:
        # create_job refuses this up front; a job that gets here anyway fails in the same words.
        raise _failed(work, NothingToValidate.render(ref=work.version.ref))
    artifact = work.tmp / "artifact" / "model.pt"
    work.checks.append(work.store.link_checking(scripted[-1].sha256, artifact).check)
    work.reporter.checkpoint("validating")
    result = run_validation(
        work.settings, work.spec, _work_dir(work, artifact), progress=work.reporter, check=work.reporter.check
    )
    work.inputs_checked()
    report = _store_report(work.store, result.report, "validation-report")
    summary = {"validated": result.ok, "validation": summarize(result.report)}
    if not result.ok:
        raise _failed(work, result.error or "validation failed", [report], summary)
    work.reporter.checkpoint("signing")  # what this job proved anew: the stored TorchScript artifact
    stored = scripted[-1]
    subject = signed_subject("torchscript", stored.sha256, stored.method, result.report)
    attested = _attest(work, [subject], result.report, report.blob.sha256, summary)
    work.reporter.checkpoint("recording")
    return record_success(
        work.settings,
        work.job.id,
        work.worker,
        [report, *attested],
        summary,
        {"report_sha256": report.blob.sha256},
        began=work.reporter.unwritten_stages(),
    )


def _failed(
    work: Stage, reason: str, artifacts: list[NewArtifact] | None = None, summary: dict | None = None
) -> ConversionFailed:
    """The model failed this stage: run_job records `reason`, the report and the summary on the job."""
    job = work.job
    ref = work.version.ref
    return ConversionFailed(
        kind=job.kind, job_id=job.id, ref=ref, reason=reason, artifacts=artifacts, summary=summary
    )


def _work_dir(work: Stage, artifact: Path | None) -> WorkDir:
    return WorkDir.create(work.tmp, work.model_dir, artifact, work.uids)


def _on_device(spec: ModelSpec, device: str | None) -> ModelSpec:
    # The gpu queue mapped onto the CPU (tests, CPU-only development) runs cuda specs on the CPU.
    if device and device != spec.device:
        return dataclasses.replace(spec, device=device)  # type: ignore[arg-type]
    return spec


def summarize(report: dict) -> dict:
    """The few report fields kept on the version row and shown by `regctl versions show`."""
    latency = report.get("latency") or {}
    shapes = report.get("shapes") or []
    return {
        "why": report.get("why"),
        "battery_size": report.get("battery_size"),
        "battery_seed": report.get("battery_seed"),
        "max_abs_error": max((s.get("max_abs_error") or 0.0 for s in shapes), default=None),
        "max_rel_error": max((s.get("max_rel_error") or 0.0 for s in shapes), default=None),
        "latency_ratio": latency.get("ratio"),
        "latency": ratio_text(latency),  # the ratio with its spread, as shown
        "optimized": (report.get("optimize") or {}).get("applied"),
        "exported": (report.get("export") or {}).get("ok"),
        **_format_summary(report),
        "torch": (report.get("versions") or {}).get("torch"),
        "report": trim_report(report),
    }


def _format_summary(report: dict) -> dict:
    """`aoti`, `executorch`, `onnx`: True/False when asked for (None when not), and `<format>_error`."""
    summary: dict = {}
    for fmt in BUILT_FORMATS:
        section = report.get(fmt) or {}
        asked = bool(section.get("requested"))
        summary[fmt] = section.get("ok") if asked else None
        summary[f"{fmt}_error"] = section.get("error") if asked and not section.get("ok") else None
    return summary


def fail_unless_finished(settings: Settings, job_id: int, reason: str) -> None:
    """Fail a job (and its version) from outside its process, unless it already finished."""
    if not get_job(settings, job_id).finished:
        record_failure(settings, job_id, None, reason)
