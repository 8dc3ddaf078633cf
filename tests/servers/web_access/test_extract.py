"""Extraction of HTML, JSON, text, PDF and binary bodies, and paging through a stored document."""

from __future__ import annotations

import io
import json

import pytest
from pypdf import PdfWriter
from pypdf.generic import ContentStream, DictionaryObject, NameObject

from common.errors import InvalidInput
from servers.web_access import extract as ex
from servers.web_access.extract import extract, page, sniff_kind

GUIDE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Install Guide | Example</title>
<style>body { color: red }</style><script>var tracking = "do not show";</script></head><body>
<nav><a href="/">Home</a> <a href="/about">About</a></nav>
<article>
<h1>Installing the widget</h1>
<p>The widget is a small tool that does one thing well. This guide walks through installing it on a fresh
machine, with <a href="https://example.org/ref">the reference</a> for the details you may need later.</p>
<h2>Requirements</h2>
<ul><li>Python 3.11 or newer</li><li>A working compiler</li><li>About 20 MB of disk</li></ul>
<h2>Steps</h2>
<ol><li>Download the archive</li><li>Unpack it into a folder</li></ol>
<pre><code>pip install widget
widget --version</code></pre>
<h2>Versions</h2>
<table><tr><th>Version</th><th>Released</th></tr><tr><td>1.0</td><td>2025</td></tr><tr><td>2.0</td><td>2026</td></tr></table>
<p>That is all there is to it. If something goes wrong, read the troubleshooting section of the manual,
which covers the common errors in depth and explains how to report a new one.</p>
</article>
<footer>Copyright 2026 Example Corp</footer>
</body></html>"""


def _assert_structure_kept(markdown: str) -> None:
    assert "# Installing the widget" in markdown
    assert "## Requirements" in markdown
    assert "- Python 3.11 or newer" in markdown
    assert "1. Download the archive" in markdown
    assert "```" in markdown
    assert "pip install widget\nwidget --version" in markdown
    assert "| Version | Released |" in markdown
    assert "| 2.0 | 2026 |" in markdown
    assert "tracking" not in markdown
    assert "color: red" not in markdown


def test_html_becomes_markdown_with_headings_lists_code_and_tables() -> None:
    result = extract(GUIDE.encode(), "text/html; charset=utf-8", url="https://example.com/guide")
    assert result.kind == "html"
    assert result.format == "markdown"
    assert result.extractor == "trafilatura"
    assert result.title in ("Installing the widget", "Install Guide | Example")
    _assert_structure_kept(result.content)
    assert "[the reference](https://example.org/ref)" in result.content
    assert "Copyright 2026" not in result.content, "boilerplate is left out"


def test_links_can_be_left_out_of_the_markdown() -> None:
    result = extract(GUIDE.encode(), "text/html", include_links=False)
    assert "the reference" in result.content
    assert "](" not in result.content


def test_readability_and_markdownify_take_over_when_trafilatura_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "_with_trafilatura", lambda html, url, links: None)
    result = extract(GUIDE.encode(), "text/html")
    assert result.extractor == "readability"
    _assert_structure_kept(result.content)
    assert "[the reference](https://example.org/ref)" in result.content


def test_visible_text_is_the_last_resort_when_no_extractor_finds_content(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "_with_trafilatura", lambda html, url, links: None)
    monkeypatch.setattr(ex, "_with_readability", lambda html, url, links: None)
    result = extract(GUIDE.encode(), "text/html")
    assert result.extractor == "visible-text"
    assert "Installing the widget\n" in result.content
    assert "Version Released" in result.content


def test_an_empty_page_says_there_is_nothing_readable() -> None:
    result = extract(b"<html><body><script>x()</script></body></html>", "text/html")
    assert result.content == ""
    assert any("No readable text" in note for note in result.notes)


def test_raw_text_mode_gives_every_visible_line_without_scripts() -> None:
    result = extract(GUIDE.encode(), "text/html", mode="text")
    assert result.format == "text"
    lines = result.content.splitlines()
    assert "Home About" in lines
    assert "Requirements" in lines
    assert "Python 3.11 or newer" in lines
    assert "Copyright 2026 Example Corp" in lines
    assert "tracking" not in result.content
    assert "color: red" not in result.content


def test_raw_html_mode_returns_the_markup_and_its_title() -> None:
    result = extract(GUIDE.encode(), "text/html", mode="html")
    assert result.format == "html"
    assert result.content == GUIDE
    assert result.title == "Install Guide | Example"


def test_the_charset_comes_from_the_header_or_the_meta_tag() -> None:
    body = "<html><head><title>Caf\u00e9</title></head><body><p>cr\u00e8me br\u00fbl\u00e9e</p></body></html>"
    latin = body.encode("latin-1")
    assert "cr\u00e8me br\u00fbl\u00e9e" in extract(latin, "text/html; charset=ISO-8859-1", mode="text").content
    meta = body.replace("<head>", '<head><meta charset="windows-1252">').encode("cp1252")
    assert extract(meta, "text/html", mode="html").title == "Caf\u00e9"


def test_json_is_pretty_printed_and_bad_json_is_shown_as_it_came() -> None:
    good = extract(b'{"b":[1,2],"a":"\xc3\xa9"}', "application/json")
    assert good.format == "json"
    assert json.loads(good.content) == {"b": [1, 2], "a": "\u00e9"}
    assert '\n  "b": [\n    1,' in good.content
    problem = extract(b'{"cut": [1, 2', "application/problem+json")
    assert problem.format == "text"
    assert problem.content == '{"cut": [1, 2'
    assert problem.notes


def _pdf(pages: int, title: str | None = None) -> bytes:
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for number in range(1, pages + 1):
        pdf_page = writer.add_blank_page(612, 792)
        pdf_page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})  # fmt: skip
        stream = ContentStream(None, writer)
        stream.set_data(f"BT /F1 12 Tf 72 720 Td (Page {number} says hello) Tj ET".encode())
        pdf_page.replace_contents(stream)
    if title:
        writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_text_is_read_page_by_page_up_to_the_page_bound() -> None:
    result = extract(_pdf(3, "Tiny report"), "application/pdf", max_pdf_pages=2)
    assert result.kind == "pdf"
    assert result.extractor == "pypdf"
    assert result.title == "Tiny report"
    assert "Page 1 says hello" in result.content
    assert "Page 2 says hello" in result.content
    assert "Page 3" not in result.content
    assert result.notes == ["Only the first 2 of 3 pages were read."]


def test_a_pdf_is_recognised_by_its_bytes_even_with_a_generic_type() -> None:
    assert extract(_pdf(1), "application/octet-stream").content == "Page 1 says hello"


def test_a_cut_pdf_gives_a_clear_description_not_garbage() -> None:
    data = _pdf(2)
    result = extract(data[:200], "application/pdf", truncated=True)
    assert result.format == "description"
    assert result.content.startswith("Binary content (application/pdf, 200 bytes")
    assert any("cut at the size ceiling" in note for note in result.notes)


@pytest.mark.parametrize(
    ("content_type", "body", "kind"),
    [
        ("image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "binary"),
        ("application/octet-stream", bytes(range(256)) * 4, "binary"),
        ("application/zip", b"PK\x03\x04hello", "binary"),
        (None, b"<!DOCTYPE html><html><body>hi</body></html>", "html"),
        ("application/octet-stream", b"plain words here\n", "text"),
        (None, b'{"a": 1}', "json"),
        ("text/csv", b"a,b\n1,2\n", "text"),
        ("application/rss+xml", b"<rss/>", "text"),
        ("application/vnd.api+json", b"{}", "json"),
        ("application/xhtml+xml", b"<html/>", "html"),
    ],
)
def test_kinds_are_sniffed_from_type_and_bytes(content_type: str | None, body: bytes, kind: str) -> None:
    assert sniff_kind(content_type, body) == kind


def test_binary_bodies_are_described_with_type_and_size() -> None:
    result = extract(b"\x89PNG\r\n\x1a\n" + b"\0" * 1000, "image/png")
    assert result.format == "description"
    assert result.content == "Binary content (image/png, 1,008 bytes) is not shown as text."


def test_plain_text_comes_back_unchanged() -> None:
    assert extract(b"line one\nline two\n", "text/plain").content == "line one\nline two\n"


def test_paging_covers_the_text_exactly_once_and_breaks_at_lines() -> None:
    text = "\n".join(f"line {i:03d} " + "x" * 40 for i in range(200))
    pieces = []
    start: int | None = 0
    while start is not None:
        piece, total, truncated, next_start = page(text, start, 1000)
        assert total == len(text)
        assert len(piece) <= 1000
        assert truncated == (next_start is not None)
        if truncated:
            assert piece.endswith("\n"), "a cut falls at a line break when one is near the end"
        pieces.append(piece)
        start = next_start
    assert "".join(pieces) == text
    assert len(pieces) > 5


def test_paging_arithmetic_at_the_edges() -> None:
    assert page("abcdef", 0, 10) == ("abcdef", 6, False, None)
    assert page("abcdef", 2, 2) == ("cd", 6, True, 4)
    assert page("abcdef", 4, 2) == ("ef", 6, False, None)
    assert page("", 0, 5) == ("", 0, False, None)
    assert page("word " * 10, 0, 12) == ("word word ", 50, True, 10)
    with pytest.raises(InvalidInput, match="past the end"):
        page("abcdef", 6, 2)
    with pytest.raises(InvalidInput):
        page("abcdef", -1, 2)
    with pytest.raises(InvalidInput):
        page("abcdef", 0, 0)
