"""One embedding model per store (common/embeddings/store_model.py): the table every vector schema
keeps, the second test "model", and ``mcp-suite reembed`` switching each server's store in a real process.

The memory and documentation servers' own tests show processes of two models sharing a store.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import asyncpg
import numpy as np
import pytest

from common import migrate
from common.embeddings import HashEmbedder, make_embedder, store_model
from common.errors import InvalidInput
from common.migrate import read_up
from common.settings import BaseServerSettings
from common.testing import server_env

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

#: Each vector server: SQL that leaves rows of the old model (and one without a vector), and the
#: query that lists the model of every row that holds a vector.
SEEDS: dict[str, tuple[list[str], str]] = {
    "code_quality": (
        [
            "INSERT INTO code_quality.projects (root) VALUES ('/tmp/store-model')",
            "INSERT INTO code_quality.finding_texts (project_id, fingerprint, text, embedding_model) "
            "SELECT id, 'f1', 'unused import os', 'hash-384' FROM code_quality.projects",
            "INSERT INTO code_quality.finding_texts (project_id, fingerprint, text) "
            "SELECT id, 'f2', 'line too long' FROM code_quality.projects",
        ],
        "SELECT embedding_model, embedding IS NOT NULL FROM code_quality.finding_texts",
    ),
    "analytics": (
        [
            "INSERT INTO analytics.patterns (source, data_fingerprint, kind, columns, statistic, strength, "
            "description, details, sample, embedding_model) VALUES ('sales.csv', 'fp', 'trend', '{amount}', 0.9, "
            "'strong', 'amount rises over time', '{}', '[]', 'hash-384')",
        ],
        "SELECT embedding_model, embedding IS NOT NULL FROM analytics.patterns",
    ),
    "web_access": (
        [
            "INSERT INTO web_access.searches (query, provider, result_count, latency_ms, summary, model) "
            "VALUES ('pgvector hnsw', 'searxng', 1, 5, 'pgvector hnsw', 'hash-384')",
            "INSERT INTO web_access.search_results (search_id, rank, title, url, snippet) "
            "SELECT id, 1, 'HNSW indexes', 'https://example.com/hnsw', 'graph index' FROM web_access.searches",
        ],
        "SELECT model, embedding IS NOT NULL FROM web_access.searches",
    ),
    "inference_enhancement": (
        [
            "INSERT INTO inference_enhancement.entities (name, entity_type, lc, grams, embedding_model) "
            "VALUES ('Alice', 'person', E'alice\\x1fperson', '{}', 'hash-384')",
            "INSERT INTO inference_enhancement.entities (name, entity_type, lc, grams) "
            "VALUES ('Bob', 'person', E'bob\\x1fperson', '{}')",
        ],
        "SELECT embedding_model, embedding IS NOT NULL FROM inference_enhancement.entities",
    ),
}


def test_every_store_model_migration_creates_the_kits_table() -> None:
    files = sorted(ROOT.glob("migrations/*/*_store_model.up.sql"))
    assert {f.parent.name for f in files} == {*SEEDS, "memory_management", "documentation"}
    ddl = store_model.STORE_MODEL_DDL.strip()
    for f in files:
        assert "-- @include store_model" in f.read_text(), f"{f} does not include the store_model kit"
        assert ddl in read_up(f).decode(), f"{f} does not create store_model as common/embeddings/store_model.py says"


async def test_the_hash_embedders_variant_is_a_second_model_of_the_same_dimension(tmp_path: Path) -> None:
    settings = BaseServerSettings(_env_file=None, data_dir=tmp_path, embedding_model="hash-384:b")  # type: ignore[call-arg]
    variant = make_embedder(settings)
    plain = HashEmbedder(384)
    assert (variant.model_name, variant.dim) == ("hash-384:b", 384)
    a, b = await variant.embed_one("deploy window"), await plain.embed_one("deploy window")
    assert float(np.dot(a, b)) < 0.5  # the same text, far apart: a search mixing the two finds nothing
    assert float(np.dot(a, await variant.embed_one("deploy window"))) == pytest.approx(1.0)


def test_a_model_name_is_checked_before_anything_is_switched() -> None:
    assert store_model.check_model_name("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    with pytest.raises(InvalidInput, match="not a model name"):
        store_model.check_model_name("x; DROP TABLE memories")


@pytest.mark.parametrize("server", sorted(SEEDS))
async def test_the_reembed_command_switches_each_vector_servers_store_and_every_row(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path, server: str
) -> None:
    await migrate.migrate(database_url, server)
    statements, models = SEEDS[server]
    conn = await asyncpg.connect(database_url)
    try:
        for sql in statements:
            await conn.execute(sql)
        env = server_env(database_url, redis_url, redis_prefix, tmp_path, EMBEDDING_MODEL="hash-384")
        command = [sys.executable, "-m", "servers", "reembed", server, "--model", "hash-384:b", "--batch", "1"]
        with anyio.fail_after(120):
            done = await anyio.run_process(command, env=env, check=False)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert "hash-384:b" in done.stdout.decode()
        rows = [tuple(r) for r in await conn.fetch(models)]
        assert rows
        assert set(rows) == {("hash-384:b", True)}
        row = await conn.fetchrow(f"SELECT model, target_model FROM {server}.store_model")
        assert row is not None
        assert tuple(row) == ("hash-384:b", None)
        with anyio.fail_after(120):
            doctor = await anyio.run_process(
                [sys.executable, "-m", "servers", "doctor", "--skip-model"], env=env, check=False
            )
        assert "embeddings: hash-384:b (EMBEDDING_MODEL here: hash-384)" in doctor.stdout.decode()
    finally:
        await conn.close()
