"""Tool registration (common/tools.py): the tool rules, argument checks and error mapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel

from common.errors import InvalidInput
from common.settings import BaseServerSettings
from common.tool_schema import P
from common.tools import READ, ToolSet, check_value

pytestmark = pytest.mark.anyio


class Echo(BaseModel):
    text: str
    n: int


async def echo(
    text: Annotated[str, P("Text.")],
    n: Annotated[int, P("A number.")] = 0,
    extra: Annotated[dict[str, Any] | None, P("Anything.")] = None,
) -> Echo:
    """Answer the text back."""
    return Echo(text=text, n=n)


async def crash() -> Echo:
    """Fail unexpectedly."""
    raise RuntimeError("secret internals at /srv/db password=hunter2")


def _server(settings: BaseServerSettings) -> MCPServer[Any]:
    tools = ToolSet(settings)
    tools.add(echo, "Echo", READ)
    tools.add(crash, "Crash", READ)
    return MCPServer("tools-test", tools=tools.built())


@pytest.fixture
def settings() -> BaseServerSettings:
    return BaseServerSettings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"text": "a\x00b"}, "text contains a NUL character"),
        ({"text": "ok", "n": 10**30}, "n is outside the 64-bit integer range"),
        ({"text": "ok", "extra": {"k": ["x", "y\x00"]}}, "extra.k[1] contains a NUL character"),
        ({"text": "ok", "extra": {"a\x00": 1}}, "contains a NUL character"),
    ],
)
async def test_arguments_no_tool_could_store_get_a_clear_error(
    settings: BaseServerSettings, args: dict[str, Any], expected: str
) -> None:
    async with Client(_server(settings)) as client:
        result = await client.call_tool("echo", args)
        assert result.is_error
        assert expected in result.content[0].text  # type: ignore[union-attr]


async def test_arguments_of_the_wrong_shape_get_a_short_error_naming_a_few_problems(
    settings: BaseServerSettings,
) -> None:
    async with Client(_server(settings)) as client:
        result = await client.call_tool("echo", {"text": ["y" * 100_000] * 50, "n": "z" * 100_000})
        text = result.content[0].text  # type: ignore[union-attr]
        assert result.is_error
        assert text.startswith("Invalid arguments for echo: text: Input should be a valid string; n: ")
        assert len(text) < 1024
        assert "yyyy" not in text
        assert "zzzz" not in text


def test_deep_nesting_is_refused() -> None:
    value: Any = "x"
    for _ in range(40):
        value = [value]
    with pytest.raises(InvalidInput, match="nested more than"):
        check_value("content", value)


async def test_an_unexpected_failure_reaches_the_client_as_a_short_generic_error(settings: BaseServerSettings) -> None:
    async with Client(_server(settings)) as client:
        result = await client.call_tool("crash", {})
        text = result.content[0].text  # type: ignore[union-attr]
        assert result.is_error
        assert "Internal error in crash (incident " in text
        assert "hunter2" not in text
        assert "Traceback" not in text


async def test_the_allow_list_leaves_other_tools_out(make_settings: Callable[..., Any]) -> None:
    settings = BaseServerSettings(_env_file=None, tools=["echo"])  # type: ignore[call-arg]
    async with Client(_server(settings)) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["echo"]


def test_tool_rules_are_enforced_at_registration(settings: BaseServerSettings) -> None:
    async def Bad() -> Echo:
        """Doc."""
        return Echo(text="", n=0)

    async def nodoc() -> Echo:
        return Echo(text="", n=0)

    tools = ToolSet(settings)
    with pytest.raises(ValueError, match="snake_case"):
        tools.add(Bad, "Bad", READ)
    with pytest.raises(ValueError, match="docstring"):
        tools.add(nodoc, "No doc", READ)
    tools.add(echo, "Echo", READ)
    with pytest.raises(ValueError, match="twice"):
        tools.add(echo, "Echo", READ)


async def test_schemas_are_compact_and_hints_explicit(settings: BaseServerSettings) -> None:
    async with Client(_server(settings)) as client:
        tool = next(t for t in (await client.list_tools()).tools if t.name == "echo")
    assert "title" not in tool.input_schema["properties"]["text"]
    assert tool.annotations is not None
    assert (tool.annotations.read_only_hint, tool.annotations.destructive_hint) == (True, False)
    assert tool.annotations.idempotent_hint is True
    assert tool.annotations.open_world_hint is False


class Pair(BaseModel):
    first: Echo
    note: str | None = None


async def pair(text: Annotated[str, P("Text.")]) -> Pair:
    """Answer with a nested result; refuses 'no'."""
    if text == "no":
        raise InvalidInput("no is not an answer; say yes.")
    return Pair(first=Echo(text=text, n=1))


async def test_bare_errors_and_typed_outputs_are_per_set_and_per_tool(settings: BaseServerSettings) -> None:
    tools = ToolSet(settings, outline_outputs=True, typed_outputs=True, bare_errors=True)
    tools.add(pair, "Pair", READ)
    tools.add(echo, "Echo", READ, typed=False)
    async with Client(MCPServer("tools-test", tools=tools.built())) as client:
        listed = {t.name: t.output_schema for t in (await client.list_tools()).tools}
        failed = await client.call_tool("pair", {"text": "no"})
    assert listed["pair"] == {
        "type": "object",
        "properties": {
            "first": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "n": {"type": "integer"}},
                "required": ["text", "n"],
            },
            "note": {"type": ["string", "null"]},
        },
        "required": ["first"],
    }
    assert listed["echo"] == {"type": "object", "properties": {"text": {}, "n": {}}}
    assert failed.is_error
    assert failed.content[0].text == "no is not an answer; say yes."  # type: ignore[union-attr]


async def test_compact_text_sends_the_structured_content_as_compact_json_without_nulls(
    settings: BaseServerSettings,
) -> None:
    plain, compact = ToolSet(settings), ToolSet(settings, compact_text=True)
    for tools in (plain, compact):
        tools.add(pair, "Pair", READ)
    async with Client(MCPServer("tools-test", tools=plain.built())) as client:
        indented = await client.call_tool("pair", {"text": "hi"})
    async with Client(MCPServer("tools-test", tools=compact.built())) as client:
        short = await client.call_tool("pair", {"text": "hi"})
    assert short.structured_content == indented.structured_content == {"first": {"text": "hi", "n": 1}, "note": None}
    assert short.content[0].text == '{"first":{"text":"hi","n":1}}'  # type: ignore[union-attr]
    assert len(short.content[0].text) < len(indented.content[0].text) / 2  # type: ignore[union-attr]
