"""Every README code block runs as pasted: shell blocks parse, no flag is swallowed by a comment, Python compiles."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(f"docs/{name}" for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))


def code_blocks(path: str) -> list[tuple[str, int, str]]:
    """(language, first line number, text) of each fenced block."""
    blocks, lang, start, lines = [], None, 0, []
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fence = re.match(r"^```(\w*)", line)
            if fence and lang is None:
                lang, start, lines = fence.group(1) or "text", number + 1, []
            elif fence:
                blocks.append((lang, start, "".join(lines)))
                lang = None
            elif lang is not None:
                lines.append(line)
    return blocks


SHELL = [(path, start, text) for path in DOCS for lang, start, text in code_blocks(path) if lang in ("bash", "sh", "shell")]
PYTHON = [(path, start, text) for path in DOCS for lang, start, text in code_blocks(path) if lang == "python"]


def test_the_readme_has_runnable_blocks():
    assert any(path == "README.md" for path, _, _ in SHELL) and any(path == "README.md" for path, _, _ in PYTHON)


@pytest.mark.parametrize("path, start, text", SHELL, ids=[f"{p}:{s}" for p, s, _ in SHELL])
def test_shell_blocks_parse_and_keep_their_continuations(path, start, text):
    result = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, f"{path}:{start}: {result.stderr}"
    for offset, line in enumerate(text.splitlines()):
        # A backslash followed by more text (a comment, say) is no continuation: bash drops the lines after it.
        assert not re.search(r"\\[ \t]+\S", line), f"{path}:{start + offset}: {line!r}"


@pytest.mark.parametrize("path, start, text", PYTHON, ids=[f"{p}:{s}" for p, s, _ in PYTHON])
def test_python_blocks_compile(path, start, text):
    compile(text, f"{path}:{start}", "exec")
