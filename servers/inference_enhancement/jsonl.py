"""The reference server's ``memory.jsonl``: one JSON object per line, ``type`` "entity" or "relation".

Lines are written exactly as the reference writes them (``JSON.stringify`` of type, name, entityType,
observations / type, from, to, relationType; no spaces; newline-separated, none at the end), so a
file exported here is read by the reference server and a file it wrote round-trips byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from common.errors import InvalidInput


@dataclass
class ParsedEntity:
    name: str
    entity_type: str
    observations: list[str] = field(default_factory=list)


@dataclass
class ParsedGraph:
    entities: list[ParsedEntity]
    relations: list[tuple[str, str, str]]


def _str(obj: dict[str, object], key: str, line: int) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise InvalidInput(f"line {line}: {key!r} must be a string; nothing was imported.")
    return value


def parse(text: str) -> ParsedGraph:
    """Entities (duplicates merged, first type kept, observation order kept) and relations (deduplicated)."""
    entities: dict[str, ParsedEntity] = {}
    relations: dict[tuple[str, str, str], None] = {}
    for n, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"line {n} is not JSON ({exc.msg}); nothing was imported.") from None
        if not isinstance(obj, dict):
            raise InvalidInput(f"line {n} is not a JSON object; nothing was imported.")
        kind = obj.get("type")
        if kind == "entity":
            name = _str(obj, "name", n)
            entity_type = obj.get("entityType", "")
            if not isinstance(entity_type, str):
                raise InvalidInput(f"line {n}: 'entityType' must be a string; nothing was imported.")
            obs = obj.get("observations", [])
            if not isinstance(obs, list) or not all(isinstance(o, str) for o in obs):
                raise InvalidInput(f"line {n}: 'observations' must be a list of strings; nothing was imported.")
            entity = entities.setdefault(name, ParsedEntity(name, entity_type))
            for o in obs:
                if o not in entity.observations:
                    entity.observations.append(o)
        elif kind == "relation":
            relations[(_str(obj, "from", n), _str(obj, "to", n), _str(obj, "relationType", n))] = None
        else:
            raise InvalidInput(f'line {n}: \'type\' must be "entity" or "relation"; nothing was imported.')
    return ParsedGraph(list(entities.values()), list(relations))


def entity_line(name: str, entity_type: str, observations: list[str]) -> str:
    obj = {"type": "entity", "name": name, "entityType": entity_type, "observations": observations}
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def relation_line(from_name: str, to_name: str, relation_type: str) -> str:
    obj = {"type": "relation", "from": from_name, "to": to_name, "relationType": relation_type}
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def join(lines: Iterable[str]) -> str:
    return "\n".join(lines)
