"""The partners file (hub.federation.partners) and the partner resources
(mappings/partner_to_endpoint.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fhir.resources.R4B.endpoint import Endpoint
from fhir.resources.R4B.organization import Organization

from hub.federation.partners import Partner, PartnerStore, site_id
from mappings.partner_to_endpoint import partner_to_endpoint


def test_partners_are_kept_private_and_reread_when_changed(tmp_path: Path) -> None:
    path = tmp_path / "federation" / "partners.json"
    store = PartnerStore(path)
    assert store.all() == []
    store.put(Partner("B", "https://b.example/fhir/", "c1", identifier_systems=("urn:x",)))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    other = PartnerStore(path)  # another process: the CLI beside a running hub
    got = other.get("B")
    assert got is not None and got.fhir_base == "https://b.example/fhir"
    assert got.identifier_systems == ("urn:x",)
    store.put(Partner("C", "https://c.example/fhir", "c2", enabled=False))
    assert [p.name for p in other.all()] == ["B", "C"]
    assert [p.name for p in other.enabled()] == ["B"]
    store.remove("B")
    assert [p.name for p in other.all()] == ["C"]
    with pytest.raises(KeyError):
        store.remove("B")


@pytest.mark.parametrize(
    ("partner", "message"),
    [
        (Partner("b c", "https://b.example/fhir", "c"), "partner name"),
        (Partner("b_c", "https://b.example/fhir", "c"), "partner name"),
        (Partner("b", "http://b.example/fhir", "c"), "only for localhost"),
        (Partner("b", "ftp://b.example/fhir", "c"), "absolute http"),
        (Partner("b", "https://b.example/fhir?x=1", "c"), "without query"),
        (Partner("b", "https://b.example/fhir", " "), "--client-id"),
        (Partner("b", "https://b.example/fhir", "c", timeout=0), "--timeout"),
        (Partner("b", "https://b.example/fhir", "c", token_url="http://x/t"), "localhost"),
        (Partner("b", "https://b.example/fhir", "c", identifier_systems=("a b",)), "system URI"),
    ],
)
def test_a_bad_partner_is_refused(tmp_path: Path, partner: Partner, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PartnerStore(tmp_path / "p.json").put(partner)


def test_the_site_id_is_made_once(tmp_path: Path) -> None:
    made = site_id(tmp_path, None)
    assert made.startswith("pixelhub-") and site_id(tmp_path, None) == made
    assert site_id(tmp_path, "site-x") == "site-x"


@pytest.mark.parametrize("enabled", [True, False])
def test_partner_resources_are_valid_r4(enabled: bool) -> None:
    organization, endpoint = partner_to_endpoint(
        name="B",
        display="Hospital B",
        fhir_base="https://b.example/fhir",
        enabled=enabled,
        organization_reference="Organization/partner-B",
    )
    Organization.model_validate(organization)
    Endpoint.model_validate(endpoint)
    assert endpoint["status"] == ("active" if enabled else "off")
    assert organization["active"] is enabled
    assert endpoint["address"] == "https://b.example/fhir"
    assert endpoint["managingOrganization"] == {"reference": "Organization/partner-B"}
