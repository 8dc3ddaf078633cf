"""Chunkers, path rules, spec handling and the Mermaid checker as plain functions (no MCP, no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import InvalidInput
from common.safefiles import Roots, compile_globs
from servers.documentation import ingest, mermaid, openapi
from servers.documentation.chunking import kind_for_path, markup, parse


def test_markdown_chunks_follow_headings_and_never_split_a_code_fence() -> None:
    code = "```python\n" + "\n".join(f"x_{i} = {i}  # a line of code" for i in range(80)) + "\n```\n"
    text = (
        f"# Guide\n\nIntro paragraph.\n\n## Install\n\nRun pip.\n\n{code}\nAfter the code.\n\nSetext\n------\n\nBody.\n"
    )
    parsed = parse("markdown", text, "guide.md", 300)
    assert parsed.title == "Guide"
    fences = [c for c in parsed.chunks if "```python" in c.text]
    assert len(fences) == 1
    assert fences[0].text.count("```") == 2, "the fence must open and close in the same chunk"
    assert len(fences[0].text) > 300
    assert [h.title for h in parsed.headings] == ["Guide", "Install", "Setext"]
    assert parsed.chunks[-1].heading_path == ("Guide", "Setext")
    assert parsed.chunks[-1].anchor == "setext"
    assert all(parsed.text[c.start : c.end].strip() == c.text for c in parsed.chunks)


def test_a_heading_inside_a_code_fence_is_not_a_heading() -> None:
    parsed = parse("markdown", "# Real\n\n~~~\n# not a heading\n~~~\n", "a.md", 1000)
    assert [h.title for h in parsed.headings] == ["Real"]


def test_long_paragraphs_are_cut_at_sentence_ends() -> None:
    para = " ".join(f"Sentence number {i} says something." for i in range(100))
    parsed = parse("markdown", f"# T\n\n{para}\n", "t.md", 400)
    assert len(parsed.chunks) > 5
    assert all(len(c.text) <= 400 for c in parsed.chunks)
    assert all(c.text.endswith(".") for c in parsed.chunks)


def test_rst_sections_by_underline_style_and_literal_blocks_whole() -> None:
    text = (
        "=====\nTitle\n=====\n\nIntro.\n\nFirst\n-----\n\nExample::\n\n    a = 1\n\n    b = 2\n\nSub\n~~~\n\n"
        ".. note::\n\n   A note.\n\nSecond\n------\n\nEnd.\n"
    )
    parsed = parse("rst", text, "x.rst", 1000)
    assert [(h.level, h.title) for h in parsed.headings] == [(1, "Title"), (2, "First"), (3, "Sub"), (2, "Second")]
    literal = next(c for c in parsed.chunks if "Example::" in c.text)
    assert "a = 1" in literal.text
    assert "b = 2" in literal.text
    assert parsed.chunks[-1].heading_path == ("Title", "Second")


def test_rst_roles_are_removed_from_titles() -> None:
    parsed = parse("rst", ":mod:`json` --- JSON encoder\n============================\n\nText.\n", "json.rst", 1000)
    assert parsed.title == "json — JSON encoder"


def test_sphinx_and_markdown_markup_leaves_headings() -> None:
    assert markup.heading(r"!contextlib --- Utilities for !with\ -statement contexts") == (
        "contextlib — Utilities for with-statement contexts"
    )
    assert markup.heading(r"Importing \* From a Package") == "Importing * From a Package"
    assert (
        markup.heading(":meth:`~socket.socket.recv` and **bold** [link](http://x/y) {#anchor}") == "recv and bold link"
    )
    assert markup.heading(":ref:`the guide <guide-label>`") == "the guide"
    assert markup.unnumbered("6.4.1. Importing * From a Package") == "Importing * From a Package"
    assert markup.unnumbered("F.3. Appendix") == "Appendix"
    signature = "def __init__(self, *args, **kwargs) -> None"
    assert markup.heading(signature) == signature, "code in headings is not emphasis"


def test_embedded_text_is_plain_words_with_its_page_headings_and_api_names() -> None:
    text = (
        ".. function:: lru_cache(maxsize=128)\n\n   Wraps a function with a :term:`memoizing <memoize>` callable,"
        " see :func:`functools.cache` and ``typed``.\n\n   .. versionadded:: 3.2\n\n   Example::\n\n"
        "       @lru_cache\n       def f(): ...\n"
    )
    embedded = ingest.embed_text("functools", ("9.1. functools --- Tools", "Caching"), text, 1000, ("lru_cache",))
    assert embedded.splitlines()[0] == "functools — Tools > Caching"
    assert embedded.splitlines()[1] == "lru_cache"
    body = embedded.splitlines()[2]
    assert "memoizing callable, see functools.cache and typed." in body
    assert "New in version 3.2" in body
    assert "@lru_cache def f(): ..." in body, "code stays"
    assert ":func:" not in body
    assert "``" not in body
    assert ".. " not in body
    assert len(ingest.embed_text("T", (), "word " * 1000, 100)) <= 101
    assert ingest.embed_text("Guide", (), "Body.", 100) == "Guide\nBody."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (".. _label:\n\nTitle\n=====\n\n.. note:: Mind this.\n   :noindex:\n", "Title Mind this."),
        (":func:`~a.b.c` and `the guide <https://x/>`_ and `ref`_", "c and the guide and ref"),
        ("![logo](a.png) [link](http://x/(y)) [ref][1]", "logo link ref"),
        ("``code`` \\* !name **bold** *it* <b>tag</b>", "code * name bold it tag"),
        ("```py\nx  =\t1\n```\n\n\n\nend", "x = 1 end"),
        ("a * b, 3 < 4, wow! ok: yes.. no][ ]( `_", "a * b, 3 < 4, wow! ok: yes.. no][ ]( _"),
    ],
)
def test_flat_is_the_plain_text_on_one_line(text: str, expected: str) -> None:
    assert markup.flat(text) == expected
    assert markup.flat(text) == " ".join(markup.plain(text).split())
    assert "\t" not in markup.plain(text)
    assert "  " not in markup.plain(text)


def test_rst_api_directives_start_chunks_and_become_keys() -> None:
    intro = "Intro text that is long enough to stand alone as a chunk of its own here. " * 3
    text = (
        f"Title\n=====\n\n{intro}\n\n.. function:: first(a)\n\n   Does the first thing.\n\n"
        ".. class:: Second\n\n   The second thing.\n"
    )
    parsed = parse("rst", text, "m.rst", 400)
    keyed = [c for c in parsed.chunks if c.keys]
    assert keyed[0].keys[0] == "first"
    assert keyed[0].text.startswith(".. function:: first(a)"), "an API entry starts its chunk"
    assert "Second" in {k for c in parsed.chunks for k in c.keys}


def test_html_keeps_headings_and_code_and_drops_scripts_and_navigation() -> None:
    html = (
        "<html><head><title>Page</title><script>var x=1;</script></head><body>"
        "<div role='navigation'>Home | Next</div><h1>Main<a class='headerlink'>¶</a></h1><p>Hello <b>world</b>.</p>"
        "<h2>Code</h2><pre>if x:\n    y()</pre></body></html>"
    )
    parsed = parse("html", html, "p.html", 1000)
    assert parsed.title == "Page"
    assert [h.title for h in parsed.headings] == ["Main", "Code"]
    assert "var x" not in parsed.text
    assert "Home" not in parsed.text
    assert "¶" not in parsed.text
    assert "```\nif x:\n    y()\n```" in parsed.text


def test_html_anchors_are_the_pages_own_ids_and_api_entries_are_keys() -> None:
    long = "<p>" + "Words about the module and what it does. " * 12 + "</p>"
    html = (
        "<html><head><title>mod — Python docs</title></head><body>"
        "<section id='module-mod'><h1>mod — tools<a class='headerlink' href='#module-mod'>¶</a></h1>"
        f"{long}<dl class='py function'><dt class='sig' id='mod.run'>mod.run(x)</dt><dd><p>Runs x.</p></dd></dl>"
        "<section id='recipes'><h2>6.1. Recipes</h2><p>Some recipes.</p></section></section>"
        "<div class='sect1' id='SQL-SELECT'><div class='titlepage'><div><h2 class='title'>2.2. Select</h2></div></div>"
        "<p>Selecting rows.</p></div>"
        "<h2><a id='inline-anchor'></a>Inline</h2><p>Text.</p></body></html>"
    )
    parsed = parse("html", html, "mod.html", 500)
    assert [(h.title, h.slug) for h in parsed.headings] == [
        ("mod — tools", "module-mod"),
        ("6.1. Recipes", "recipes"),
        ("2.2. Select", "SQL-SELECT"),
        ("Inline", "inline-anchor"),
    ]
    entry = next(c for c in parsed.chunks if c.keys)
    assert entry.keys == ("mod.run",)
    assert entry.text.startswith("mod.run(x)"), "the entry starts its chunk"
    assert entry.anchor == "module-mod"
    assert "\x00" not in parsed.text
    assert all(parsed.text[c.start : c.end].strip() == c.text for c in parsed.chunks)


def test_python_docstrings_come_with_their_signatures() -> None:
    src = (
        '"""Module doc."""\n\nclass Cache(Base):\n    """Keeps things."""\n\n    def get(self, key: str) -> int:\n'
        '        """Read one."""\n\n    def _private(self):\n        """Hidden."""\n\nasync def fetch(url, *, timeout=5):\n'
        '    """Fetch a URL."""\n'
    )
    parsed = parse("python", src, "pkg/cache.py", 1000)
    assert parsed.title == "pkg.cache"
    titles = [h.title for h in parsed.headings]
    assert titles == [
        "pkg.cache",
        "class Cache(Base)",
        "def get(self, key: str) -> int",
        "async def fetch(url, *, timeout=5)",
    ]
    assert "Hidden" not in parsed.text
    with pytest.raises(SyntaxError):
        parse("python", "def broken(:\n", "b.py", 1000)


def test_file_kinds_come_from_the_name() -> None:
    assert kind_for_path("library/json.rst.txt") == "rst"
    assert kind_for_path("README.md") == "markdown"
    assert kind_for_path("notes.txt") == "text"
    assert kind_for_path("image.png") is None


def test_the_default_and_usual_globs_match_paths_and_bare_names() -> None:
    default = compile_globs(ingest.DEFAULT_INCLUDE)
    assert default.match("a/b/c.md")
    assert default.match("c.md")
    assert default.match("x/y.py")
    assert compile_globs(["**/build/**"]).match("deep/x/build/y.txt")
    assert compile_globs(["secret.md"]).match("x/secret.md")
    assert not compile_globs(["*.md"]).match("a/b.rst")


def test_roots_must_be_configured_and_contain_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="DOCUMENTATION_ALLOWED_ROOTS"):
        Roots([], ingest.ROOTS_SETTING).resolve(str(tmp_path), kind="dir")
    inside = tmp_path / "in"
    inside.mkdir()
    (tmp_path / "out").mkdir()
    (inside / "link").symlink_to(tmp_path / "out")
    roots = Roots([inside], ingest.ROOTS_SETTING)
    assert roots.resolve(str(inside), kind="dir") == inside.resolve()
    with pytest.raises(InvalidInput, match="after resolving symbolic links"):
        roots.resolve(str(inside / "link"), kind="dir")
    with pytest.raises(InvalidInput, match="outside the allowed folders"):
        roots.resolve(str(tmp_path / "out"), kind="dir")


def test_local_refs_resolve_and_cycles_stop() -> None:
    spec = {
        "openapi": "3.0.3",
        "components": {
            "schemas": {
                "Node": {
                    "type": "object",
                    "properties": {"children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}},
                }
            }
        },
    }
    node = openapi.resolve({"$ref": "#/components/schemas/Node"}, spec)
    assert node["properties"]["children"]["items"] == {"$ref": "#/components/schemas/Node", "x-circular": True}
    with pytest.raises(InvalidInput, match="points at nothing"):
        openapi.resolve({"$ref": "#/components/schemas/Missing"}, spec)


def test_diff_reports_added_removed_and_changed() -> None:
    assert openapi.diff({"GET /a": "1", "GET /b": "2"}, {"GET /b": "3", "POST /c": "4"}) == (
        ["POST /c"],
        ["GET /a"],
        ["GET /b"],
    )


def test_mermaid_checker_accepts_what_we_emit_and_refuses_broken_diagrams() -> None:
    eps = [{"method": "GET", "path": '/a/{id} "x"', "tags": ["t 1"]}, {"method": "POST", "path": "/b", "tags": []}]
    assert mermaid.check(mermaid.overview('My "API"', eps)) == []
    schemas = {"Pet": {"properties": {"id": {"type": "integer"}, "owner": {"$ref": "#/definitions/User"}}}, "User": {}}
    diagram = mermaid.schema_diagram(schemas)
    assert mermaid.check(diagram) == []
    assert 'Pet "1" --> "1" User : owner' in diagram
    assert mermaid.check("pie\n") != []
    assert any("never closed" in p for p in mermaid.check('flowchart LR\nsubgraph a["x"]\n'))
    assert any("cannot parse" in p for p in mermaid.check('flowchart LR\na["unbalanced]\n'))
    assert any("closes nothing" in p for p in mermaid.check("classDiagram\n}\n"))
