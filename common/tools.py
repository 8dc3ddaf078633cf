"""Tool registration: the tool rules of DESIGN.md applied once, for every server.

A server module declares each tool where it is defined (``@TOOLS.tool("Title", READ)`` on a
:class:`Catalog`), forwards its validated arguments to one service method (:func:`args_of`), and its
``build`` turns the catalog into a :class:`ToolSet` for :func:`common.runtime.create_server`. Each tool is
then:

- checked: a snake_case name of at most 40 characters, a docstring, all four annotation hints;
- wrapped: every call is logged once (tool, duration, outcome) and every failure reaches the client
  as a ``ToolError`` saying what to fix; an unexpected exception is logged with its stack on stderr
  and the client gets a short message with an incident id, never a trace;
- described compactly: its advertised schemas are rewritten by :mod:`common.tool_schema` before the
  SDK sees them (the SDK's ``Tool`` objects are built here and passed to ``MCPServer(tools=...)``);
- left out entirely when the server's ``<NAME>_TOOLS`` allow-list does not name it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
import typing
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ValidationError

from common.errors import InvalidInput, SuiteError
from common.logging import get_logger
from common.settings import BaseServerSettings
from common.tool_schema import compact, inline, outline, smaller

log = get_logger(__name__)

MAX_TOOL_NAME = 40


@dataclass(frozen=True)
class Hints:
    """The four MCP tool annotation hints, always set explicitly."""

    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool = False


#: The usual kinds of tool. WRITE is an idempotent write (upsert, set); APPEND is not idempotent.
READ = Hints(read_only=True, destructive=False, idempotent=True)
WRITE = Hints(read_only=False, destructive=False, idempotent=True)
APPEND = Hints(read_only=False, destructive=False, idempotent=False)
DELETE = Hints(read_only=False, destructive=True, idempotent=True)
EXTERNAL = Hints(read_only=False, destructive=False, idempotent=True, open_world=True)
READ_EXTERNAL = Hints(read_only=True, destructive=False, idempotent=True, open_world=True)


def to_tool_error(tool: str, exc: BaseException) -> ToolError:
    """The error a client sees for ``exc`` raised by ``tool``."""
    if isinstance(exc, ToolError):
        return exc
    if isinstance(exc, SuiteError):
        return ToolError(str(exc))
    incident = uuid.uuid4().hex[:8]
    log.error("tool_crashed", tool=tool, incident=incident, exc_info=exc)
    return ToolError(
        f"Internal error in {tool} (incident {incident}); nothing was changed by the failed step. "
        "The details are in the server's log."
    )


#: Argument problems spelled out in a validation error; the rest are counted (the SDK lists them all).
MAX_LISTED_PROBLEMS = 3


def validation_message(tool: str, exc: ValidationError) -> str:
    """A short message for arguments that do not match ``tool``'s schema: a few problems, each clipped."""
    problems = exc.errors(include_url=False, include_input=False)
    listed = [
        f"{'.'.join(str(part)[:40] for part in p['loc']) or 'arguments'}: {p['msg'][:160]}"
        for p in problems[:MAX_LISTED_PROBLEMS]
    ]
    more = f" (and {len(problems) - len(listed)} more)" if len(problems) > len(listed) else ""
    return f"Invalid arguments for {tool}: {'; '.join(listed)}{more}. Check them against the tool's input schema."


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def compact_json(structured: dict[str, Any]) -> str:
    """The text content sent beside ``structured``: the same JSON without indentation and without null fields,
    so a client that reads only text gets the whole answer at less than half the SDK's indented copy."""
    return json.dumps(_without_nulls(structured), separators=(",", ":"), ensure_ascii=False)


