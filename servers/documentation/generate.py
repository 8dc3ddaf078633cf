"""Markdown API reference from stored endpoints (Mermaid lives in mermaid.py)."""

from __future__ import annotations

import json
from typing import Any

MAX_SCHEMA_CHARS = 1_500


def _schema(value: Any) -> str:
    text = json.dumps(value, indent=1, sort_keys=True)
    if len(text) > MAX_SCHEMA_CHARS:
        text = text[:MAX_SCHEMA_CHARS] + "\n... (truncated; get_endpoint has the full schema)"
    return f"```json\n{text}\n```\n"


def reference(title: str, spec_version: str, endpoints: list[dict[str, Any]]) -> str:
    """One Markdown page: a section per tag, a subsection per endpoint."""
    out = [f"# {title} API reference\n", f"Generated from the stored {spec_version} spec.\n"]
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for ep in endpoints:
        by_tag.setdefault((ep["tags"] or ["Other"])[0], []).append(ep)
    for tag, eps in sorted(by_tag.items()):
        out.append(f"## {tag}\n")
        for ep in sorted(eps, key=lambda e: (e["path"], e["method"])):
            out.append(f"### {ep['method']} {ep['path']}\n")
            if ep["summary"]:
                out.append(ep["summary"] + "\n")
            if ep["description"] and ep["description"] != ep["summary"]:
                out.append(ep["description"] + "\n")
            if ep["operation_id"]:
                out.append(
                    f"Operation id: `{ep['operation_id']}`" + (" (deprecated)" if ep["deprecated"] else "") + "\n"
                )
            if ep["parameters"]:
                out.append("| Name | In | Required | Type | Description |\n|---|---|---|---|---|")
                for p in ep["parameters"]:
                    schema = p.get("schema") or {}
                    kind = schema.get("type", "object") if isinstance(schema, dict) else "object"
                    desc = str(p.get("description", "")).replace("|", "\\|").replace("\n", " ")
                    out.append(f"| {p.get('name')} | {p.get('in')} | {bool(p.get('required'))} | {kind} | {desc} |")
                out.append("")
            if ep["request_body"]:
                for ct, schema in (ep["request_body"].get("content") or {}).items():
                    out.append(f"Request body ({ct}):\n")
                    out.append(_schema(schema))
            for code, resp in sorted((ep["responses"] or {}).items()):
                out.append(f"Response {code}: {resp.get('description', '')}\n")
                for ct, schema in (resp.get("content") or {}).items():
                    if schema:
                        out.append(f"({ct})\n")
                        out.append(_schema(schema))
    return "\n".join(out)
