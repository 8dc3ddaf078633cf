"""Python source: module, class and function docstrings with their signatures, as Markdown."""

from __future__ import annotations

import ast

from servers.documentation.chunking import markdown
from servers.documentation.chunking.blocks import Parsed


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
    return f"{prefix} {node.name}({ast.unparse(node.args)}){returns}"


def _class_signature(node: ast.ClassDef) -> str:
    bases = [ast.unparse(b) for b in node.bases] + [ast.unparse(k) for k in node.keywords]
    return f"class {node.name}({', '.join(bases)})" if bases else f"class {node.name}"


def _escape(doc: str) -> str:
    # A docstring line starting with '#' or a fence must not become a heading or open a code block.
    return "\n".join((" " + line[3:]) if line.lstrip().startswith("```") else line for line in doc.splitlines())


def _walk(body: list[ast.stmt], level: int, out: list[str]) -> None:
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("_") and node.name != "__init__":
                continue
            doc = ast.get_docstring(node)
            sig = _class_signature(node) if isinstance(node, ast.ClassDef) else _signature(node)
            if doc:
                out.append(f"{'#' * min(level, 6)} {sig}\n\n{_escape(doc)}\n")
            if isinstance(node, ast.ClassDef):
                _walk(node.body, level + 1, out)


def to_markdown(source: str, module: str) -> str:
    """The docstrings of ``source`` as Markdown; raises SyntaxError for code that does not parse."""
    tree = ast.parse(source)
    out = [f"# {module}\n"]
    doc = ast.get_docstring(tree)
    if doc:
        out.append(_escape(doc) + "\n")
    _walk(tree.body, 2, out)
    return "\n".join(out)


def parse(source: str, title: str, limit: int) -> Parsed:
    text = to_markdown(source, title)
    parsed = markdown.parse(text, title, limit)
    parsed.title = title
    return parsed
