"""Where the data files are: ``configs/``, the ``sky/`` task templates, ``bentofile.yaml``.

One rule, used by every lookup (nothing else in ``src/`` walks ``Path(__file__).parents``):

1. ``$MINIVESS_CONFIG_DIR`` names a ``configs/`` folder: it wins for configs.
2. A **project checkout** -- the working directory or the nearest folder above it holding a
   ``pyproject.toml`` for ``minivess`` next to ``configs/`` -- wins next. A researcher who edits
   ``configs/`` in a clone gets the edited files, whether minivess is installed editable or not.
   ``$MINIVESS_PROJECT_DIR`` names that checkout explicitly (e.g. a job whose cwd is elsewhere).
3. The **source tree of an editable install** (``pip install -e``, recorded by pip in the
   distribution's ``direct_url.json``), so tests and tools run from any directory still see it.
4. The **copy shipped inside the package** (``minivess/_data/``, put there when the wheel is
   built; see ``setup.py``). A ``pip install minivess`` on a serving host or in the image uses it.

``bentofile.yaml`` is a module file of :mod:`minivess.serving` and is always read from the
package, through :mod:`importlib.resources`.

Examples:
    >>> from minivess.resources import config_dir, sky_template
    >>> (config_dir() / "experiments" / "default.yaml").is_file()
    True
    >>> sky_template("train.yaml").name
    'train.yaml'
"""

from __future__ import annotations

import json
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from urllib.parse import unquote, urlparse

from minivess.environ import environ_or

#: Environment variable naming an alternative ``configs/`` directory.
CONFIG_DIR_ENV = "MINIVESS_CONFIG_DIR"
#: Environment variable naming the project checkout (instead of finding it from the cwd).
PROJECT_DIR_ENV = "MINIVESS_PROJECT_DIR"
#: Folder inside the installed package that holds the shipped ``configs/`` and ``sky/``.
PACKAGED_DATA = "_data"


def _is_checkout(path: Path) -> bool:
    """True when ``path`` is a minivess source checkout (pyproject for minivess + configs/)."""
    pyproject = path / "pyproject.toml"
    if not (pyproject.is_file() and (path / "configs").is_dir()):
        return False
    try:
        head = pyproject.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return 'name = "minivess"' in head


def find_checkout(start: Path | None = None) -> Path | None:
    """The minivess checkout at ``start`` (default: the cwd) or the nearest folder above it."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if _is_checkout(candidate):
            return candidate
    return None


@cache
def editable_source() -> Path | None:
    """The source checkout of an editable install of minivess, else None (a regular install)."""
    try:
        raw = metadata.distribution("minivess").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not raw:
        return None
    info = json.loads(raw)
    if not (info.get("dir_info") or {}).get("editable"):
        return None
    url = urlparse(info.get("url", ""))
    path = Path(unquote(url.path)) if url.scheme == "file" else None
    return path if path is not None and _is_checkout(path) else None


def packaged_data() -> Path:
    """``minivess/_data`` inside the installed package (configs/ and sky/ of the wheel)."""
    return Path(str(resources.files("minivess") / PACKAGED_DATA))


def source_checkout() -> Path | None:
    """The checkout whose files win (rules 2 and 3 of the module docstring), if any."""
    env = environ_or(None).get(PROJECT_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        if not _is_checkout(path):
            from minivess.errors import ConfigError

            raise ConfigError(
                f"{PROJECT_DIR_ENV}={env} is not a minivess checkout (needs pyproject.toml and "
                "configs/); unset it or point it at a clone."
            )
        return path.resolve()
    return find_checkout() or editable_source()


def project_root() -> Path:
    """The project folder: the checkout when there is one, else the working directory.

    This is what SkyPilot syncs to a node as ``workdir`` and where ``sky/rendered`` goes.
    """
    return source_checkout() or Path.cwd().resolve()


def data_root() -> Path:
    """The folder holding ``configs/`` and ``sky/``: a checkout, else the packaged copy."""
    root = source_checkout()
    if root is not None:
        return root
    data = packaged_data()
    if not (data / "configs").is_dir():
        from minivess.errors import ConfigError

        raise ConfigError(
            f"no configs/ found: not in a minivess checkout and the package has no {data}; "
            f"run from a clone, set {PROJECT_DIR_ENV}, or reinstall the wheel."
        )
    return data


def config_dir() -> Path:
    """The ``configs/`` directory: ``$MINIVESS_CONFIG_DIR``, else ``data_root()/configs``."""
    env = environ_or(None).get(CONFIG_DIR_ENV)
    if env:
        return Path(env)
    return data_root() / "configs"


def sky_dir(root: Path | None = None) -> Path:
    """The ``sky/`` template folder: ``root/sky`` when it exists, else ``data_root()/sky``."""
    if root is not None and (root / "sky").is_dir():
        return root / "sky"
    return data_root() / "sky"


def sky_template(name: str, root: Path | None = None) -> Path:
    """A SkyPilot task template by file name (``train.yaml``, ``serve.yaml``, ...)."""
    return sky_dir(root) / name


def bentofile() -> Path:
    """``bentofile.yaml`` of the serving package."""
    return Path(str(resources.files("minivess.serving") / "bentofile.yaml"))


def package_parent() -> Path:
    """The folder the ``minivess`` package was imported from (a bento's ``src/``, site-packages)."""
    return Path(str(resources.files("minivess"))).parent