class _Tool(Tool):
    """An SDK tool whose argument-validation error stays short however many items were wrong, (with
    ``bare_errors``) whose own errors reach the client without the SDK's "Error executing tool" prefix,
    and (with ``compact_text``) whose text content is :func:`compact_json` of its structured content."""

    bare_errors: bool = False
    compact_text: bool = False

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        try:
            result = await super().run(arguments, context, convert_result)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                raise ToolError(validation_message(self.name, cause)) from None
            if self.bare_errors and isinstance(cause, ToolError) and not isinstance(exc, UnexpectedToolError):
                raise ToolError(str(cause)) from None
            raise
        if self.compact_text and isinstance(result, CallToolResult) and result.structured_content is not None:
            result.content = [TextContent(type="text", text=compact_json(result.structured_content))]
        return result


def _check_name(name: str) -> None:
    if len(name) > MAX_TOOL_NAME or not name.replace("_", "").isalnum() or name.lower() != name:
        raise ValueError(f"tool name {name!r} must be snake_case and at most {MAX_TOOL_NAME} characters")


#: Deepest nesting of lists and objects accepted in an argument.
MAX_DEPTH = 32
_INT64 = 2**63 - 1


def check_value(path: str, value: Any, depth: int = 0) -> None:
    """Refuse what no tool can store: NUL characters (PostgreSQL rejects them), integers beyond 64 bits,
    nesting deeper than :data:`MAX_DEPTH`. Raises InvalidInput naming the argument."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{path} is nested more than {MAX_DEPTH} levels deep; flatten it.")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"{path} contains a NUL character (\\u0000); remove it.")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not -_INT64 - 1 <= value <= _INT64:
            raise InvalidInput(f"{path} is outside the 64-bit integer range.")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_value(f"{path}.{str(key)[:40]}", key, depth + 1)
            check_value(f"{path}.{str(key)[:40]}", item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for n, item in enumerate(value):
            check_value(f"{path}[{n}]", item, depth + 1)
    elif isinstance(value, BaseModel):
        for key, item in value.__dict__.items():
            check_value(f"{path}.{key}", item, depth + 1)


def wrap(fn: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Awaitable[Any]]:
    """``fn`` with argument checks, call logging and error mapping, keeping the signature the SDK reads."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "ok"
        try:
            for key, value in kwargs.items():
                if not isinstance(value, Context):
                    check_value(key, value)
            return await fn(*args, **kwargs)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                outcome = "cancelled"
                raise
            outcome = "error" if isinstance(exc, SuiteError | ToolError) else "crash"
            raise to_tool_error(name, exc) from None
        finally:
            log.info(
                "tool_call", tool=name, duration_ms=round((time.perf_counter() - started) * 1000, 2), outcome=outcome
            )

    # The wrapper lives in this module, so string annotations (``from __future__ import annotations``
    # in the server) are resolved against the tool's own module before the SDK reads them.
    hints = typing.get_type_hints(fn, include_extras=True)
    signature = inspect.signature(fn)
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()],
        return_annotation=hints.get("return", signature.return_annotation),
    )
    wrapper.__annotations__ = hints
    return wrapper


def args_of(values: dict[str, Any]) -> dict[str, Any]:
    """A tool's arguments (its ``locals()``) as keywords for the service method of the same names.

    The MCP context is left out: services never see it. Tools whose parameters are named as the
    service's forward them in one line instead of repeating every name.
    """
    return {key: value for key, value in values.items() if not isinstance(value, Context)}


@dataclass(frozen=True)
class _Declared:
    fn: Callable[..., Awaitable[Any]]
    title: str
    hints: Hints
    name: str | None
    typed: bool | None


