"""An export archive's manifest is checked field by field (pydantic models), each mistake in one line."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from regctl.registry.errors import InvalidInput
from regctl.registry.ops.manifest import check_manifest
from regctl.registry.spec import InputSpec, ModelSpec

SHA = "a" * 64
GOOD: dict[str, Any] = {
    "format": "regctl-export",
    "format_version": 1,
    "blobs": {SHA: 10},
    "models": [
        {
            "name": "net",
            "description": "",
            "aliases": {"prod": 1},
            "versions": [
                {
                    "version": 1,
                    "status": "ready",
                    "spec": ModelSpec(inputs=(InputSpec("x", "float32", (2,)),)).to_dict(),
                    "source_sha256": SHA,
                    "artifacts": [{"kind": "source", "sha256": SHA, "size": 10, "method": None}],
                    "a_key_a_later_export_adds": True,
                }
            ],
        }
    ],
}


def _edited(path: tuple[Any, ...], value: Any) -> dict:
    manifest = copy.deepcopy(GOOD)
    target = manifest
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return manifest


def test_a_good_manifest_passes_as_it_is() -> None:
    assert check_manifest(copy.deepcopy(GOOD), "a.tar") == GOOD


V = ("models", 0, "versions", 0)
NOT_A_BLOB = "net:1 has an artifact that is not one of the archive's blobs"


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        (("format",), "zip", "a.tar is not a regctl export archive (no 'regctl-export' manifest)"),
        (("format_version",), 2, "a.tar's manifest has format version 2; this regctl reads 1"),
        (("blobs",), {"xyz": 1}, "a.tar's manifest lists blobs that are not sha256 -> size"),
        (("blobs",), {SHA: -1}, "lists blobs that are not sha256 -> size"),
        (("models",), [], "a.tar's manifest holds no models"),
        (("models", 0), "net", "a.tar's manifest has a model entry that is not a table of versions"),
        (("models", 0, "description"), 3, "a.tar's manifest: model net's description is not text"),
        (("models", 0, "aliases"), [], "a.tar's manifest: net's aliases are not a table"),
        (("models", 0, "aliases"), {"prod": 7}, "net@prod points at a version the archive lacks"),
        ((*V, "version"), True, "a.tar's manifest, net has a version number that is not a positive integer"),
        ((*V, "status"), "done", "a.tar's manifest, net:1 has status 'done'"),
        ((*V, "spec"), None, "a.tar's manifest, net:1 has no spec"),
        ((*V, "artifacts"), {}, "a.tar's manifest, net:1 lists no artifacts"),
        ((*V, "artifacts", 0, "size"), 11, NOT_A_BLOB),
        ((*V, "artifacts", 0, "kind"), "pickle", NOT_A_BLOB),
        ((*V, "source_sha256"), "b" * 64, "net:1's source_sha256 is not among its artifacts"),
        ((*V, "source_sha256"), None, "net:1 has no source"),
        ((*V, "spec", "inputs", 0, "shape"), [1, 2**40], "net:1 spec: inputs[0].shape[1] = 1099511627776"),
        ((*V, "run_url"), "javascript:alert(1)", "is not an http(s) URL"),
    ],
)
def test_each_bad_field_is_named_in_one_line(path: tuple[Any, ...], value: Any, says: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_manifest(_edited(path, value), "a.tar")
    assert says in str(info.value) and "\n" not in str(info.value)


def test_a_manifest_that_is_not_a_table_is_not_an_archive() -> None:
    with pytest.raises(InvalidInput, match="is not a regctl export archive"):
        check_manifest(["models"], "a.tar")
