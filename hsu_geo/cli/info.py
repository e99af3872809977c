"""``hsu-geo info SCENE``: what a scene holds and which bands would be used."""

from __future__ import annotations

import json
from typing import Any

import click
import numpy as np
import xarray as xr
from rasterio.crs import CRS

from hsu_geo.cli.options import common_options, configure_logging, scene_options
from hsu_geo.cube import cube_crs, cube_transform
from hsu_geo.errors import EndmemberError
from hsu_geo.ingest import open_scene
from hsu_geo.ingest.badbands import BadBandConfig, BandReport, preprocess


def _glt_crs(raw: xr.DataArray) -> str | None:
    """``GLT -> EPSG:4326`` for sensor-geometry scenes orthorectified through a lookup table."""
    glt = raw.attrs.get("glt")
    if not glt:
        return None
    crs = CRS.from_user_input(glt["crs"])
    return f"GLT -> {crs.to_string() if crs.to_epsg() else 'custom CRS'}"


def describe(raw: xr.DataArray, kept: xr.DataArray, report: BandReport) -> dict[str, Any]:
    """The ``info`` record of a scene (JSON-serialisable)."""
    crs = cube_crs(raw)
    transform = cube_transform(raw)
    dropped = list(raw.attrs.get("dropped_at_ingest", [])) + report.dropped
    total = raw.sizes["band"] + len(raw.attrs.get("dropped_at_ingest", []))
    wl = kept["wavelength"].values
    return {
        "reader": raw.attrs.get("reader"),
        "sensor": raw.attrs.get("sensor"),
        "product_id": raw.attrs.get("product_id"),
        "shape": [total, raw.sizes["y"], raw.sizes["x"]],
        "crs": crs.to_string() if crs else ("RPC" if "rpcs" in raw.attrs else _glt_crs(raw)),
        "transform": list(transform)[:6] if transform is not None else None,
        "quantity": raw.attrs.get("quantity"),
        "units": raw.attrs.get("units"),
        "scale_factor": raw.attrs.get("scale_factor"),
        "calibration": raw.attrs.get("calibration"),
        "acquisition_time": raw.attrs.get("acquisition_time") or None,
        "bands_total": total,
        "bands_kept": kept.sizes["band"],
        "wavelength_nm": [float(wl.min()), float(wl.max())],
        "chunks": {"band": -1, "y": int(raw.data.chunksize[1]), "x": int(raw.data.chunksize[2])},
        "sample_pixels": report.sample_pixels,
        "dropped": dropped,
        "source_files": raw.attrs.get("source_files", []),
    }


def k_estimate_record(raw: xr.DataArray, config: BadBandConfig, sample_size: int = 100_000,
                      seed: int = 0) -> tuple[xr.DataArray, BandReport, dict[str, Any]]:
    """What ``-k auto`` would use: one scan as ``hsu-geo unmix`` does it (pixel sample and
    full-scene band statistics), the same bad bands, then
    :func:`hsu_geo.endmembers.count.estimate_count`. Returns ``(kept cube, report, record)``;
    with too few valid pixels the record holds ``k: None`` and the reason."""
    from hsu_geo.endmembers.count import estimate_count
    from hsu_geo.ingest.scan import scan_cube, valid_rows

    sample, stats = scan_cube(raw, sample_size, seed=seed)
    kept, report = preprocess(raw, config, stats)
    Y = valid_rows(sample[:, np.searchsorted(raw["band"].values, kept["band"].values)])
    try:
        rec = estimate_count(Y).to_dict()
    except EndmemberError as exc:
        rec = {"k": None, "error": str(exc), "n_pixels": int(Y.shape[0]),
               "n_bands": int(Y.shape[1])}
    return kept, report, rec


def range_check(kept: xr.DataArray, config: BadBandConfig) -> dict[str, Any]:
    """Reflectance level of a few sampled windows of the kept bands
    (:func:`hsu_geo.ingest.scale.range_record`): implausible for 0-1 reflectance gets a
    warning suggesting ``--scale``."""
    from hsu_geo.ingest.badbands import sample_windows
    from hsu_geo.ingest.scale import range_record

    windows = sample_windows(kept, config.sample_windows, config.window, config.seed)
    sample = np.concatenate([w.reshape(w.shape[0], -1).T for w in windows])
    return range_record(sample, kept)


