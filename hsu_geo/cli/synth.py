"""``hsu-geo synth``: write the CResDAE-style synthetic benchmark datasets."""

from __future__ import annotations

import click

from hsu_geo.cli.options import common_options, configure_logging, is_quiet
from hsu_geo.endmembers.library import SpectralLibrary
from hsu_geo.errors import ConfigError
from hsu_geo.synth.datasets import (
    DEFAULT_MINERALS,
    BandGrid,
    SynthConfig,
    band_grid_from_file,
    parse_band_spec,
    write_datasets,
)

DEFAULT_LIBRARY = "usgs:" + ",".join(DEFAULT_MINERALS)


def _split(value: str, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"--{what} is empty; give a comma-separated list")
    return items


def _snrs(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in _split(value, "snr"))
    except ValueError:
        raise ConfigError(f"--snr {value!r}: give numbers in dB, e.g. 10,20,30") from None


def _library(library: str | None, endmembers: str | None) -> SpectralLibrary:
    from hsu_geo.endmembers.library import load_usgs_library
    from hsu_geo.endmembers.library_io import read_library

    if library and endmembers:
        raise ConfigError("give either --endmembers CSV or --library, not both")
    if endmembers:
        return read_library(endmembers)
    name, _, names = (library or DEFAULT_LIBRARY).partition(":")
    if name.strip().lower() != "usgs":
        raise ConfigError(f"unknown library {name!r}; the bundled one is 'usgs' "
                          "(e.g. --library usgs:alunite,calcite,hematite)")
    chosen = [n for n in names.split(",") if n.strip()] or list(DEFAULT_MINERALS)
    return load_usgs_library(chosen)


def _grid(bands: str | None, wavelengths: str | None) -> BandGrid:
    if bands and wavelengths:
        raise ConfigError("give either --bands or --wavelengths, not both")
    return band_grid_from_file(wavelengths) if wavelengths else parse_band_spec(bands or
                                                                               "400:2500:10")


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--mixing", default="linear,bilinear,pnmm", show_default=True,
              help="Mixing models, comma-separated: linear, bilinear, pnmm.")
@click.option("--snr", default="10,20,30", show_default=True, help="SNR values in dB.")
@click.option("--size", nargs=2, type=click.IntRange(2), default=(128, 128), show_default=True,
              metavar="H W", help="Image rows and columns.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Random seed (abundance layout, nonlinearity and noise).")
@click.option("--library", default=None, metavar="usgs[:NAMES]",
              help=f"Bundled USGS minerals. [default: {DEFAULT_LIBRARY}]")
@click.option("--endmembers", type=click.Path(dir_okay=False), default=None,
              help="CSV with wavelength_nm + one column per endmember (any grid).")
@click.option("--bands", default=None, metavar="START:STOP:STEP",
              help="Band grid in nm, FWHM = STEP. [default: 400:2500:10]")
@click.option("--wavelengths", type=click.Path(dir_okay=False), default=None,
              help="Band grid from a CSV/text table or ENVI .hdr (wavelength [, fwhm]).")
@click.option("--bilinear", "bilinear_variant", type=click.Choice(["gbm", "fan"]), default="gbm",
              show_default=True, help="Bilinear model: GBM (gamma ~ U(0,1)) or Fan.")
@click.option("--overwrite", is_flag=True, help="Replace existing datasets.")
@common_options
@click.pass_context
def synth(ctx: click.Context, out_dir: str, mixing: str, snr: str, size: tuple[int, int],
          seed: int, library: str | None, endmembers: str | None, bands: str | None,
          wavelengths: str | None, bilinear_variant: str, overwrite: bool) -> None:
    """Write synthetic scenes with known truth: MIXING x SNR datasets in OUT_DIR.

    \b
    Each dataset OUT_DIR/<mixing>_snr<SNR>/ holds scene.tif (float32 reflectance with
    wavelength tags, EPSG:32611, 15 m), truth/scene_abundance.tif, truth/scene_endmembers.csv
    and <mixing>_snr<SNR>.mat (hyperspectral_cube, abundance_cube, mineral_names,
    spectra_library, wavelengths, SNR_dB, mixing_model, ...). All datasets share one smooth
    abundance layout; OUT_DIR/index.json lists them with every parameter.

    \b
    Examples:
      hsu-geo synth bench/
      hsu-geo synth bench/ --mixing linear --snr 30 --size 64 64 --seed 1
      hsu-geo synth bench/ --library usgs:kaolinite,calcite,hematite --bands 400:2400:20
    """
    configure_logging(ctx)
    config = SynthConfig(mixings=tuple(_split(mixing, "mixing")), snrs_db=_snrs(snr),
                         size=(size[0], size[1]), seed=seed, bilinear_variant=bilinear_variant)
    lib = _library(library, endmembers)
    grid = _grid(bands, wavelengths)
    written = write_datasets(out_dir, lib, grid, config, overwrite=overwrite)
    if not is_quiet(ctx):
        click.echo(f"[hsu-geo] {len(written)} dataset(s), {len(lib)} endmembers "
                   f"({', '.join(lib.names)}), {grid.wavelength_nm.size} bands", err=True)
    for d in written:
        click.echo(str(d.scene.parent))
