"""OpenAPI loading refuses what would recurse without bound, with a clear error."""

from __future__ import annotations

import json

import pytest

from common.errors import InvalidInput
from servers.documentation import openapi

CYCLE = {
    "openapi": "3.0.0",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/a": {
            "get": {
                "responses": {
                    "200": {
                        "description": "x",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}},
                    }
                }
            }
        }
    },
    "components": {"schemas": {"A": {"$ref": "#/components/schemas/B"}, "B": {"$ref": "#/components/schemas/A"}}},
}


def test_a_ref_cycle_the_validator_cannot_follow_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="cycle") as err:
        openapi.validate(openapi.load(json.dumps(CYCLE)))
    assert len(str(err.value)) < 400


@pytest.mark.parametrize(
    "text",
    [
        '{"a":' + "[" * 500 + "]" * 500 + "}",
        '{"a":' + "[" * 100_000 + "]" * 100_000 + "}",
        "a:\n" + "  - " * 2000 + "x",
    ],
)
def test_deeply_nested_documents_are_refused_before_anything_recurses(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"nested|neither valid"):
        openapi.load(text)
