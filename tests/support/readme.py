"""The repository's root, its README and the README's fenced blocks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def fenced(language: str, text: str = README) -> list[str]:
    """The contents of the ``language`` fenced blocks of ``text`` (the README), in order."""
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def section(title: str, text: str = README) -> str:
    """The README's ``## title`` section, up to the next ``## `` heading."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]
