"""``hsu-geo evaluate``: score unmix outputs against a synthetic (or any known) truth."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import click

from hsu_geo.cli.options import common_options, configure_logging

if TYPE_CHECKING:
    from hsu_geo.evaluate import Evaluation


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def format_report(ev: Evaluation) -> str:
    """Plain-text table of one :class:`~hsu_geo.evaluate.Evaluation`."""
    lines = [f"run {ev.run_id}  (truth: {ev.files['truth_endmembers']})",
             f"{ev.n_bands} bands matched by {ev.band_matching}, {ev.n_pixels} pixels",
             f"{'reference':<18}{'estimate':<18}{'SAD rad':>9}{'SAD deg':>9}{'SID':>9}"
             f"{'RMSE':>9}"]
    for e in ev.endmembers:
        lines.append(f"{e.reference[:17]:<18}{e.estimate[:17]:<18}{_fmt(e.sad_rad):>9}"
                     f"{_fmt(math.degrees(e.sad_rad), 2):>9}{_fmt(e.sid):>9}{_fmt(e.rmse):>9}")
    lines.append(f"{'mean':<36}{_fmt(ev.mean_sad_rad):>9}"
                 f"{_fmt(math.degrees(ev.mean_sad_rad), 2):>9}{_fmt(ev.mean_sid):>9}"
                 f"{_fmt(ev.mean_rmse):>9}")
    lines.append(f"abundance aRMSE (all endmembers): {_fmt(ev.armse)}  "
                 f"[{ev.abundance_convention} convention]")
    r = ev.reconstruction
    if r is not None:
        lines.append(f"reconstruction A·M on {ev.reconstruction_scene}: RMSE {_fmt(r.rmse, 5)}, "
                     f"PSNR {_fmt(r.psnr, 2)} dB (MAX {_fmt(r.max_value)}), RE {_fmt(r.re)} rad")
    if ev.model_recon_rmse is not None:
        lines.append(f"model reconstruction RMSE (rmse.tif): {_fmt(ev.model_recon_rmse, 5)}")
    lines += [f"note: {n}" for n in ev.notes]
    return "\n".join(lines)


@click.command()
@click.argument("output_dir", type=click.Path())
@click.option("--truth", default=None, type=click.Path(),
              help="Truth folder (hsu-geo synth dataset or its truth/ folder).")
@click.option("--truth-abundance", default=None, type=click.Path(dir_okay=False),
              help="Truth abundance GeoTIFF (one band per endmember), instead of --truth.")
@click.option("--truth-endmembers", default=None, type=click.Path(dir_okay=False),
              help="Truth endmember CSV (band,wavelength_nm,<names> or wavelength_nm,<names>).")
@click.option("--run", default=None, metavar="S_M",
              help="Evaluate only this run (scene id _ model); default: every run in the folder.")
@click.option("--scene", default=None, type=click.Path(),
              help="Scene for the reconstruction metrics. [default: from S_M_run.json]")
@click.option("--no-scene", is_flag=True, help="Skip the reconstruction from the scene.")
@click.option("--abundance-convention", type=click.Choice(["physical", "reference", "fcls"]),
              default="physical", show_default=True,
              help="Which abundances are scored. physical: the abundance raster as written. "
                   "reference: re-derived from the run's estimated endmembers M and the scene "
                   "on the kept bands as NNLS on M with each endmember divided by its maximum, "
                   "then each pixel divided by its sum (the rule the Samson and Jasper Ridge "
                   "reference abundances follow). fcls: re-derived as FCLS on M as written "
                   "(the rule of the Moffett reference). reference/fcls need the scene; SAD "
                   "and SID do not depend on the convention.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
@click.pass_context
def evaluate(ctx: click.Context, output_dir: str, truth: str | None,
             truth_abundance: str | None, truth_endmembers: str | None, run: str | None,
             scene: str | None, no_scene: bool, abundance_convention: str,
             as_json: bool) -> None:
    """Score the unmix outputs in OUTPUT_DIR against known abundances and endmembers.

    \b
    Endmembers are matched by the Hungarian assignment on the SAD matrix over the bands the
    run kept; reports SAD (rad), SID, abundance RMSE per endmember, mean RMSE and aRMSE, and
    the reconstruction RMSE, PSNR and RE of A·M against the scene the run read.
    Abundance RMSE depends on the abundance convention (--abundance-convention); the JSON
    output states the convention and its definition.

    \b
    Examples:
      hsu-geo evaluate out/ --truth bench/linear_snr30
      hsu-geo evaluate out/ --truth bench/linear_snr30/truth --run scene_fcls --json
      hsu-geo evaluate out/ --truth-abundance a.tif --truth-endmembers e.csv
      hsu-geo evaluate out/ --truth samson_truth/ --abundance-convention reference
    """
    from hsu_geo.evaluate import evaluate_folder

    configure_logging(ctx)
    results = evaluate_folder(output_dir, truth=truth, truth_abundance=truth_abundance,
                              truth_endmembers=truth_endmembers, run=run, scene=scene,
                              reconstruct=not no_scene,
                              abundance_convention=abundance_convention)
    if as_json:
        click.echo(json.dumps({"runs": [r.to_dict() for r in results]}, indent=2,
                              ensure_ascii=False, allow_nan=False))
        return
    click.echo("\n\n".join(format_report(r) for r in results))
