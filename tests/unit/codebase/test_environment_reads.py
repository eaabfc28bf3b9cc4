"""Only ``minivess/environ.py`` touches the process environment; the rest reads it through it.

``settings`` (and ``serving/settings``) build their objects from ``environ.process_environ`` /
``environ.environ_or``; every other module gets a mapping or a settings object passed in. An AST
scan sees ``os.environ``, ``os.getenv``, ``os.putenv``/``unsetenv`` and ``from os import environ``
anywhere in ``src/``, inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "minivess"
HOME = SRC / "environ.py"
OS_ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(path: Path, root: Path = SRC.parent) -> list[str]:
    """``file:line`` (relative to ``root``) of each direct use of the process environment."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        direct = (
            isinstance(node, ast.Attribute)
            and node.attr in OS_ENV_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )
        imported = (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in OS_ENV_NAMES for a in node.names)
        )
        if direct or imported:
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_the_scan_sees_each_form(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\nfrom os import getenv\n"
        "def f():\n    os.environ['A'] = '1'\n    return os.getenv('B')\n"
    )
    assert environment_uses(probe, tmp_path) == ["probe.py:2", "probe.py:4", "probe.py:5"]


def test_only_environ_py_touches_the_process_environment() -> None:
    uses = [u for p in sorted(SRC.rglob("*.py")) if p != HOME for u in environment_uses(p)]
    assert uses == [], f"read the environment through minivess.settings instead: {uses}"
    assert environment_uses(HOME), "minivess/environ.py is the one reader"
