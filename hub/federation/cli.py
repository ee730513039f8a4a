"""``pixelhub partners add|list|enable|disable|remove|jwks`` (issue 12, item 1)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import click

from hub.cli_options import CONFIG, DATA_DIR
from hub.cli_options import settings_from as _settings
from hub.config import Settings
from hub.federation.partners import Partner, PartnerStore
from hub.federation.tokens import BackendTokens

_WRITER_SCOPES = frozenset({"system/Organization.cu", "system/Endpoint.cu"})


def _publish(settings: Settings, partner: Partner) -> None:
    """Write the partner's ``Organization`` and ``Endpoint`` (``mappings/partner_to_endpoint``)
    to the store, under the id ``partner-<name>`` of both."""
    from hub.auth import AccessPolicy, Principal
    from hub.engines import open_engine
    from hub.fhir.service import FhirService, ServiceOptions
    from hub.search.registry import default_registry
    from mappings.partner_to_endpoint import partner_to_endpoint

    engine = open_engine(
        settings.database, data_dir=str(settings.data_dir), search_url=settings.elasticsearch_url
    )
    try:
        service = FhirService(
            engine,
            AccessPolicy(demo=False, tokens=[]),
            ServiceOptions(base_url=settings.base_url or "http://localhost/fhir"),
            default_registry(),
        )
        writer = Principal("pixelhub-partners-cli", kind="peer", scopes=_WRITER_SCOPES)
        rid = partner.resource_id
        organization, endpoint = partner_to_endpoint(
            name=partner.name,
            display=partner.label,
            fhir_base=partner.fhir_base,
            enabled=partner.enabled,
            organization_reference=f"Organization/{rid}",
        )
        service.update(writer, "Organization", rid, {**organization, "id": rid})
        service.update(writer, "Endpoint", rid, {**endpoint, "id": rid})
    finally:
        engine.close()


@click.group()
def partners() -> None:
    """Partner sites for federated search (SMART Backend Services clients of each)."""


@partners.command(name="add")
@click.argument("name")
@click.option("--fhir-base", required=True, help="the partner's FHIR base URL (https)")
@click.option("--client-id", required=True, help="this hub's client id at the partner")
@click.option("--token-url", help="the partner's token endpoint [from its smart-configuration]")
@click.option(
    "--private-key",
    type=click.Path(dir_okay=False, exists=True),
    help="PEM key (RS384/ES384) to sign with [this hub's federation key: partners jwks]",
)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="seconds")
@click.option("--display", help="the site's name as people know it [NAME]")
@click.option(
    "--identifier-system",
    "identifier_systems",
    multiple=True,
    help="a patient identifier system the partner knows (repeatable) [all are sent]",
)
@click.option(
    "--map-system",
    "mapped",
    multiple=True,
    help="LOCAL=PARTNER: a local identifier system the partner names otherwise (repeatable)",
)
@click.option("--pixm", is_flag=True, help="ask the partner's PIXm $ihe-pix when no mapping fits")
@click.option("--disabled", is_flag=True, help="register it switched off")
@CONFIG
@DATA_DIR
def partners_add(
    name: str,
    fhir_base: str,
    client_id: str,
    token_url: str | None,
    private_key: str | None,
    timeout: float,
    display: str | None,
    identifier_systems: tuple[str, ...],
    mapped: tuple[str, ...],
    pixm: bool,
    disabled: bool,
    config: str | None,
    **flags: Any,
) -> None:
    """Add (or replace) partner NAME."""
    settings = _settings(config, **flags)
    system_map = {}
    for pair in mapped:
        local, eq, theirs = pair.partition("=")
        if not eq:
            raise click.UsageError(f"--map-system {pair}: write LOCAL=PARTNER")
        system_map[local] = theirs
    partner = Partner(
        name=name,
        fhir_base=fhir_base,
        client_id=client_id,
        token_url=token_url,
        private_key=private_key,
        timeout=timeout,
        enabled=not disabled,
        display=display,
        identifier_systems=identifier_systems,
        system_map=system_map,
        pixm=pixm,
    )
    try:
        partner = PartnerStore(settings.partners_file).put(partner)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _publish(settings, partner)
    state = "enabled" if partner.enabled else "disabled"
    click.echo(f"partner {partner.name} {state}: {partner.fhir_base}")


@partners.command(name="list")
@CONFIG
@DATA_DIR
def partners_list(config: str | None, **flags: Any) -> None:
    """List the partners: name, state, FHIR base, timeout, client id."""
    settings = _settings(config, **flags)
    for p in PartnerStore(settings.partners_file).all():
        state = "enabled" if p.enabled else "disabled"
        click.echo(f"{p.name}\t{state}\t{p.fhir_base}\t{p.timeout:g}s\t{p.client_id}")


def _switch(name: str, enabled: bool, config: str | None, flags: dict[str, Any]) -> None:
    settings = _settings(config, **flags)
    store = PartnerStore(settings.partners_file)
    partner = store.get(name)
    if partner is None:
        raise click.UsageError(f"no partner named {name}")
    partner = store.put(replace(partner, enabled=enabled))
    _publish(settings, partner)
    click.echo(f"partner {name} {'enabled' if enabled else 'disabled'}")


@partners.command(name="enable")
@click.argument("name")
@CONFIG
@DATA_DIR
def partners_enable(name: str, config: str | None, **flags: Any) -> None:
    """Ask partner NAME again in federated searches."""
    _switch(name, True, config, flags)


@partners.command(name="disable")
@click.argument("name")
@CONFIG
@DATA_DIR
def partners_disable(name: str, config: str | None, **flags: Any) -> None:
    """Stop asking partner NAME (its Endpoint becomes ``off``)."""
    _switch(name, False, config, flags)


@partners.command(name="remove")
@click.argument("name")
@CONFIG
@DATA_DIR
def partners_remove(name: str, config: str | None, **flags: Any) -> None:
    """Forget partner NAME's credentials; its Organization and Endpoint stay, switched off, so
    past audit records still lead to them."""
    settings = _settings(config, **flags)
    try:
        removed = PartnerStore(settings.partners_file).remove(name)
    except KeyError:
        raise click.UsageError(f"no partner named {name}") from None
    _publish(settings, replace(removed, enabled=False))
    click.echo(f"partner {name} removed")


@partners.command(name="jwks")
@CONFIG
@DATA_DIR
def partners_jwks(config: str | None, **flags: Any) -> None:
    """Print this hub's public JWK Set, for each partner to register this hub as a
    confidential-asymmetric client (e.g. ``pixelhub clients add HUB --type
    confidential-asymmetric --jwks FILE --scope 'system/ImagingStudy.rs ...'`` there)."""
    settings = _settings(config, **flags)
    tokens = BackendTokens(PartnerStore(settings.partners_file).key_file)
    click.echo(json.dumps(tokens.jwks(), indent=2))