class Catalog:
    """The tools a server module declares, in the order they are defined.

    ``options`` (``lean``, ``outline_outputs``, ``typed_outputs``, ``bare_errors``, ``compact_text``) are passed to the
    :class:`ToolSet` it builds.
    """

    def __init__(self, **options: bool) -> None:
        self._declared: list[_Declared] = []
        self.options = options

    def tool(
        self, title: str, hints: Hints, *, name: str | None = None, typed: bool | None = None
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Declare the decorated function a tool; it is returned unchanged (tests call it directly)."""

        def declare(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            self._declared.append(_Declared(fn, title, hints, name, typed))
            return fn

        return declare

    def build(self, settings: BaseServerSettings) -> ToolSet:
        """The declared tools as a :class:`ToolSet` for ``settings`` (its allow-list applies)."""
        tools = ToolSet(settings, **self.options)
        for d in self._declared:
            tools.add(d.fn, d.title, d.hints, name=d.name, typed=d.typed)
        return tools


class ToolSet:
    """The tools of one server, collected by ``build`` and built into SDK ``Tool`` objects."""

    def __init__(
        self,
        settings: BaseServerSettings,
        *,
        lean: bool = False,
        outline_outputs: bool = False,
        typed_outputs: bool = False,
        bare_errors: bool = False,
        compact_text: bool = False,
    ) -> None:
        """``lean`` trims input schemas further (:func:`common.tool_schema.compact`); ``outline_outputs``
        advertises only the top-level fields of each result (the results are still validated models);
        ``typed_outputs`` advertises each result's full types and ``required`` lists, without ``$ref``s;
        ``bare_errors`` sends a tool's error text alone, as a peer server it replaces words it;
        ``compact_text`` sends :func:`compact_json` of the structured content as the text content instead of
        the SDK's indented copy (for servers whose every answer must stay small as sent)."""
        self.settings = settings
        self.lean = lean
        self.outline_outputs = outline_outputs
        self.typed_outputs = typed_outputs
        self.bare_errors = bare_errors
        self.compact_text = compact_text
        self._tools: list[Tool] = []
        self.names: list[str] = []

    def add(
        self,
        fn: Callable[..., Awaitable[Any]],
        title: str,
        hints: Hints,
        *,
        name: str | None = None,
        typed: bool | None = None,
    ) -> None:
        """Register ``fn`` as a tool (unless the allow-list leaves it out); ``typed`` overrides the set's
        ``typed_outputs`` for this tool."""
        tool_name = name or fn.__name__
        _check_name(tool_name)
        if not fn.__doc__:
            raise ValueError(f"tool {tool_name!r} needs a docstring saying when to use it")
        if tool_name in self.names:
            raise ValueError(f"tool {tool_name!r} registered twice")
        self.names.append(tool_name)
        if self.settings.tools is not None and tool_name not in self.settings.tools:
            return
        tool = _Tool.from_function(
            wrap(fn, tool_name),
            name=tool_name,
            title=title,
            description=inspect.cleandoc(fn.__doc__),
            annotations=ToolAnnotations(
                title=None if self.lean else title,  # lean: the tool's own title says it already
                read_only_hint=hints.read_only,
                destructive_hint=hints.destructive,
                idempotent_hint=hints.idempotent,
                open_world_hint=hints.open_world,
            ),
        )
        assert isinstance(tool, _Tool)
        tool.bare_errors = self.bare_errors
        tool.compact_text = self.compact_text
        self._compact(tool, self.typed_outputs if typed is None else typed)
        self._tools.append(tool)

    def _compact(self, tool: Tool, typed: bool) -> None:
        params = compact(tool.parameters, nullable_as_type=False)
        if self.lean:
            lean = compact(params, nullable_as_type=False, lean=True)
            # Inlining $refs pays when each model is used once; keep whichever form is smaller.
            params = smaller(lean, compact(inline(lean), nullable_as_type=False, lean=True))
        tool.parameters = params
        meta = tool.fn_metadata
        if meta.output_schema is not None:
            if typed:
                meta.output_schema = compact(inline(meta.output_schema), nullable_as_type=True, keep_required=True)
                return
            out = compact(meta.output_schema, nullable_as_type=True)
            meta.output_schema = outline(out) if self.outline_outputs else out

    def built(self) -> list[Tool]:
        """The SDK tools, for ``MCPServer(tools=...)``."""
        return list(self._tools)
