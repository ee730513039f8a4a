"""The ``pixelhub`` command line (``python -m hub`` is the same)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from hub import __version__
from hub.config import Settings, load_settings


def _settings(config: str | None, **flags: Any) -> Settings:
    try:
        return load_settings(config, **flags)
    except (ValidationError, FileNotFoundError) as exc:
        raise click.UsageError(f"invalid configuration:\n{exc}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixelhub")
def main() -> None:
    """PixelHub: the FHIR hub for every clinical image of a health system."""


@main.command()
@click.option("--config", "config", type=click.Path(dir_okay=False), help="pixelhub.toml to read")
@click.option("--http-host", help="HTTP bind address [127.0.0.1]")
@click.option("--http-port", type=int, help="HTTP port, 0 = any free port [8080]")
@click.option("--dicom-port", type=int, help="DICOM DIMSE port [11112]")
@click.option("--dicom-aet", help="DICOM AE title [PIXELHUB]")
@click.option("--mllp-port", type=int, help="HL7 v2 MLLP port [2575]")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="[./pixelhub-data]"
)
@click.option("--database-url", help="store of record URL [sqlite in the data dir]")
@click.option(
    "--demo", is_flag=True, default=None, help="OPEN ACCESS with sample data, for trying out"
)
def serve(config: str | None, **flags: Any) -> None:
    """Serve FHIR (and every enabled channel) until SIGTERM."""
    from hub.server import serve as run

    sys.exit(run(_settings(config, **flags)))


@main.command(name="import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--config", "config", type=click.Path(dir_okay=False), help="pixelhub.toml to read")
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="[./pixelhub-data]"
)
@click.option("--database-url", help="store of record URL [sqlite in the data dir]")
@click.option("--importer", "importer_name", default="dicom", show_default=True)
@click.option("--jobs", default=4, show_default=True, help="objects imported in parallel")
def import_(
    config: str | None, paths: tuple[Path, ...], importer_name: str, jobs: int, **flags: Any
) -> None:
    """Import folders, DICOMDIRs and zip files of DICOM objects (resumable: objects already
    stored identically are skipped). Exit status 0, or 2 when some objects were rejected."""
    from rich.console import Console

    from hub.importers import print_summary, run_import

    settings = _settings(config, **flags)
    console = Console(stderr=True)
    counts, rejected = run_import(
        settings, paths, importer_name=importer_name, jobs=jobs, console=console
    )
    print_summary(Console(), counts, rejected)
    sys.exit(2 if rejected else 0)
