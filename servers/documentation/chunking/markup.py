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
_SPACES = re.compile(r"[ \t]+")
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
    """Inline markup of reST and Markdown out of ``text``; line breaks are kept."""
    text = _ROLE.sub(_role, text)
    text = _LINK_RST.sub(r"\1", text)
    text = _REF_RST.sub(r"\1", text)
    text = _MD_IMAGE.sub(r"\1", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_REFLINK.sub(r"\1", text)
    text = text.replace("``", "").replace("\\ ", "").replace("¶", "")
    text = re.sub(r"\\([*_`|\\<>#\[\]()!-])", r"\1", text)
    text = re.sub(r"(?<![\w`])!(?=[A-Za-z_])", "", text)  # Sphinx's "!name": a name that is not a link
    text = text.replace("`", "")
    text = _EMPH.sub(r"\2", text)
    return _TAG.sub("", text)


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


def plain(text: str) -> str:
    """Text for the model: markup removed, code kept (without its fences), blank runs collapsed."""
    text = _TARGET.sub("", text)
    text = _DIRECTIVE.sub(_directive, text)
    text = _FIELD_OPT.sub("", text)
    text = _FENCE.sub("", text)
    text = inline(text)
    text = re.sub(r"^\s*[=\-~^\"'`#*+]{4,}\s*$", "", text, flags=re.M)  # reST adornment lines
    text = _SPACES.sub(" ", text)
    return _BLANKS.sub("\n\n", text).strip()


def api_names(text: str) -> list[str]:
    """Names defined by API directives in reST text (``.. function:: lru_cache(maxsize)`` -> ``lru_cache``)."""
    out: list[str] = []
    for m in _DIRECTIVE.finditer(text):
        if m.group(2).lower() in API_DIRECTIVES:
            name = _API_NAME.match(m.group(3).strip())
            if name:
                out.append(name.group(0))
    return out
