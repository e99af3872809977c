"""``hsu-geo readers``: list the installed scene readers."""

from __future__ import annotations

import json

import click

from hsu_geo.cli.options import common_options
from hsu_geo.ingest import READERS


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
def readers(as_json: bool) -> None:
    """List the scene readers that `--sensor` accepts."""
    rows = [{"name": name, "description": cls.description, "sensors": list(cls.sensors),
             "priority": cls.priority} for name, cls in READERS.items()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']:<10} {row['description']}")