def _print_range(rng: dict[str, Any]) -> None:
    if rng["level"] is None:
        return
    verdict = "" if rng["plausible"] is None else \
        ("  plausible for 0-1 reflectance" if rng["plausible"] else "  IMPLAUSIBLE")
    click.echo(f"Value level  {rng['level']:.4g} (95th percentile of pixel medians){verdict}")
    if rng["warning"]:
        click.echo(f"Warning      {rng['warning']}")


def _print_k(est: dict[str, Any]) -> None:
    if est.get("k") is None:
        click.echo(f"Endmembers   -k auto cannot estimate: {est['error']}")
        return
    click.echo(f"Endmembers   {est['k']} (-k auto: {est['k_significant']} components above the "
               f"noise, {est['k'] - 1} beyond the mean carry >= {100 * est['tau']:g} % of the "
               f"signal each; HySime would say {est['hysime_k']})")


def _print_text(rec: dict[str, Any]) -> None:
    click.echo(f"Scene        {rec['product_id']}  ({rec['reader']} reader, {rec['sensor']})")
    b, r, c = rec["shape"]
    click.echo(f"Size         {b} bands x {r} rows x {c} cols")
    click.echo(f"CRS          {rec['crs'] or 'none (not georeferenced)'}")
    if rec["transform"]:
        click.echo("Transform    " + ", ".join(f"{v:.6g}" for v in rec["transform"]))
    click.echo(f"Quantity     {rec['quantity']} [{rec['units']}]  calibration: "
               f"{rec['calibration']}")
    if rec["acquisition_time"]:
        click.echo(f"Acquired     {rec['acquisition_time']}")
    lo, hi = rec["wavelength_nm"]
    click.echo(f"Bands        {rec['bands_kept']} of {rec['bands_total']} kept, "
               f"{lo:.1f}-{hi:.1f} nm")
    ch = rec["chunks"]
    click.echo(f"Chunks       all bands x {ch['y']} x {ch['x']} pixels")
    if rec["dropped"]:
        click.echo(f"Dropped      {len(rec['dropped'])} bands:")
        for d in rec["dropped"]:
            click.echo(f"  band {d['band']:>4}  {d['wavelength_nm']:8.1f} nm  {d['reason']}")


@click.command()
@click.argument("scene", type=click.Path())
@scene_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--estimate-k", is_flag=True,
              help="Also estimate the number of endmembers (what -k auto would use); reads "
                   "the whole scene once.")
@common_options
@click.pass_context
def info(ctx: click.Context, scene: str, sensor: str, wavelengths: str | None,
         scale: float | None, chunk_size: int,
         drop_bands: str | None, keep_bands: str | None, as_json: bool,
         estimate_k: bool) -> None:
    """Describe SCENE: reader, size, georeferencing, calibration, kept and dropped bands.

    \b
    Examples:
      hsu-geo info sample_data/GF5B_AHSI_E116.5_N41.2_20230615_010123_L10000312345
      hsu-geo info sample_data/minerals_aviris_like.tif --json
      hsu-geo info sample_data/minerals_aviris_like.tif --estimate-k
    """
    configure_logging(ctx)
    raw = open_scene(scene, sensor=sensor, chunks=chunk_size, wavelengths=wavelengths,
                     scale=scale)
    config = BadBandConfig(drop=drop_bands, keep=keep_bands)
    est = None
    if estimate_k:
        kept, report, est = k_estimate_record(raw, config)
    else:
        kept, report = preprocess(raw, config)
    rec = describe(raw, kept, report)
    rec["value_range"] = range_check(kept, config)
    if est is not None:
        rec["k_estimate"] = est
    if as_json:
        click.echo(json.dumps(rec, indent=2))
    else:
        _print_text(rec)
        _print_range(rec["value_range"])
        if est is not None:
            _print_k(est)
