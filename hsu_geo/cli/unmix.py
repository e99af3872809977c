"""``hsu-geo unmix`` and ``hsu-geo models``."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import click

from hsu_geo.cli.options import (
    common_options,
    configure_logging,
    effective_options,
    is_quiet,
    model_options,
    scene_options,
)
from hsu_geo.unmix import MODELS


class EpochBar:
    """Training progress of deep models on stderr: one bar per stage, redrawn in place
    (at most every 0.2 s), ending with the stage's last loss."""

    LABELS: ClassVar[dict[str, str]] = {
        "decoder_pretrain": "pretraining decoder", "synthetic_pretrain": "synthetic pretrain",
        "finetune": "fine-tuning", "train": "training"}

    def __init__(self) -> None:
        self.stage: str | None = None
        self.last = 0.0
        self.pending: Any = None  # last event not drawn yet (throttled)

    def __call__(self, event: Any) -> None:
        if event.stage != self.stage:
            self.close()
            self.stage, self.last = event.stage, 0.0
        now = time.monotonic()
        self.pending = event
        if event.epoch < event.epochs and now - self.last < 0.2:
            return
        self.last = now
        self._draw(event)
        if event.epoch >= event.epochs:
            self.close()

    def _draw(self, event: Any) -> None:
        self.pending = None
        base, _, detail = event.stage.partition(":")
        label = self.LABELS.get(base, base) + (f" {detail}" if detail else "")
        filled = round(24 * event.epoch / max(event.epochs, 1))
        click.echo(f"\r[hsu-geo] {label:<20} [{'#' * filled}{'.' * (24 - filled)}] "
                   f"{event.epoch}/{event.epochs} loss {event.loss:.5g}", err=True, nl=False)

    def close(self) -> None:
        """Draw the last event of the current bar (e.g. after an early stop), end its line."""
        if self.stage is not None:
            if self.pending is not None:
                self._draw(self.pending)
            click.echo("", err=True)
            self.stage = None


@click.command()
@click.argument("scene", type=click.Path())
@model_options
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Output directory.")
@scene_options
@click.option("--save-model", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Write the trained deep model (weights, config, bands, endmember names).")
@click.option("--load-model", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Apply a model saved with --save-model (no endmember extraction or "
                   "training); the scene must have the same bands.")
@click.option("--pipeline", "preset", type=click.Path(dir_okay=False), default=None,
              help="YAML preset (pipelines/*.yaml); flags given here override it.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@common_options
@click.pass_context
def unmix(ctx: click.Context, scene: str, out_dir: str, overwrite: bool, preset: str | None,
          settings: tuple[str, ...], **flags) -> None:
    """Unmix SCENE into abundance maps, endmember spectra and a run record in --out.

    \b
    Writes S_M_abundance.tif (COG, one band per endmember), S_M_rmse.tif,
    S_M_endmembers.csv/.sli, S_M_abundance.qml (QGIS style), S_M_quicklook.png and
    S_M_run.json, for scene id S and model M. Existing files are kept unless --overwrite.

    \b
    Examples:
      hsu-geo unmix scene.tif -m fcls -k 6 -o out/
      hsu-geo unmix scene.tif -m fcls --library usgs:alunite,kaolinite,muscovite
      hsu-geo unmix GF5B_AHSI_..._L10000252104.tar.gz -k auto --scheduler local:2
      hsu-geo unmix scene.tif -m cresdae -k 5 --save-model cresdae.pt
      hsu-geo unmix other_scene.tif --load-model cresdae.pt
    """
    from hsu_geo.pipeline import run_unmix

    configure_logging(ctx)
    opts = effective_options(ctx, preset, settings, flags)
    quiet = is_quiet(ctx)
    bar = None if quiet else EpochBar()

    def say(msg: str) -> None:
        bar.close()
        click.echo(f"[hsu-geo] {msg}", err=True)

    result = run_unmix(scene, out_dir, opts, overwrite=overwrite, progress=not quiet,
                       on_stage=None if quiet else say, on_epoch=bar)
    if not quiet:
        names = ", ".join(result["endmembers"])
        click.echo(f"[hsu-geo] {result['scene_id']}: {len(result['endmembers'])} endmembers "
                   f"({names})", err=True)
    for path in result["outputs"].values():
        click.echo(str(path))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
def models(as_json: bool) -> None:
    """List the unmixing models, their papers and settings."""
    from dataclasses import asdict

    rows = []
    for name, cls in MODELS.items():
        rows.append({"name": name, "description": cls.description, "doi": cls.doi,
                     "input": cls.input, "defaults": asdict(cls.Config())})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        doi = f"  doi:{row['doi']}" if row["doi"] else ""
        click.echo(f"{row['name']:<12} {row['description']} [{row['input']}]{doi}")
        for key, value in row["defaults"].items():
            click.echo(f"{'':<14}{key} = {value}")
