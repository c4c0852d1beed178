"""Command-line interface: ``labelaudit scan | demo | review | export``."""

from __future__ import annotations

import click

from labelaudit import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labelaudit")
def main() -> None:
    """Find mislabeled images in a dataset and fix them in a local web app."""


# --- scan / demo: labelaudit.scanner, labelaudit.demo -------------------------------

# --- review / export: webapp, labelaudit.export -------------------------------------
