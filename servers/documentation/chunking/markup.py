"""Markup out of headings and of the text the model embeds: reST/Sphinx roles, escapes, Markdown syntax.

The stored document keeps its markup (it is what ``read_document`` returns); what is removed here is
only what would make a heading or an embedded chunk read unlike the words a person searches with,
e.g. ``!contextlib --- Utilities for !with\\ -statement contexts`` or ``Importing \\* From a Package``.
Code stays: a code sample is often the best match for a "how do I" question.
"""

from __future__ import annotations

import re

# :func:`title <target>`, :meth:`~a.b.c`, :class:`!name` -> the words a reader sees.
_ROLE = re.compile(r":[\w.+-]+(?::[\w.+-]+)*:`([^`]*)`")
_LINK_RST = re.compile(r"`([^`<]+?)\s*<[^>]*>`_{1,2}")
_REF_RST = re.compile(r"`([^`]+)`_{1,2}")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\((?:[^()]|\([^)]*\))*\)")
_MD_REFLINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_ATTR = re.compile(r"\s*\{#[\w:.-]+\}\s*$")
_TAG = re.compile(r"</?[A-Za-z][^>]{0,200}>")
_EMPH = re.compile(r"(?<![\w*])(\*{1,2})(?=[^\s*])(.+?)(?<=[^\s*])\1(?![\w*])")
_NUMBER = re.compile(r"^\s*(?:[A-Z]\.|\d+\.)(?:\d+\.)*\s+")
_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$", re.M)
_TARGET = re.compile(r"^\s*\.\.\s+(?:_[^:]+:|\|[^|]+\|).*$|^\s*\.\.\s*$", re.M)
_FIELD_OPT = re.compile(
    r"^\s+:(?:noindex|module|platform|synopsis|deprecated|nosignatures|no-index|annotation):.*$", re.M
)
_FENCE = re.compile(r"^ {0,3}(```|~~~).*$", re.M)
_ADORNMENT = re.compile(r"^\s*[=\-~^\"'`#*+]{4,}\s*$", re.M)  # reST section underlines
_ESCAPED = re.compile(r"\\([*_`|\\<>#\[\]()!-])")
_BANG = re.compile(r"(?<![\w`])!(?=[A-Za-z_])")
_SPACES = re.compile(r"[ \t]{2,}|\t")
_BLANKS = re.compile(r"\n{3,}")
_SKIPPED = {"index", "toctree", "highlight", "sectionauthor", "moduleauthor", "only", "raw", "include", "image"}
_VERSIONED = {
    "versionadded": "New in version",
    "versionchanged": "Changed in version",
    "deprecated": "Deprecated since",
}

#: Sphinx/reST directives that define an API object; their argument is a name to match exactly.
API_DIRECTIVES = frozenset(
    {
        "function",
        "class",
        "method",
        "classmethod",
        "staticmethod",
        "attribute",
        "data",
        "exception",
        "decorator",
        "decoratormethod",
        "module",
        "property",
        "coroutinefunction",
        "coroutinemethod",
        "abstractmethod",
        "opcode",
        "envvar",
        "option",
        "describe",
        "c:function",
        "c:type",
        "c:macro",
        "c:member",
        "c:var",
        "py:function",
        "py:class",
        "py:method",
        "py:attribute",
        "py:data",
        "py:exception",
        "py:module",
    }
)
_API_NAME = re.compile(r"[A-Za-z_][\w.:-]*")


def _role(m: re.Match[str]) -> str:
    text = m.group(1).strip()
    if "<" in text and text.endswith(">"):  # :ref:`title <label>` shows the title
        title = text[: text.rfind("<")].strip()
        if title:
            return title
        text = text[text.rfind("<") + 1 : -1]
    if text.startswith("~"):  # :meth:`~a.b.c` shows c
        text = text[1:].rsplit(".", 1)[-1]
    return text.lstrip("!")


def inline(text: str) -> str:
    """Inline markup of reST and Markdown out of ``text``; line breaks are kept.

    Each pattern runs only when the text holds a literal that every match of it contains: search
    strips the markup of every hit's chunk for its snippet, and most chunks lack most kinds of markup.
    """
    if ":`" in text:
        text = _ROLE.sub(_role, text)
    if "`_" in text:
        text = _LINK_RST.sub(r"\1", text)
        text = _REF_RST.sub(r"\1", text)
    if "](" in text:
        text = _MD_IMAGE.sub(r"\1", text)
        text = _MD_LINK.sub(r"\1", text)
    if "][" in text:
        text = _MD_REFLINK.sub(r"\1", text)
    text = text.replace("``", "").replace("\\ ", "").replace("¶", "")
    if "\\" in text:
        text = _ESCAPED.sub(r"\1", text)
    if "!" in text:
        text = _BANG.sub("", text)  # Sphinx's "!name": a name that is not a link
    text = text.replace("`", "")
    if "*" in text:
        text = _EMPH.sub(r"\2", text)
    return _TAG.sub("", text) if "<" in text else text


def heading(title: str) -> str:
    """A heading as a reader sees it: ``!contextlib --- Utilities`` -> ``contextlib — Utilities``."""
    text = inline(_ATTR.sub("", title))
    text = text.replace(" --- ", " — ").replace(" -- ", " – ")
    return " ".join(text.split()).strip(" #")


def unnumbered(title: str) -> str:
    """A heading without its section number (``6.4.1. Packages`` -> ``Packages``): numbers match no query."""
    return _NUMBER.sub("", title) or title


def _directive(m: re.Match[str]) -> str:
    indent, name, arg = m.group(1), m.group(2).lower(), m.group(3).strip()
    if name in _SKIPPED:
        return ""
    if name in _VERSIONED:
        return f"{indent}{_VERSIONED[name]} {arg}"
    if name in API_DIRECTIVES or name.startswith(("py:", "c:", "cpp:", "js:", "rst:")):
        return f"{indent}{arg}"
    return f"{indent}{arg}" if arg and name in {"note", "warning", "seealso", "admonition", "rubric", "topic"} else ""


def _unmarked(text: str) -> str:
    """``text`` without markup, its whitespace as it was (the patterns run as in :func:`inline`)."""
    if ".." in text:
        text = _TARGET.sub("", text)
        text = _DIRECTIVE.sub(_directive, text)
    if ":" in text:
        text = _FIELD_OPT.sub("", text)
    if "```" in text or "~~~" in text:
        text = _FENCE.sub("", text)
    return _ADORNMENT.sub("", inline(text))


def plain(text: str) -> str:
    """Text for the model: markup removed, code kept (without its fences), blank runs collapsed."""
    return _BLANKS.sub("\n\n", _SPACES.sub(" ", _unmarked(text))).strip()


def flat(text: str) -> str:
    """:func:`plain` on one line, each run of whitespace one space (what embedded texts and snippets show)."""
    return " ".join(_unmarked(text).split())


def api_names(text: str) -> list[str]:
    """Names defined by API directives in reST text (``.. function:: lru_cache(maxsize)`` -> ``lru_cache``)."""
    out: list[str] = []
    for m in _DIRECTIVE.finditer(text):
        if m.group(2).lower() in API_DIRECTIVES:
            name = _API_NAME.match(m.group(3).strip())
            if name:
                out.append(name.group(0))
    return out
