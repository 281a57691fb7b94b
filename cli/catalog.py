"""`regctl models …`, `regctl versions show`, `regctl alias …`: reading and naming versions."""

from __future__ import annotations

import click

from regctl.cli.app import cli, client_of
from regctl.cli.render import echo, emit_json, fields, table
from regctl.registry.figures import ratio_text
from regctl.registry.lineage import parse_tags
from regctl.registry.refs import parse_ref
from regctl.registry.requests import VersionQuery
from regctl.registry.text import human_size, visible

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


@cli.group()
def models() -> None:
    """List and inspect registered models."""


@models.command("list")
@click.option(
    "--search",
    metavar="TEXT",
    help="Only models whose name, description, or a version's description or tag contains TEXT "
    "(ignoring case; % and _ are plain characters).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=1000),
    default=100,
    show_default=True,
    help="At most this many models (with --search).",
)
@json_option
@click.pass_context
def models_list(ctx: click.Context, search: str | None, limit: int, as_json: bool) -> None:
    """List every model with its version count and newest (ready) version, or those matching --search."""
    found = client_of(ctx).models(search, limit=limit)
    if as_json:
        emit_json([m.to_json() for m in found])
        return
    rows = [
        (m.name, m.versions, m.latest_version, m.latest_ready, m.created_at, m.description) for m in found
    ]
    table(None, ("model", "versions", "latest", "latest ready", "created", "description"), rows)


@models.command("show")
@click.argument("name")
@json_option
@click.pass_context
def models_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show a model: its newest versions and its aliases."""
    detail = client_of(ctx).model(name)
    if as_json:
        emit_json(detail.to_json())
        return
    aliases = ", ".join(f"{a} -> {v}" for a, v in detail.aliases.items()) or None
    fields(
        detail.name,
        [
            ("description", detail.description or None),
            ("created", detail.created_at),
            ("versions", detail.version_count),
            ("aliases", aliases),
        ],
    )
    rows = [(v.version, v.status, v.method, v.created_at) for v in detail.versions]
    shown = f"newest {len(rows)} of {detail.version_count}" if detail.version_count > len(rows) else None
    table(shown, ("version", "status", "method", "created"), rows)


@cli.group()
def versions() -> None:
    """Inspect model versions."""


@versions.command("show")
@click.argument("ref", metavar="NAME:VERSION")
@json_option
@click.pass_context
def versions_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a version: status, spec, artifacts, jobs and its validation report summary.

    REF may also be NAME@ALIAS or NAME (newest ready version).
    """
    info = client_of(ctx).version(ref)
    if as_json:
        emit_json(info.to_json())
        return
    summary = info.summary or {}
    fields(
        info.ref,
        [
            ("status", info.status),
            ("method", info.method),
            ("aliases", ", ".join(info.aliases) or None),
            ("created", f"{info.created_at:%Y-%m-%d %H:%M:%S} by {info.created_by}"),
            ("description", info.description),
            ("tags", ", ".join(f"{k}={v}" for k, v in info.tags.items()) or None),
            (
                "git commit",
                f"{info.git_commit}{' (dirty)' if info.git_dirty else ''}" if info.git_commit else None,
            ),
            ("run", info.run_url),
            ("model card", _card_line(info.card)),
            ("archived", f"{info.archived_at:%Y-%m-%d %H:%M:%S}" if info.archived_at else None),
            ("source sha256", info.source_sha256),
            ("weights sha256", info.weights_sha256),
            *[
                (key, value)
                for key, value in summary.items()
                if not isinstance(value, dict | list) and key not in ("latency", "latency_ratio")
            ],
            ("latency", _latency_line(summary)),
            ("warnings", _warnings_line(summary.get("report"))),
            ("coverage", _coverage_line(summary.get("report"))),
            ("attestation", _attestation_line(summary.get("attestation"))),
        ],
    )
    table(
        "artifacts",
        ("kind", "size", "sha256", "torch", "method"),
        [(a.kind, human_size(a.size), a.sha256[:16], a.torch_version, a.method) for a in info.artifacts],
    )
    if info.jobs:
        table(
            "jobs",
            ("id", "kind", "state", "attempts", "error"),
            [(j.id, j.kind, j.state, f"{j.attempts}/{j.max_attempts}", j.error) for j in info.jobs],
        )


def _attestation_line(attestation: object) -> str | None:
    """`signed (torchscript, onnx) with key 5aabfa13…`, or why nothing was signed."""
    if not isinstance(attestation, dict):
        return None
    if not attestation.get("signed"):
        return f"not signed: {attestation.get('why')}"
    kinds = ", ".join(str(k) for k in attestation.get("kinds") or [])
    return f"signed ({kinds}) with key {str(attestation.get('key_id'))[:16]}…"


def _card_line(card: str | None) -> str | None:
    """'12 lines of markdown (--json has it)'; None without a card."""
    if not card:
        return None
    lines = card.count("\n") + (not card.endswith("\n"))
    return f"{lines} line{'s' if lines != 1 else ''} of markdown (--json and the version page show it)"


def _latency_line(summary: dict) -> str | None:
    """'0.88× eager's time (0.80–0.95, noisy)': never the ratio alone; None when not measured.

    A summary recorded before the spread was measured has only the ratio: said so, and rounded.
    """
    line = summary.get("latency")
    if isinstance(line, str):
        return visible(line, multiline=False)
    return ratio_text({"ratio": summary.get("latency_ratio")})


