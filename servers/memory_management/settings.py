"""Settings of the memory server: the shared ones plus ``MEMORY_MANAGEMENT_*``."""

from pathlib import Path

from pydantic import Field

from common.settings import BaseServerSettings, fusion_depth

#: Exposed unless MEMORY_MANAGEMENT_TOOLS says otherwise: the everyday tools. All seventeen tools together would
#: cost the client about twice the 8 KB budget of context on every turn; ``MEMORY_MANAGEMENT_TOOLS=all`` exposes them all.
CORE_TOOLS = ("store_memory", "recall", "build_context", "get_memory", "update_memory", "forget")


class Settings(BaseServerSettings, env_prefix="MEMORY_MANAGEMENT_"):
    """Bounds and defaults; every limit exists so one call cannot flood the client's context or the database."""

    max_content_chars: int = Field(default=8_000, ge=100, le=1_000_000)
    default_workspace: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,99}$")
    default_token_budget: int = Field(default=1_500, ge=50, le=50_000)
    max_token_budget: int = Field(default=8_000, ge=100, le=100_000)
    #: 40 = pgvector's hnsw.ef_search: a deeper vector list makes the HNSW scan go round a second time.
    recall_candidates: int = fusion_depth(40)
    store_batch_max: int = Field(default=100, ge=1, le=1_000)
    sweep_interval_s: float = Field(default=60.0, ge=0.05, le=86_400)
    sweep_batch: int = Field(default=500, ge=1, le=10_000)
    consolidate_threshold: float = Field(default=0.92, ge=0.5, le=1.0)
    consolidate_scan_max: int = Field(default=2_000, ge=10, le=100_000)
    import_max: int = Field(default=50_000, ge=1, le=1_000_000)
    import_roots: list[Path] = Field(
        default_factory=list,
        description="Folders import_qdrant may read a local Qdrant storage from (JSON list). Empty: none.",
    )

    tools: list[str] | None = Field(
        default_factory=lambda: list(CORE_TOOLS),
        description="Tools to expose (comma-separated); 'all' for every tool.",
    )
