"""The held-out question set of the documentation search evaluation is well formed: every target page is in
the corpus spec and carries the target section (anchor id and heading), questions are unique, and none copies
five consecutive words from its target section (questions paraphrase; a copy would let keyword search win).

Needs Debian's postgresql-doc-15 (`apt-get install postgresql-doc-15`); reads only the target pages, so it is
fast.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from tests.eval.html_sections import HtmlSection, sections, shared_run
from tests.eval.search_eval import load_questions, norm_heading

HERE = Path(__file__).parent / "questions"
QUESTIONS = HERE / "postgresql_heldout.jsonl"
SPEC = json.loads((HERE / "postgresql_heldout.corpus.json").read_text(encoding="utf-8"))
CORPUS = Path(SPEC["corpus"])
KINDS = {"how-to", "concept", "function-lookup", "setting-lookup", "performance", "error"}


@pytest.fixture(scope="module")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"{CORPUS} is missing: install Debian's postgresql-doc-15 (`apt-get install postgresql-doc-15`).")
    return CORPUS


@cache
def page_sections(page: str) -> dict[str, HtmlSection]:
    return {s.anchor: s for s in sections((CORPUS / page).read_text(encoding="utf-8"))}


def test_questions_are_many_unique_and_complete() -> None:
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 80
    for row in rows:
        assert set(row) == {"id", "question", "kind", "page", "section", "anchor"}, row
        assert all(isinstance(v, str) and v.strip() for v in row.values()), row
        assert row["kind"] in KINDS, row
    assert len({r["id"] for r in rows}) == len(rows)
    normalised = [" ".join(r["question"].casefold().split()) for r in rows]
    assert len(set(normalised)) == len(rows), "a question is repeated"
    assert len(load_questions(QUESTIONS)) == len(rows)


def test_every_target_page_is_in_the_corpus_and_holds_its_section(corpus: Path) -> None:
    included = {p.name for pattern in SPEC["include"] for p in corpus.glob(pattern)}
    problems = []
    for q in load_questions(QUESTIONS):
        if q.page not in included:
            problems.append(f"{q.id}: {q.page} is not matched by the corpus spec's include globs")
            continue
        found = page_sections(q.page).get(q.anchor or "")
        if found is None:
            problems.append(f"{q.id}: {q.page} has no section with id {q.anchor!r}")
        elif norm_heading(found.heading) != norm_heading(q.section or ""):
            problems.append(f"{q.id}: section {q.anchor} is headed {found.heading!r}, not {q.section!r}")
    assert not problems, "\n".join(problems)


def test_no_question_copies_five_words_of_its_target_section(corpus: Path) -> None:
    copies = []
    for q in load_questions(QUESTIONS):
        section = page_sections(q.page).get(q.anchor or "")
        assert section is not None, q.id
        run = shared_run(q.question, section.text, 5)
        if run:
            copies.append(f"{q.id}: {run!r}")
    assert not copies, "questions copying their target text:\n" + "\n".join(copies)


def test_copy_check_can_fail() -> None:
    text = "Creating an index can interfere with regular operation of a database."
    assert (
        shared_run("Why do they say creating an index can interfere with my app?", text)
        == "creating an index can interfere"
    )
    assert shared_run("does building an index block writes?", text) is None
