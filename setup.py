"""Package data that lives at the top of the checkout: ``configs/`` and the ``sky/`` templates.

The wheel carries them as ``minivess/_data/configs`` and ``minivess/_data/sky`` (read through
:mod:`minivess.resources`). Editable installs skip the copy: they read the checkout itself.
Everything else about the package is in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: (source under the checkout, destination under the package, ignored names)
DATA = (
    ("configs", "_data/configs", ("__pycache__",)),
    ("sky", "_data/sky", ("rendered", "__pycache__")),
)


class BuildWithData(build_py):
    """``build_py`` that also copies ``configs/`` and ``sky/`` into ``minivess/_data``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for src, dst, ignore in DATA:
            source = ROOT / src
            if not source.is_dir():
                raise SystemExit(f"setup.py: {source} is missing; build from a full checkout")
            target = Path(self.build_lib) / "minivess" / dst
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(*ignore))


setup(cmdclass={"build_py": BuildWithData})
