"""What every ``pixelhub`` command shares: the ``--config`` and ``--data-dir`` options and
loading the settings with a usage error for a bad configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from hub.config import Settings, load_settings

DATA_DIR = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="[./pixelhub-data]"
)
CONFIG = click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="pixelhub.toml to read"
)


def settings_from(config: str | None, **flags: Any) -> Settings:
    try:
        return load_settings(config, **flags)
    except (ValidationError, FileNotFoundError) as exc:
        raise click.UsageError(f"invalid configuration:\n{exc}") from None
