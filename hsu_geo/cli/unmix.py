"""``hsu-geo unmix`` and ``hsu-geo models``."""

from __future__ import annotations

import contextlib
import json
import sys
import time

import click

from hsu_geo.cli.options import (
    common_options,
    configure_logging,
    effective_options,
    model_options,
    scene_options,
)
from hsu_geo.unmix import MODELS


def _check(value, what: str):
    """Parse --window/--bounds/--co now, so a bad value is a usage error before any I/O."""
    from hsu_geo.errors import ConfigError
    from hsu_geo.ingest.subset import parse_bounds, parse_window
    from hsu_geo.write.creation import check_creation_options

    if not value:
        return value
    try:
        if what == "window":
            parse_window(value)
        elif what == "bounds":
            parse_bounds(value)
        else:
            return tuple(f"{k}={v}" for k, v in check_creation_options(value).items())
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


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
@click.option("--window", default=None, metavar="COL,ROW,WIDTH,HEIGHT",
              callback=lambda c, p, v: _check(v, "window"),
              help="Unmix only this pixel window of the scene (GDAL -srcwin order).")
@click.option("--bounds", default=None, metavar="LEFT,BOTTOM,RIGHT,TOP",
              callback=lambda c, p, v: _check(v, "bounds"),
              help="Unmix only the pixels whose centres lie in these bounds (scene CRS).")
@click.option("--co", "creation_options", multiple=True, metavar="KEY=VALUE",
              callback=lambda c, p, v: _check(v, "co"),
              help="GDAL COG creation option for the rasters (repeatable), e.g. "
                   "--co COMPRESS=DEFLATE --co LEVEL=9.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON summary on stdout (outputs, endmembers, k, timings, "
                   "warnings) instead of the output paths.")
@common_options
@click.pass_context
def unmix(ctx: click.Context, scene: str, out_dir: str, overwrite: bool, preset: str | None,
          settings: tuple[str, ...], as_json: bool, **flags) -> None:
    """Unmix SCENE into abundance maps, endmember spectra and a run record in --out.

    \b
    Writes S_M_abundance.tif (COG, one band per endmember), S_M_rmse.tif,
    S_M_dominant.tif (index of the largest abundance), QGIS styles for all three (.qml),
    S_M_endmembers.csv/.sli, S_M_quicklook.png and S_M_run.json, for scene id S and
    model M. Existing files are kept unless --overwrite.

    \b
    Examples:
      hsu-geo unmix scene.tif -m fcls -k 6 -o out/
      hsu-geo unmix scene.tif -m fcls --library usgs:alunite,kaolinite,muscovite
      hsu-geo unmix scene.img --endmembers emit_library.csv:class=soil,npv:scale=0.0001
      hsu-geo unmix x10000_scene.img --scale 0.0001 --endmembers my_library.sli
      hsu-geo unmix GF5B_AHSI_..._L10000252104.tar.gz -k auto --scheduler local:2
      hsu-geo unmix scene.tif -m cresdae -k 5 --save-model cresdae.pt
      hsu-geo unmix other_scene.tif --load-model cresdae.pt
    """
    from hsu_geo import console
    from hsu_geo.cli.summary import unmix_summary
    from hsu_geo.pipeline import run_unmix

    configure_logging(ctx)
    t0 = time.perf_counter()
    opts = effective_options(ctx, preset, settings, flags)
    stages = console.show_stages()
    epochs = console.EpochProgress() if stages else None

    def say(msg: str) -> None:
        epochs.close()  # a deep model's last stage may have stopped early
        console.echo(msg)

    # with --json, stray prints of any library go to stderr: stdout holds the JSON only
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = run_unmix(scene, out_dir, opts, overwrite=overwrite,
                           progress=console.show_bars(), on_stage=say if stages else None,
                           on_epoch=epochs)
    if stages:
        names = ", ".join(result["endmembers"])
        console.echo(f"{result['scene_id']}: {len(result['endmembers'])} endmembers ({names})")
    if as_json:
        summary = unmix_summary(result, console.collected_warnings(),
                                time.perf_counter() - t0)
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False))
        return
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
