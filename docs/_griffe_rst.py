r"""Griffe extension for the API reference: the docstrings' reStructuredText bits as Markdown.

fracrisk's docstrings are numpydoc with Sphinx roles and directives, which mkdocstrings
would print as they are (``:class:`~fracrisk.data.Cohort```). Before the docstrings are
parsed this rewrites, in memory only (the source files are not touched):

* numpydoc's line continuation (a parameter line ending in ", \") joined, and the
  docstring dedented again (a continued line at column 0 stops Python's dedenting);
* ``:class:`~a.b.C``` (and ``func``, ``meth``, ``attr``, ``mod``, ``data``, ``exc``,
  ``obj``) as inline code: ``C``, or ``a.b.C`` without the tilde;
* ``:math:`x``` as ``\(x\)`` and a ``.. math::`` block as ``\[ ... \]``, rendered by
  MathJax (``pymdownx.arithmatex``);
* ``.. code-block:: lang`` as a fenced code block;
* ``#:`` comments above a constant (Sphinx's attribute docstrings) as its docstring.

Loaded by ``mkdocs.yml`` (``extensions: [docs/_griffe_rst.py]``); not part of the package.
"""

from __future__ import annotations

import inspect
import re
from functools import cache
from pathlib import Path

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")
_CONTINUATION = re.compile(r"(?<=, )\\\n[ \t]*")  # a line ending in ", \"
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. (?P<name>math|code-block)::\s*(?P<arg>.*)$")


def _role(match: re.Match) -> str:
    target = match.group(1).strip()
    if target.endswith(">") and "<" in target:  # :func:`text <target>`
        return f"`{target[: target.index('<')].strip()}`"
    target = target.lstrip("!")
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def _blocks(text: str) -> str:
    """Rewrite ``.. math::`` and ``.. code-block::`` directives with their indented bodies."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, name, arg = match["indent"], match["name"], match["arg"].strip()
        body: list[str] = []
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        depth = min((len(x) - len(x.lstrip()) for x in body if x.strip()), default=0)
        body = [x[depth:] for x in body]
        if name == "math":
            content = [x for x in ([arg] if arg else []) + body if x.strip()]
            block = ["\\[", *content, "\\]"]
        else:
            block = [f"```{arg}", *body, "```"]
        out.extend(["", *(indent + x if x else x for x in block), ""])
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with its Sphinx roles and directives as Markdown."""
    if _CONTINUATION.search(text):
        text = inspect.cleandoc(_CONTINUATION.sub("", text))
    text = _blocks(text)
    text = _MATH.sub(lambda m: f"\\({m.group(1)}\\)", text)
    return _ROLE.sub(_role, text)


@cache
def _source_lines(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def _comment_docstring(obj: griffe.Object) -> str | None:
    """The ``#:`` comment lines right above an attribute, or None."""
    try:
        path, lineno = obj.filepath, obj.lineno
    except (AttributeError, griffe.BuiltinModuleError):
        return None
    if not isinstance(path, Path) or not lineno:
        return None
    lines, comment = _source_lines(str(path)), []
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith("#:"):
        comment.insert(0, lines[i].strip()[2:].strip())
        i -= 1
    return "\n".join(comment) or None


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring before mkdocstrings parses it."""

    def on_instance(self, *, obj: griffe.Object, agent, **kwargs) -> None:  # noqa: D102
        if obj.docstring is None and obj.is_attribute:
            text = _comment_docstring(obj)
            if text:
                obj.docstring = griffe.Docstring(
                    text,
                    lineno=obj.lineno,
                    endlineno=obj.lineno,
                    parent=obj,
                    parser=agent.docstring_parser,
                    parser_options=agent.docstring_options,
                )
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
