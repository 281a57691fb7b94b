"""`regctl export-triton`: putting a validated version where a serving system loads it."""

from __future__ import annotations

import click

from regctl.cli.app import cli, client_of
from regctl.cli.render import echo, emit_json
from regctl.registry.text import human_size


@cli.command("export-triton")
@click.argument("ref", metavar="REF")
@click.option(
    "--repo",
    required=True,
    metavar="DIR_OR_URL",
    help="The Triton model repository: a directory or an fsspec URL such as s3://bucket/models.",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=0),
    help="Triton's max_batch_size; 0 disables batching [default: the batch dim's max when the spec "
    "marks one and it leads every input and output, else 0].",
)
@click.option(
    "--instance-kind",
    type=click.Choice(["cpu", "gpu"]),
    default="cpu",
    show_default=True,
    help="Where Triton runs the model instances (KIND_CPU or KIND_GPU).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.pass_context
def export_triton(
    ctx: click.Context, ref: str, repo: str, max_batch_size: int | None, instance_kind: str, as_json: bool
) -> None:
    """Write REF into a Triton model repository: REPO/NAME/config.pbtxt and REPO/NAME/VERSION/model.pt.

    Other versions already in REPO/NAME stay as they are. Inputs are named INPUT__0, INPUT__1 ...
    in forward()'s order and outputs OUTPUT__0 ... (Triton's PyTorch backend convention).
    A version with a proved ONNX model also gets REPO/NAME-onnx/config.pbtxt and
    REPO/NAME-onnx/VERSION/model.onnx (Triton's onnxruntime backend, the model's own tensor names),
    or a note saying why not; an AOTInductor package stays a `regctl fetch --format aoti` away.
    """
    result = client_of(ctx).export_triton(
        ref, repo, max_batch_size=max_batch_size, instance_kind=instance_kind
    )
    if as_json:
        emit_json(result.to_json())
        return
    batching = f"max_batch_size {result.max_batch_size}" if result.max_batch_size else "no batching"
    echo(f"{result.ref} -> {result.model} ({human_size(result.size)}, sha256 {result.sha256[:16]}…)")
    echo(f"{result.config} ({batching})")
    if result.onnx_model is not None:
        size, sha = human_size(result.onnx_size or 0), (result.onnx_sha256 or "")[:16]
        echo(f"{result.ref} -> {result.onnx_model} ({size}, sha256 {sha}…)")
        echo(f"{result.onnx_config} ({batching})")
    if result.note:
        echo(f"note: {result.note}", err=True)
