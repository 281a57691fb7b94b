"""Typed JSON responses serialised straight from the service's records by pydantic-core.

FastAPI would validate a returned record against its response model and then serialise it again;
the records are already typed and immutable, so one `dump_json` does the same job at a fraction of
the cost on the requests a fleet repeats (`versions show`, artifact metadata).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi.responses import Response
from pydantic import TypeAdapter


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def typed_json(kind: Any, value: Any, status_code: int = 200) -> Response:
    """`value` (of type `kind`, the endpoint's response model) as a JSON response."""
    return Response(_adapter(kind).dump_json(value), status_code=status_code, media_type="application/json")
