"""Docstrings cleaned into plain-prose answers: no reST/markdown debris, no doctests, sensible length."""

from __future__ import annotations

import re

MIN_CHARS = 60
MAX_CHARS = 600

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)(?:\s*<[^>]*>)?`")  # :class:`~a.B` -> a.B
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")  # [text](url) -> text
_REST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_+")  # `text <url>`_ -> text
_DOUBLE_TICKS = re.compile(r"``([^`]+)``")
_STARTS_BADLY = ("Args", "Arguments", "Parameters", "Returns", "Raises", "Example", "Deprecated", "TODO", "Note",
                 "Warning", "See ", "Usage", ":param", "..", ">>>", "|", "#", "-", "*", "Copyright",
                 # answers that only point elsewhere teach nothing: "Same as svcs.Container.get_pings, but ..."
                 "Same as", "Alias", "Backport", "Copy of", "Like ", "Equivalent to", "Shortcut for")
# reST/MyST debris: roles like {attr}`x`, heading underlines, placeholders, doctests, links
_DEBRIS = (">>>", "::", ".. ", "`_", "{", "}", "~~~", "===", "---", "http://", "https://", "TODO", "\t")


def _plain(paragraph: str) -> str:
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).count("~") else m.group(1), paragraph)
    text = _REST_LINK.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _DOUBLE_TICKS.sub(r"`\1`", text)
    text = text.replace("**", "")
    text = re.sub(r"(?<![\w*])\*(\w[^*]*?)\*(?![\w*])", r"\1", text)  # *emphasis* -> emphasis
    return " ".join(text.split())


def _sentences_within(text: str, limit: int) -> str:
    """Cut at the last sentence end that keeps the text within `limit` characters."""
    if len(text) <= limit:
        return text
    cut = max(text.rfind(". ", 0, limit), text.rfind("? ", 0, limit))
    return text[: cut + 1] if cut > 0 else ""


def clean_docstring(doc: str, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> str | None:
    """The leading prose of a docstring as a clean answer, or None when it is not good prose."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", doc.strip()) if p.strip()]
    taken = []
    for paragraph in paragraphs[:3]:
        if paragraph.startswith(_STARTS_BADLY) or any(d in paragraph for d in _DEBRIS):
            break
        if re.search(r"^\s*[-*]\s|^\s*\w+\s*:\s*$|^\s{4,}", paragraph, re.MULTILINE):
            break  # a list, a field block or an indented code block
        if taken and not taken[-1].endswith((".", "!", "?", ":")):
            break  # the paragraph before did not end a sentence: joining would run two texts together
        taken.append(_plain(paragraph))
        if sum(map(len, taken)) >= min_chars:
            break
    text = _sentences_within(" ".join(taken), max_chars)
    if len(text) < min_chars or not text[0].isupper() or not text.endswith((".", "!", ")")) or text.endswith(".."):
        return None
    if text.count("`") % 2 or re.search(r"\b(self|cls)\.\w|\(\)\s*$|[<>]{2}", text):
        return None
    return text
