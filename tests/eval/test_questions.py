"""The evaluation's question sets are well formed: every target page is in the set's corpus spec and carries the
target section (anchor id and heading), questions are unique, and none copies five consecutive words from its
target section (questions paraphrase; a copy would let keyword search win).

Two sets: the held-out one over the PostgreSQL 15 manual (Debian's postgresql-doc-15) and the harder development
set over the Python 3.11 HTML docs (Debian's python3.11-doc). Reads only the target pages, so it is fast.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from tests.eval.html_sections import HtmlSection, sections, shared_run
from tests.eval.search_eval import load_questions, norm_heading

HERE = Path(__file__).parent / "questions"
#: question file stem -> the Debian package that installs its corpus
SETS = {"postgresql_heldout": "postgresql-doc-15", "python_hard_dev": "python3.11-doc"}
KINDS = {"how-to", "concept", "function-lookup", "setting-lookup", "performance", "error"}


def spec(name: str) -> dict[str, list[str] | str]:
    loaded: dict[str, list[str] | str] = json.loads((HERE / f"{name}.corpus.json").read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(params=sorted(SETS))
def question_set(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def corpus_of(name: str) -> Path:
    corpus = Path(str(spec(name)["corpus"]))
    if not corpus.is_dir():
        pytest.fail(f"{corpus} is missing: install Debian's {SETS[name]} (`apt-get install {SETS[name]}`).")
    return corpus


@cache
def page_sections(corpus: Path, page: str) -> dict[str, HtmlSection]:
    return {s.anchor: s for s in sections((corpus / page).read_text(encoding="utf-8"))}


def test_questions_are_many_unique_and_complete(question_set: str) -> None:
    path = HERE / f"{question_set}.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 80
    for row in rows:
        assert set(row) == {"id", "question", "kind", "page", "section", "anchor"}, row
        assert all(isinstance(v, str) and v.strip() for v in row.values()), row
        assert row["kind"] in KINDS, row
    assert len({r["id"] for r in rows}) == len(rows)
    normalised = [" ".join(r["question"].casefold().split()) for r in rows]
    assert len(set(normalised)) == len(rows), "a question is repeated"
    assert len(load_questions(path)) == len(rows)


def test_every_target_page_is_in_the_corpus_and_holds_its_section(question_set: str) -> None:
    corpus = corpus_of(question_set)
    included = {
        p.relative_to(corpus).as_posix() for pattern in spec(question_set)["include"] for p in corpus.glob(pattern)
    }
    problems = []
    for q in load_questions(HERE / f"{question_set}.jsonl"):
        if q.page not in included:
            problems.append(f"{q.id}: {q.page} is not matched by the corpus spec's include globs")
            continue
        found = page_sections(corpus, q.page).get(q.anchor or "")
        if found is None:
            problems.append(f"{q.id}: {q.page} has no section with id {q.anchor!r}")
        elif norm_heading(found.heading) != norm_heading(q.section or ""):
            problems.append(f"{q.id}: section {q.anchor} is headed {found.heading!r}, not {q.section!r}")
    assert not problems, "\n".join(problems)


def test_no_question_copies_five_words_of_its_target_section(question_set: str) -> None:
    corpus = corpus_of(question_set)
    copies = []
    for q in load_questions(HERE / f"{question_set}.jsonl"):
        section = page_sections(corpus, q.page).get(q.anchor or "")
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


def test_sphinx_sections_are_found() -> None:
    html = '<section id="a"><h1>Top</h1><p>intro</p><section id="b"><h2>Sub</h2><p>body</p></section></section>'
    found = {s.anchor: (s.heading, s.text) for s in sections(html)}
    assert found == {"a": ("Top", "Top intro Sub body"), "b": ("Sub", "Sub body")}
