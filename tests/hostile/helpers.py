"""What every hostile-input test checks: a one-line error, and nothing written."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from hsu_geo.cli.main import cli


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result: Result) -> str:
    """The single ``Error:`` line of a failed run (exit 1, no traceback, not internal)."""
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("Error:"), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in lines[-1]
    return lines[-1]


def assert_nothing_written(out: Path) -> None:
    """No output, temporary or staging file in ``out`` (hidden ones included)."""
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())
