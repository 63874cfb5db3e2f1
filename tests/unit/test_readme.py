"""The README's example is Python that compiles, and every name it takes from chaoskit is public."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import chaoskit

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readmes_example_compiles_and_imports_public_names_only():
    (block,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    tree = ast.parse(block)
    imported = [
        a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "chaoskit" for a in n.names
    ]
    assert imported and all(name in chaoskit.__all__ and getattr(chaoskit, name) for name in imported), imported


def test_the_readme_keeps_two_set_up_commands_and_stays_short():
    text = README.read_text()
    (block,) = re.findall(r"## The two commands.*?```sh\n(.*?)```", text, re.S)
    assert [line.split()[:2] for line in block.splitlines()] == [["make", "experiments"], ["make", "test"]]
    assert len(text.splitlines()) < 200