def _warnings_line(report: object) -> str | None:
    """'3 distinct (41 raised), 4900 more not kept' from a report's warning lists; None without one."""
    if not isinstance(report, dict):
        return None
    listed = [
        w
        for key in ("torch_warnings", "model_warnings")
        if isinstance(report.get(key), list)
        for w in report[key]
        if isinstance(w, dict)
    ]
    raised = sum(w["count"] for w in listed if isinstance(w.get("count"), int))
    dropped = report.get("warnings_dropped")
    more = f", {dropped} more not kept" if isinstance(dropped, int) and dropped > 0 else ""
    return f"{len(listed)} distinct ({raised} raised){more}" if listed or more else None


def _coverage_line(report: object) -> str | None:
    """'3/4 lines; 0 of 1 decisions taken both ways; model.py:11 one way only'; None without a section.

    The file names and reasons come from the model side: shown through visible(), never raw.
    """
    section = report.get("coverage") if isinstance(report, dict) else None
    if not isinstance(section, dict):
        return None
    if section.get("recorded") is not True:
        return visible(f"not recorded ({section.get('warning')})", multiline=False)
    parts = []
    if isinstance(section.get("lines_run"), int) and isinstance(section.get("lines"), int):
        parts.append(f"{section['lines_run']}/{section['lines']} lines")
    decisions = [d for d in section.get("decisions") or [] if isinstance(d, dict)]
    both = sum(1 for d in decisions if d.get("one_way") is False)
    parts.append(f"{both} of {len(decisions)} decisions taken both ways")
    one_way = [f"{d.get('file')}:{d.get('line')}" for d in decisions if d.get("one_way") is True]
    if one_way:
        more = f" (+{len(one_way) - 3} more)" if len(one_way) > 3 else ""
        parts.append(f"{', '.join(one_way[:3])}{more} one way only")
    search = section.get("search")
    if isinstance(search, dict) and search.get("ran") is True:
        found = search.get("found")
        parts.append(
            f"search found {len(found) if isinstance(found, list) else 0} of {search.get('tried')} tried"
        )
    accepted = [d for d in decisions if d.get("accepted") is True]
    if accepted:
        parts.append(", ".join(f"{d.get('file')}:{d.get('line')}" for d in accepted[:3]) + " accepted baked")
    return visible("; ".join(parts), multiline=False)


@versions.command("list")
@click.argument("name", required=False)
@click.option(
    "--status", type=click.Choice(["registered", "converting", "validating", "ready", "failed", "cancelled"])
)
@click.option(
    "--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only versions with this tag (repeatable)."
)
@click.option("--archived", is_flag=True, help="Include archived versions.")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True)
@json_option
@click.pass_context
def versions_list(
    ctx: click.Context,
    name: str | None,
    status: str | None,
    tags: tuple[str, ...],
    archived: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List NAME's newest versions first, filtered by status and tags (in the database).

    Without NAME, the newest versions of every model, named NAME:VERSION (`versions list --tag team=vision`).
    """
    query = VersionQuery(name, status=status, tags=parse_tags(tags), archived=archived, limit=limit)
    rows = client_of(ctx).versions(query)
    if as_json:
        emit_json([v.to_json() for v in rows])
        return
    if name is None:  # across models: each row names its version as NAME:VERSION
        table(
            None,
            ("version", "status", "method", "created", "archived"),
            [
                (f"{v.model}:{v.version}", v.status, v.method, v.created_at, "yes" if v.archived else "")
                for v in rows
            ],
        )
        return
    table(
        None,
        ("version", "status", "method", "created", "archived"),
        [(v.version, v.status, v.method, v.created_at, "yes" if v.archived else "") for v in rows],
    )


@cli.group()
def alias() -> None:
    """Point movable names (NAME@prod) at versions."""


@alias.command("set")
@click.argument("target", metavar="NAME@ALIAS")
@click.argument("version", type=click.IntRange(min=1))
@click.option(
    "--force",
    is_flag=True,
    help="Move it even where the promotion policy refuses (admins only); the audit trail records it.",
)
@json_option
@click.pass_context
def alias_set(ctx: click.Context, target: str, version: int, force: bool, as_json: bool) -> None:
    """Point NAME@ALIAS at VERSION (creating or moving it); the change is recorded.

    Any alias points only at a ready version; a protected one (prod) only at a ready version with a
    signed attestation, proved under a torch REGCTL_PROMOTION_TORCH lists (when set).
    """
    info = client_of(ctx).alias(target, version, force=force)
    if as_json:
        emit_json(info.to_json())
        return
    if info.previous == info.version:  # nothing moved, and nothing was recorded
        echo(f"{info.model}@{info.name} is already at {info.version}")
        return
    moved = f" (was {info.previous})" if info.previous else ""
    echo(f"{info.model}@{info.name} -> {info.version}{moved}")


@alias.command("rm")
@click.argument("target", metavar="NAME@ALIAS")
@click.pass_context
def alias_rm(ctx: click.Context, target: str) -> None:
    """Remove NAME@ALIAS; the removal is recorded."""
    info = client_of(ctx).remove_alias(target)
    echo(f"removed {info.model}@{info.name} (was {info.previous})")


@alias.command("history")
@click.argument("name")
@json_option
@click.pass_context
def alias_history_cmd(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show every change to NAME's aliases: who moved what, when."""
    events = client_of(ctx).alias_history(parse_ref(name).name)
    if as_json:
        emit_json([e.to_json() for e in events])
        return
    table(
        None,
        ("alias", "from", "to", "by", "at"),
        [(e.name, e.previous, e.version, e.updated_by, e.updated_at) for e in events],
    )
