"""Build Mermaid diagrams from a spec, and check the subset we emit before anything is stored.

The checker is deliberately narrow: it knows exactly the statements :func:`overview` and
:func:`schema_diagram` write (a known header, identifiers, quoted labels, balanced blocks), so a
bug in a generator shows up as a refused diagram instead of a broken one in someone's docs.
"""

from __future__ import annotations

import re
from typing import Any

from common.errors import shown

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_LABEL = r'"[^"\n]*"'
_FLOW = [
    re.compile(rf"^subgraph {_ID}\[{_LABEL}\]$"),
    re.compile(r"^end$"),
    re.compile(rf"^{_ID}\[{_LABEL}\]$"),
    re.compile(rf"^{_ID}\(\[{_LABEL}\]\)$"),
    re.compile(rf"^{_ID} (-->|-\.->|---) {_ID}$"),
    re.compile(r"^direction (TB|LR|BT|RL)$"),
]
_CLASS = [
    re.compile(rf"^class {_ID} \{{$"),
    re.compile(r"^\}$"),
    re.compile(r"^[+\-#~][A-Za-z0-9_\[\]~]+ [A-Za-z_$][\w$-]*$"),
    re.compile(rf"^{_ID} (-->|\*--|o--|<\|--|\.\.>) {_ID}( : [A-Za-z0-9_ .\[\]-]+)?$"),
    re.compile(rf'^{_ID} "[0-9*.]+" (-->|\*--|o--) "[0-9*.]+" {_ID}( : [A-Za-z0-9_ .\[\]-]+)?$'),
]
HEADERS = {"flowchart": _FLOW, "graph": _FLOW, "classDiagram": _CLASS}


def check(source: str) -> list[str]:
    """Problems in ``source`` (empty when it is valid in our subset)."""
    lines = [ln.strip() for ln in source.strip().splitlines() if ln.strip() and not ln.strip().startswith("%%")]
    if not lines:
        return ["empty diagram"]
    head = lines[0].split()
    rules = HEADERS.get(head[0]) if head else None
    if rules is None:
        return [f"line 1: unknown diagram type {shown(lines[0])}; expected one of {sorted(HEADERS)}"]
    if head[0] in ("flowchart", "graph") and (len(head) != 2 or head[1] not in ("TB", "TD", "LR", "BT", "RL")):
        return [f"line 1: flowchart needs a direction (TB, TD, LR, BT or RL), got {shown(lines[0])}"]
    problems: list[str] = []
    depth = 0
    for n, line in enumerate(lines[1:], start=2):
        if not any(r.match(line) for r in rules):
            problems.append(f"line {n}: cannot parse {shown(line)}")
            continue
        if line.startswith("subgraph ") or line.endswith("{"):
            depth += 1
        elif line in ("end", "}"):
            depth -= 1
            if depth < 0:
                problems.append(f"line {n}: {shown(line)} closes nothing")
                depth = 0
    if depth:
        problems.append(f"{depth} block(s) never closed")
    return problems


def ident(name: str, prefix: str = "n") -> str:
    """A Mermaid-safe identifier for any name."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return out if re.match(r"^[A-Za-z_]", out) else f"{prefix}_{out}"


def label(text: str) -> str:
    return '"' + text.replace('"', "'").replace("\n", " ")[:80] + '"'


def overview(title: str, endpoints: list[dict[str, Any]]) -> str:
    """A flowchart: the API, one box per tag, one node per endpoint under its first tag."""
    lines = ["flowchart LR", f"api([{label(title)}])"]
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for ep in endpoints:
        by_tag.setdefault((ep["tags"] or ["untagged"])[0], []).append(ep)
    for t, (tag, eps) in enumerate(sorted(by_tag.items())):
        tid = f"tag{t}"
        lines.append(f"subgraph {tid}[{label(tag)}]")
        for e, ep in enumerate(eps):
            lines.append(f"{tid}_e{e}[{label(ep['method'] + ' ' + ep['path'])}]")
        lines.append("end")
        lines.append(f"api --> {tid}")
    return "\n".join(lines) + "\n"


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return ident(str(prop["$ref"]).rsplit("/", 1)[-1], "T")
    t = str(prop.get("type") or "object")
    if t == "array" and isinstance(prop.get("items"), dict):
        return _type(prop["items"]) + "[]"
    return re.sub(r"[^A-Za-z0-9_]", "_", t)


def schema_diagram(schemas: dict[str, Any]) -> str:
    """A class diagram: one class per named schema, its properties, and arrows for $ref relations."""
    lines = ["classDiagram"]
    relations: list[str] = []
    for name, schema in sorted(schemas.items()):
        cid = ident(name, "T")
        lines.append(f"class {cid} {{")
        props = schema.get("properties") if isinstance(schema, dict) else None
        for pname, prop in (props or {}).items():
            if not isinstance(prop, dict):
                continue
            field = re.sub(r"[^\w$-]", "_", str(pname)) or "field"
            if not re.match(r"^[A-Za-z_$]", field):
                field = f"f_{field}"
            lines.append(f"+{_type(prop)} {field}")
            target = prop.get("$ref") or (prop.get("items") or {}).get("$ref") if isinstance(prop, dict) else None
            if isinstance(target, str) and target.startswith("#"):
                many = prop.get("type") == "array"
                rel = f'{cid} "1" --> "{"*" if many else "1"}" {ident(target.rsplit("/", 1)[-1], "T")} : {field}'
                relations.append(rel)
        for part in (schema.get("allOf") or []) if isinstance(schema, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("$ref"), str):
                relations.append(f"{ident(part['$ref'].rsplit('/', 1)[-1], 'T')} <|-- {cid}")
        lines.append("}")
    return "\n".join(lines + relations) + "\n"
