"""Client writes are always validated; channel writes of PixelHub's own mappings may skip it."""

from pathlib import Path

import pytest

from hub.auth import Principal
from hub.composition import build_hub
from hub.config import Settings
from hub.errors import InvalidResource

SYSTEM = Principal("test", scopes=frozenset({"*"}))
IMPOSSIBLE = {"resourceType": "Patient", "birthDate": "2024-02-30"}


def test_validation_flag(tmp_path: Path) -> None:
    hub = build_hub(Settings(data_dir=tmp_path, auth_tokens=["t"]), base_url="http://x/fhir")
    try:
        service = hub.service
        with pytest.raises(InvalidResource):
            service.create(SYSTEM, "Patient", dict(IMPOSSIBLE))
        with pytest.raises(InvalidResource):
            service.run(lambda uow: service.create(SYSTEM, "Patient", dict(IMPOSSIBLE), uow=uow))
        trusted = service.run(
            lambda uow: service.create(SYSTEM, "Patient", dict(IMPOSSIBLE), uow=uow),
            validate=False,
        )
        assert trusted.created and hub.engine.repository.count("Patient") == 1
    finally:
        hub.close()
