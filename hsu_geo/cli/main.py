"""The ``hsu-geo`` command group: subcommands, error handling, exit codes.

Exit codes: 0 success, 1 user error (one line on stderr; traceback only with ``-v``),
2 usage error (click's own), 130 interrupted, 141 stdout closed early (``hsu-geo ... | head``:
no message, the status a shell reports for a tool ended by SIGPIPE).
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from hsu_geo import __version__
from hsu_geo.errors import HsuGeoError


class HsuGeoGroup(click.Group):
    """A click group that turns errors into one-line messages and exit code 1."""

    def invoke(self, ctx: click.Context):
        # one obj dict shared with the subcommand contexts, so their -v/-q reach this handler
        ctx.ensure_object(dict)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted; no partial outputs were kept.", err=True)
            sys.exit(130)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except Exception as exc:
            verbose = bool(ctx.ensure_object(dict).get("verbose"))
            if verbose:
                traceback.print_exc()
            if isinstance(exc, HsuGeoError):
                msg = str(exc)
            elif isinstance(exc, OSError):
                msg = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
            else:
                msg = f"internal error ({type(exc).__name__}: {exc}); run with -v for details"
            click.echo(f"Error: {msg.splitlines()[0] if msg else type(exc).__name__}", err=True)
            sys.exit(1)


def _quiet_broken_pipe() -> None:
    """The reader of stdout went away (``| head``): exit quietly like other unix tools.

    stdout is pointed at /dev/null so that the interpreter's final flush cannot fail again
    (Python's documented recipe); SIGPIPE keeps Python's default (ignored), so a dask
    connection that drops still raises an error instead of killing the process.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass
    sys.exit(141)


@click.group(cls=HsuGeoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hsu-geo")
def cli() -> None:
    """Turn hyperspectral scenes into georeferenced mineral and land-cover abundance maps."""


def _register() -> None:
    from hsu_geo.cli import evaluate, info, readers, synth

    cli.add_command(info.info)
    cli.add_command(readers.readers)
    cli.add_command(synth.synth)
    cli.add_command(evaluate.evaluate)
    try:
        from hsu_geo.cli import unmix
    except ImportError:  # unmixing not available in this build
        return
    cli.add_command(unmix.unmix)
    cli.add_command(unmix.models)
    from hsu_geo.cli import batch

    cli.add_command(batch.batch)


_register()
