"""``hsu-geo batch ARCHIVE -o DIR``: unmix every scene of a folder tree or archive."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

import click

from hsu_geo.cli.options import (
    common_options,
    configure_logging,
    effective_options,
    model_options,
    scene_options,
)
from hsu_geo.errors import ConfigError


def _summary(record: Mapping[str, Any]) -> list[str]:
    rows = [("SCENE", "STATUS", "SECONDS", "DETAIL")]
    for e in record["scenes"]:
        status = e["status"] + (" (kept)" if e.get("reused") else "")
        seconds = f"{e['seconds']:.1f}" if e.get("seconds") is not None \
            and not e.get("reused") else "-"
        detail = e.get("error") or (f"{len(e.get('outputs') or [])} files"
                                    if e["status"] == "done" else "")
        rows.append((e.get("scene_id") or e["source"], status, seconds, detail))
    width = max(len(r[0]) for r in rows)
    lines = [f"{a:<{width}}  {b:<12} {c:>7}  {d}" for a, b, c, d in rows]
    s = record.get("summary", {})
    kept = sum(1 for e in record["scenes"] if e.get("reused"))
    lines.append(f"{s.get('done', 0)} done ({kept} kept from before), {s.get('failed', 0)} "
                 f"failed, {s.get('skipped', 0)} skipped"
                 + (f", {s['pending']} not run" if s.get("pending") else ""))
    return lines


@click.command()
@click.argument("archive", type=click.Path())
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: DIR/<scene_id>/, batch.json, batch.csv, catalog.json.")
@click.option("--pipeline", "preset", type=click.Path(dir_okay=False), default=None,
              help="YAML preset (pipelines/*.yaml); flags given here override it.")
@model_options
@scene_options
@click.option("--distribute", type=click.Choice(["scenes", "chunks"]), default="scenes",
              show_default=True, help="With --scheduler: one task per scene, or scenes one "
              "after another with their chunks spread over the workers.")
@click.option("--train-on", default=None, metavar="SCENE_ID",
              help="Fit the model once on this scene and apply it to every scene.")
@click.option("--load-model", type=click.Path(dir_okay=False), default=None,
              help="Apply a model saved by `hsu-geo unmix --save-model` to every scene.")
@click.option("--save-model", type=click.Path(dir_okay=False), default=None,
              help="With --train-on: also save the trained deep model as a checkpoint.")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Only scenes whose path under ARCHIVE (or a folder of it) matches, e.g. "
              "'*_rfl_*' or 'tiles/*' (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Leave out scenes whose path or a folder of it matches, e.g. 'labels' "
              "(repeatable); left-out scenes are listed as skipped.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed scene.")
@click.option("--overwrite", is_flag=True,
              help="Redo every scene, even if DIR holds a batch run with other settings.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON summary on stdout (every scene's status, outputs, "
                   "endmembers, k, timings; warnings) instead of the table.")
@common_options
@click.pass_context
def batch(ctx: click.Context, archive: str, out_dir: str, preset: str | None,
          settings: tuple[str, ...], distribute: str, train_on: str | None,
          fail_fast: bool, overwrite: bool, include: tuple[str, ...],
          exclude: tuple[str, ...], as_json: bool = False, **flags: Any) -> None:
    """Unmix every scene in ARCHIVE (a folder tree, .tar, .tar.gz or .zip) into DIR.

    \b
    Scenes (GF-5 deliveries as folders or tarballs, ENVI products, GeoTIFFs, EnMAP, ...)
    are found by the readers; other files are listed as skipped. Each scene gets the same
    settings and its own DIR/<scene_id>/ (the `hsu-geo unmix` outputs). DIR/batch.json and
    batch.csv record status, errors, timings and output checksums; DIR/catalog.json is a
    STAC catalog of the results. Rerunning the same command skips verified scenes and redoes
    failed or interrupted ones. Exits 1 if any scene failed.

    \b
    Examples:
      hsu-geo batch deliveries/ -o out/ --pipeline pipelines/gf5_minerals.yaml
      hsu-geo batch scenes.tar.gz -o out/ -m fcls -k 5 --scheduler local:2
      hsu-geo batch flights/ -o out/ -k 6 --train-on ang20190707t200215_rfl
    """
    from pathlib import Path

    from hsu_geo import console
    from hsu_geo.batch import run_batch
    from hsu_geo.cli.summary import batch_summary

    configure_logging(ctx)
    t0 = time.perf_counter()
    if train_on is not None and flags.get("load_model"):
        raise ConfigError("give either --train-on SCENE_ID or --load-model PATH, not both")
    opts = effective_options(ctx, preset, settings, flags)
    say = console.echo if console.show_stages() else None
    # with --json, stray prints of any library go to stderr: stdout holds the JSON only
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        record = run_batch(archive, out_dir, opts, train_on=train_on, fail_fast=fail_fast,
                           overwrite=overwrite, distribute=distribute, say=say,
                           include=include, exclude=exclude,
                           progress=console.show_bars())
    out = Path(out_dir)
    if as_json:
        click.echo(json.dumps(batch_summary(record, out, console.collected_warnings(),
                                            time.perf_counter() - t0),
                              indent=2, ensure_ascii=False, allow_nan=False))
    else:
        for line in _summary(record):
            click.echo(line)
        click.echo(f"record: {out / 'batch.json'}  catalog: {out / 'catalog.json'}")
    summary = record.get("summary", {})
    failed = bool(summary.get("failed") or summary.get("pending"))
    if failed:
        click.echo(f"Error: {summary.get('failed', 0)} scene(s) failed; fix them and rerun "
                   "the same command to retry only those", err=True)
    if record.get("archive_error"):
        click.echo(f"Error: {archive}: {record['archive_error']}; download or pack it again",
                   err=True)
    if failed or record.get("archive_error"):
        ctx.exit(1)
