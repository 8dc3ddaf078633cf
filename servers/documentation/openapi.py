"""OpenAPI 3.x and Swagger 2.0: parse, validate, resolve local $refs, extract endpoints, diff.

Plain functions over dicts; the server stores what :func:`endpoints` returns.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

import yaml

from common.errors import InvalidInput, shown

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_DEPTH = 12


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    operation_id: str | None
    summary: str
    description: str
    tags: list[str]
    deprecated: bool
    parameters: list[dict[str, Any]]
    request_body: dict[str, Any] | None
    responses: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def fingerprint(self) -> str:
        body = [
            self.operation_id,
            self.summary,
            self.description,
            self.tags,
            self.deprecated,
            self.parameters,
            self.request_body,
            self.responses,
        ]
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    def embed_text(self) -> str:
        parts = [f"{self.method} {self.path}", self.summary, self.description, " ".join(self.tags)]
        if self.operation_id:
            parts.append(self.operation_id)
        return "\n".join(p for p in parts if p)[:2000]


#: Deepest nesting of objects and lists accepted in a spec (real specs stay far below it).
MAX_NESTING = 64
_TOO_DEEP = f"The spec is nested more than {MAX_NESTING} levels deep; no real API spec is. Check the file."


def _nesting(node: Any) -> int:
    """How deeply ``node`` nests, counted without recursion (and stopping past the limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        item, level = stack.pop()
        if level > MAX_NESTING:
            return level
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def load(text: str) -> dict[str, Any]:
    """A spec document from JSON or YAML text."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidInput(_TOO_DEEP) from None
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except RecursionError:
            raise InvalidInput(_TOO_DEEP) from None
        except yaml.YAMLError as exc:
            raise InvalidInput(f"The spec is neither valid JSON nor valid YAML: {str(exc)[:300]}") from None
    if not isinstance(data, dict):
        raise InvalidInput("The spec must be a JSON/YAML object with an 'openapi' or 'swagger' field.")
    if _nesting(data) > MAX_NESTING:
        raise InvalidInput(_TOO_DEEP)
    return data


def spec_version(spec: dict[str, Any]) -> str:
    if isinstance(spec.get("openapi"), str) and spec["openapi"].startswith("3."):
        return str(spec["openapi"])
    if str(spec.get("swagger")) == "2.0":
        return "2.0"
    raise InvalidInput(
        "Not an OpenAPI 3.x or Swagger 2.0 document: it needs 'openapi: 3.x.y' or 'swagger: \"2.0\"' at the top."
    )


def validate(spec: dict[str, Any]) -> str:
    """The spec's version; raises InvalidInput with the validator's reason and where it applies."""
    version = spec_version(spec)
    from openapi_spec_validator import validate as run_validator

    try:
        run_validator(spec)
    except RecursionError:
        raise InvalidInput(
            "The spec's $refs form a cycle the validator cannot follow (a schema that is only itself); "
            "break the cycle, e.g. with an object property that refers back."
        ) from None
    except Exception as exc:
        message = (getattr(exc, "message", None) or str(exc).splitlines()[0])[:300]
        where = getattr(exc, "json_path", None)
        loc = f" at {where}" if where and where != "$" else ""
        raise InvalidInput(
            f"Invalid {'Swagger' if version == '2.0' else 'OpenAPI'} {version} spec{loc}: {message}"
        ) from None
    return version


def _pointer(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for part in ref[2:].split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(ref)
    return node


def resolve(node: Any, spec: dict[str, Any], seen: tuple[str, ...] = (), depth: int = 0) -> Any:
    """``node`` with local $refs inlined. A cycle stays a ``$ref`` marked ``x-circular``; remote refs stay."""
    if isinstance(node, list):
        return [resolve(v, spec, seen, depth + 1) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#"):
            return {"$ref": ref, "x-unresolved": "remote reference"}
        if ref in seen or depth > MAX_DEPTH:
            return {"$ref": ref, "x-circular": True}
        try:
            target = _pointer(spec, ref)
        except KeyError:
            raise InvalidInput(f"$ref {shown(ref)} points at nothing in the spec.") from None
        resolved = resolve(target, spec, (*seen, ref), depth + 1)
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return {**resolved, **extra} if isinstance(resolved, dict) else resolved
    return {k: resolve(v, spec, seen, depth + 1) for k, v in node.items()}


def _param(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: p[k] for k in ("name", "in", "required", "description") if k in p}
    if "schema" in p:
        out["schema"] = p["schema"]
    else:  # Swagger 2.0 puts the type on the parameter itself
        schema = {k: p[k] for k in ("type", "format", "items", "enum", "default") if k in p}
        if schema:
            out["schema"] = schema
    return out


def endpoints(spec: dict[str, Any]) -> list[Endpoint]:
    """Every operation of the spec, with parameters, request body and responses resolved."""
    swagger = spec_version(spec) == "2.0"
    out: list[Endpoint] = []
    for path, raw_item in (spec.get("paths") or {}).items():
        item = resolve(raw_item, spec)
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            params: dict[tuple[str, str], dict[str, Any]] = {}
            for p in [*shared, *(op.get("parameters") or [])]:
                if isinstance(p, dict):
                    params[(str(p.get("name")), str(p.get("in")))] = p
            body: dict[str, Any] | None = None
            plain: list[dict[str, Any]] = []
            form: dict[str, Any] = {}
            for p in params.values():
                if swagger and p.get("in") == "body":
                    consumes = op.get("consumes") or spec.get("consumes") or ["application/json"]
                    body = {"required": bool(p.get("required")), "content": {consumes[0]: p.get("schema", {})}}
                elif swagger and p.get("in") == "formData":
                    form[str(p.get("name"))] = _param(p).get("schema", {})
                else:
                    plain.append(_param(p))
            if form:
                body = {"content": {"application/x-www-form-urlencoded": {"type": "object", "properties": form}}}
            if not swagger and isinstance(op.get("requestBody"), dict):
                rb = op["requestBody"]
                body = {
                    "required": bool(rb.get("required")),
                    "content": {ct: (m or {}).get("schema", {}) for ct, m in (rb.get("content") or {}).items()},
                }
            responses: dict[str, Any] = {}
            for code, resp in (op.get("responses") or {}).items():
                if not isinstance(resp, dict):
                    continue
                entry: dict[str, Any] = {"description": resp.get("description", "")}
                if swagger and "schema" in resp:
                    produces = op.get("produces") or spec.get("produces") or ["application/json"]
                    entry["content"] = {produces[0]: resp["schema"]}
                elif resp.get("content"):
                    entry["content"] = {ct: (m or {}).get("schema", {}) for ct, m in resp["content"].items()}
                responses[str(code)] = entry
            out.append(
                Endpoint(
                    method=method.upper(),
                    path=str(path),
                    operation_id=op.get("operationId"),
                    summary=str(op.get("summary") or ""),
                    description=str(op.get("description") or ""),
                    tags=[str(t) for t in op.get("tags") or []],
                    deprecated=bool(op.get("deprecated")),
                    parameters=plain,
                    request_body=body,
                    responses=responses,
                )
            )
    return out


def schemas(spec: dict[str, Any]) -> dict[str, Any]:
    """Named schemas, unresolved (their $refs are the relations a diagram draws)."""
    if spec_version(spec) == "2.0":
        return dict(spec.get("definitions") or {})
    return dict((spec.get("components") or {}).get("schemas") or {})


class EndpointChanges(NamedTuple):
    """Endpoint keys between two imports of a spec, named as the fields of the import's result."""

    added: list[str]
    removed: list[str]
    changed: list[str]


def diff(old: dict[str, str], new: dict[str, str]) -> EndpointChanges:
    """The endpoint keys added, removed and changed, given key -> fingerprint maps."""
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    return EndpointChanges(added, removed, changed)
