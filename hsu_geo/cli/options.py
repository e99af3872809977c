"""Options shared by several subcommands, defined once (the ``rio`` CLI habit)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click
from click.core import ParameterSource

from hsu_geo.config import (
    INT_RANGES,
    K_FIX,
    UnmixOptions,
    check_input_files,
    load_preset,
    parse_k,
)
from hsu_geo.cube import DEFAULT_CHUNK
from hsu_geo.errors import ConfigError


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> int:
    obj = ctx.ensure_object(dict)
    key = "verbose" if param.name == "verbose" else "quiet"
    obj[key] = obj.get(key, 0) + (value or 0)
    return value


verbose_opt = click.option("-v", "--verbose", count=True, expose_value=False,
                           callback=_set_verbosity, is_eager=True,
                           help="Also info logs, third-party ones (dask, rasterio warnings) "
                                "included, and full tracebacks; -vv: debug logs.")
quiet_opt = click.option("-q", "--quiet", count=True, expose_value=False,
                         callback=_set_verbosity, is_eager=True,
                         help="Silent unless something is wrong: only hsu-geo's warnings "
                              "and errors (-qq: errors only).")
sensor_opt = click.option("--sensor", default="auto", show_default=True,
                          help="Reader to use (see `hsu-geo readers`), or a comma-separated "
                          "list to detect among (e.g. enmap,geotiff); all by default.")
wavelengths_opt = click.option(
    "--wavelengths", type=click.Path(dir_okay=False), default=None,
    help="CSV or ENVI .hdr with band wavelengths, for rasters that lack them.")
chunk_opt = click.option("--chunk-size", type=click.IntRange(*INT_RANGES["chunk_size"]),
                         default=DEFAULT_CHUNK,
                         show_default=True, help="Tile edge in pixels (chunks hold all bands).")
drop_opt = click.option("--drop-bands", default=None, metavar="SPEC",
                        help="Also drop these bands: numbers, ranges or nm ranges, "
                             "e.g. '1-7,200,1340-1460nm'.")
keep_opt = click.option("--keep-bands", default=None, metavar="SPEC",
                        help="Keep these bands even if flagged bad (same syntax).")


def _check_scale(ctx: click.Context, param: click.Parameter, value: str | None
                 ) -> float | None:
    from hsu_geo.ingest.scale import check_scale

    if value is None:
        return None
    try:
        return check_scale(value, "")
    except ConfigError as exc:
        raise click.BadParameter(str(exc).strip()) from None


scale_opt = click.option(
    "--scale", default=None, metavar="FACTOR", callback=_check_scale,
    help="Reflectance = stored value x FACTOR, e.g. 0.0001 for reflectance stored x10000 "
         "without a scale factor in its header (replaces the file's factor).")


class KType(click.ParamType):
    """``-k``: a whole number >= 2 or 'auto' (the rule presets use too), so click reports a
    bad value as a usage error (exit 2)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            return parse_k(value)
        except ConfigError:
            self.fail(f"{value!r}: {K_FIX}", param, ctx)


def _check_scheduler(ctx: click.Context, param: click.Parameter, value: str | None
                     ) -> str | None:
    from hsu_geo.scheduler import check_scheduler

    try:
        return check_scheduler(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc).removeprefix("--scheduler ")) from None


_model_opts = (
    click.option("-m", "--model", default=None,
                 help="Model name (see `hsu-geo models`). [default: fcls]"),
    click.option("-k", "k", type=KType(), default=None, metavar="N|auto",
                 help="Number of endmembers to extract, or 'auto' (estimated from the "
                      "scene; see `hsu-geo info --estimate-k`). With --library/--endmembers "
                      "the library sets them (a -k must equal its count); sunsal selects its "
                      "own. [default: auto]"),
    click.option("--extractor", default=None,
                 help="Endmember extractor: refined (class means from pure pixels, "
                      "multi-start), vca, nfindr, atgp (extreme pixels), or vca+refine, "
                      "nfindr+refine, atgp+refine. [default: refined]"),
    click.option("--endmembers", type=click.Path(dir_okay=False), default=None,
                 metavar="FILE[:KEY=VALUE...]",
                 help="Spectral library: CSV (one column or one row per spectrum), ENVI "
                      ".sli/.hdr, EMIT CSV; options class=A,B names=GLOB,.. by=COLUMN "
                      "average=no scale=FACTOR, e.g. lib.csv:class=soil,npv."),
    click.option("--naming", type=click.Choice(["features", "sam"]), default=None,
                 help="Name extracted endmembers by absorption features (continuum removed) "
                      "or by full-spectrum spectral angle. [default: features]"),
    click.option("--library", default=None, metavar="usgs[:NAMES]",
                 help="Bundled USGS splib07 minerals, e.g. usgs:alunite,kaolinite."),
    click.option("--device", default=None, help="auto, cpu or cuda[:i]. [default: auto]"),
    click.option("--seed", type=click.IntRange(*INT_RANGES["seed"]), default=None,
                 help="Random seed. [default: 0]"),
    click.option("--sample-size", type=click.IntRange(*INT_RANGES["sample_size"]), default=None,
                 help="Pixels sampled per scene for endmembers / training. [default: 100000]"),
    click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                 help="Model setting (repeatable); see `hsu-geo models`."),
    click.option("--scheduler", default=None, metavar="local[:N]|ADDRESS",
                 callback=_check_scheduler,
                 help="dask.distributed LocalCluster or scheduler address; threads by default."),
)


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Model, endmember and execution options shared by ``unmix`` and ``batch``."""
    for opt in reversed(_model_opts):
        func = opt(func)
    return func


def scene_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that opens a scene takes."""
    for opt in reversed((sensor_opt, wavelengths_opt, scale_opt, chunk_opt, drop_opt,
                         keep_opt)):
        func = opt(func)
    return func


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-v`` and ``-q``."""
    return verbose_opt(quiet_opt(func))


def configure_logging(ctx: click.Context) -> None:
    """Map -v/-q to what reaches stderr (rules in :mod:`hsu_geo.console`)."""
    from hsu_geo import console

    obj = ctx.ensure_object(dict)
    console.setup(obj.get("verbose", 0), obj.get("quiet", 0))


def is_quiet(ctx: click.Context) -> bool:
    return bool(ctx.ensure_object(dict).get("quiet"))


def parse_settings(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: use key=value")
        out[key.strip()] = value.strip()
    return out


def effective_options(ctx: click.Context, preset: str | None, settings: tuple[str, ...],
                      flags: Mapping[str, Any]) -> UnmixOptions:
    """Preset (or defaults) overridden by the flags given on the command line only."""
    base = load_preset(preset) if preset else UnmixOptions()
    given = {k: v for k, v in flags.items()
             if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}
    if given.get("load_model") and given.get("model") is None:
        from hsu_geo.unmix.deep.checkpoint import read_checkpoint

        given["model"] = read_checkpoint(given["load_model"]).model  # as hsu-geo unmix does
    opts = base.updated(**given)
    if settings:
        opts = opts.updated(settings={**base.settings, **parse_settings(settings)})
    check_input_files(opts)  # /dev/zero, a FIFO or a huge file fails now, before any scene I/O
    from hsu_geo.pipeline import check_k_applies

    check_k_applies(opts)  # batch: before any scene, not once per scene
    return opts
