"""Settings of the documentation server: the shared ones plus ``DOCUMENTATION_*``."""

from pathlib import Path

from pydantic import Field

from common.settings import JobServerSettings, fusion_depth


class Settings(JobServerSettings, env_prefix="DOCUMENTATION_"):
    """Limits exist so one folder or one call cannot flood the database or the client's context."""

    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Folders ingest_folder and spec imports may read (JSON list). Empty: no file access.",
    )
    max_file_bytes: int = Field(default=2_000_000, ge=1_000, le=200_000_000)
    max_files: int = Field(default=20_000, ge=1, le=1_000_000)
    max_text_chars: int = Field(default=2_000_000, ge=100, le=50_000_000)
    chunk_chars: int = Field(default=1_200, ge=200, le=20_000)
    embed_chars: int = Field(
        default=450,
        ge=50,
        le=20_000,
        description="Characters of each chunk (after its heading path) the model embeds; full-text sees all.",
    )
    embed_batch: int = Field(
        default=16,
        ge=1,
        le=1_024,
        description="Texts per model call while ingesting; ONNX Runtime keeps memory for the largest batch it saw.",
    )
    search_candidates: int = fusion_depth(60)
    read_max_chars: int = Field(default=8_000, ge=500, le=200_000)
