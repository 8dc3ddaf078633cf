"""Settings of the knowledge-graph server: the shared ones plus ``INFERENCE_ENHANCEMENT_*``."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from common.settings import BaseServerSettings, _shared

#: Exposed unless INFERENCE_ENHANCEMENT_TOOLS says otherwise: the reference memory server's nine tools, so
#: the default tools/list is the reference's (with typed results it is near the 8 KB a server's tools/list may
#: cost the client's context on every turn). ``INFERENCE_ENHANCEMENT_TOOLS=all`` exposes every tool.
CORE_TOOLS = (
    "create_entities",
    "create_relations",
    "add_observations",
    "delete_entities",
    "delete_observations",
    "delete_relations",
    "read_graph",
    "search_nodes",
    "open_nodes",
)


class Settings(BaseServerSettings, env_prefix="INFERENCE_ENHANCEMENT_"):
    """Bounds exist so one call can neither flood the client's context nor hold the database for long."""

    #: Recorded as the provenance of every write; empty means the client's name from the MCP handshake.
    source: str = Field(default="", max_length=100)
    max_observation_chars: int = Field(default=10_000, ge=100, le=1_000_000)
    max_batch: int = Field(default=1_000, ge=1, le=100_000)
    #: A graph result stops growing at about this many characters (~4 per token), so the default
    #: answer stays far below the client's 25k-token limit; the rest is reached through next_cursor.
    result_char_budget: int = Field(default=60_000, ge=2_000, le=2_000_000)
    #: Below this cosine similarity a meaning-only match is not a search hit.
    min_similarity: float = Field(default=0.3, ge=0.0, le=1.0)
    #: The shared KEYWORD_SCAN_CAP with a lower default here: a search ranks this many full-text
    #: matches per table (entities, observations) to fuse the best 40, and each match ranked costs time.
    keyword_scan_cap: int = Field(default=200, ge=100, le=1_000_000, validation_alias=_shared("KEYWORD_SCAN_CAP"))
    #: 40 = pgvector's hnsw.ef_search: a deeper vector list makes the HNSW scan go round a second time.
    search_candidates: int = Field(default=40, ge=5, le=1_000)
    max_visited: int = Field(default=20_000, ge=100, le=1_000_000)
    #: create_relations naming an entity that does not exist: ``keep`` stores the relation dangling, as the
    #: reference memory server does (a switching user's habits and files rely on it); ``refuse`` fails the call.
    dangling_relations: Literal["keep", "refuse"] = "keep"
    #: The only folders import_memory_jsonl reads and export_memory_jsonl writes (JSON list); empty: the
    #: tools refuse file paths (``content`` still works). The command line uses the given file's folder.
    file_roots: list[Path] = Field(
        default_factory=list,
        description="Folders the import/export tools may read and write (JSON list). Empty: no file paths.",
    )
    #: The largest memory.jsonl read by an import or written by an export (so an export can be imported back).
    import_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1_024)
    export_inline_max_chars: int = Field(default=200_000, ge=1_000, le=10_000_000)
    #: The reference server's own variable: the memory.jsonl imported on start and mirrored after
    #: changes. Relative paths are taken in MCP_SUITE_DATA_DIR; unset means no file at all.
    memory_file_path: str | None = Field(default=None, validation_alias=_shared("MEMORY_FILE_PATH"), max_length=4_096)
    #: Write the graph back to MEMORY_FILE_PATH after changes, so the reference server can take over.
    mirror: bool = True
    #: Changes within this many milliseconds go to the mirror file in one write.
    mirror_delay_ms: int = Field(default=500, ge=0, le=60_000)

    tools: list[str] | None = Field(
        default_factory=lambda: list(CORE_TOOLS),
        description="Tools to expose (comma-separated); 'all' for every tool.",
    )
