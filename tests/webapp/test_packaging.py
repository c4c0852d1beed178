"""The review app installs as ``labelaudit.webapp`` (source folder ``webapp/``)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from webapp_support import REPO


def _config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    """The package list is explicit (a package-dir mapping defeats find): it must name them all."""
    cfg = _config()
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "labelaudit").rglob("__init__.py")}
    found |= {".".join(("labelaudit",) + p.parent.relative_to(REPO).parts)
              for p in (REPO / "webapp").rglob("__init__.py")}
    assert set(cfg["packages"]) == found
    assert cfg["package-dir"] == {"labelaudit.webapp": "webapp"}


def test_the_app_is_imported_under_the_package_name():
    import labelaudit.webapp
    from labelaudit.webapp import templating

    folder = Path(labelaudit.webapp.__file__).parent
    assert folder.resolve() == (REPO / "webapp").resolve()  # the editable install maps the source folder
    assert (folder / "static" / "app.js").is_file() and (templating.TEMPLATES_DIR / "base.html").is_file()
    data = _config()["package-data"]["labelaudit.webapp"]
    assert "templates/*.html" in data and "static/*" in data
