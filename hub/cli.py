"""The ``pixelhub`` command line (``python -m hub`` is the same)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from hub import __version__
from hub.audit.cli import audit
from hub.cli_options import CONFIG as _CONFIG
from hub.cli_options import DATA_DIR as _DATA_DIR
from hub.cli_options import settings_from as _settings
from hub.federation.cli import partners


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
@click.option("--elasticsearch-url", help="search index URL [the store's own index]")
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


@main.group()
def clients() -> None:
    """Register and list SMART clients (SMART App Launch 2.2 ``client-authentication.html``)."""


@clients.command(name="add")
@click.argument("name")
@click.option(
    "--type",
    "client_type",
    required=True,
    type=click.Choice(["public", "confidential-symmetric", "confidential-asymmetric"]),
    help="public: PKCE only; symmetric: a generated secret; asymmetric: private_key_jwt",
)
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="where the authorization endpoint may send the browser back (repeatable)",
)
@click.option(
    "--jwks",
    "jwks_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="JWK Set file with the client's public keys (asymmetric clients)",
)
@click.option(
    "--jwks-url",
    "jwks_uri",
    help="URL of the client's JWK Set, fetched when needed (asymmetric clients, instead of --jwks)",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="scope the client may be granted, e.g. system/ImagingStudy.rs (repeatable)",
)
@_CONFIG
@_DATA_DIR
def clients_add(
    name: str,
    client_type: str,
    jwks_file: Path | None,
    jwks_uri: str | None,
    redirect_uris: tuple[str, ...],
    scopes: tuple[str, ...],
    config: str | None,
    **flags: Any,
) -> None:
    """Register client NAME; prints its client_id (and, once, its secret)."""
    import json

    from hub.smart import ClientStore

    settings = _settings(config, **flags)
    jwks = None
    if jwks_file is not None:
        try:
            jwks = json.loads(jwks_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.UsageError(f"--jwks: not a JSON file: {exc}") from None
    words = tuple(w for s in scopes for w in s.split())
    try:
        client, secret = ClientStore(settings.clients_file).add(
            name,
            client_type,  # type: ignore[arg-type]
            words,
            jwks=jwks,
            redirect_uris=redirect_uris,
            jwks_uri=jwks_uri,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"client_id: {client.client_id}")
    if secret is not None:
        click.echo(f"client_secret: {secret}")
        click.echo("The secret is shown only now; PixelHub keeps only its hash.", err=True)


@clients.command(name="list")
@_CONFIG
@_DATA_DIR
def clients_list(config: str | None, **flags: Any) -> None:
    """List the registered clients (never their secrets)."""
    from hub.smart import ClientStore

    settings = _settings(config, **flags)
    for client in ClientStore(settings.clients_file).list():
        click.echo(f"{client.client_id}\t{client.name}\t{client.type}\t{' '.join(client.scopes)}")


@main.group()
def users() -> None:
    """Manage the local users who sign in to SMART apps."""


@users.command(name="add")
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["clinician", "technologist", "auditor", "admin"]),
    help="repeatable",
)
@click.option("--fhir-user", required=True, help="the FHIR user, e.g. Practitioner/123")
@click.password_option(help="asked for when not given (twice, hidden)")
@_CONFIG
@_DATA_DIR
def users_add(
    name: str,
    roles: tuple[str, ...],
    fhir_user: str,
    password: str,
    config: str | None,
    **flags: Any,
) -> None:
    """Add user NAME (the password is stored as an scrypt hash)."""
    from hub.smart.users import UserStore

    settings = _settings(config, **flags)
    try:
        UserStore(settings.users_file).add(name, password, roles, fhir_user)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"user {name} added")


@users.command(name="list")
@_CONFIG
@_DATA_DIR
def users_list(config: str | None, **flags: Any) -> None:
    """List the users (never their password hashes)."""
    from hub.smart.users import UserStore

    settings = _settings(config, **flags)
    for user in UserStore(settings.users_file).list():
        click.echo(f"{user.username}\t{','.join(user.roles)}\t{user.fhir_user}")


main.add_command(audit)
main.add_command(partners)


@main.group()
def keys() -> None:
    """PixelHub's token-signing keys (``/auth/jwks``): list, rotate by ``kid``, retire."""


@keys.command(name="list")
@_CONFIG
@_DATA_DIR
def keys_list(config: str | None, **flags: Any) -> None:
    """List the published keys: kid, algorithm, active (signs new tokens) or not."""
    from hub.smart import KeyStore

    settings = _settings(config, **flags)
    for key, active in KeyStore(settings.keys_dir).listing():
        click.echo(f"{key.kid}\t{key.alg}\t{'active' if active else 'published'}")


@keys.command(name="rotate")
@click.option(
    "--alg",
    "algs",
    multiple=True,
    type=click.Choice(["RS384", "ES384", "RS256"]),
    help="rotate only these algorithms' keys (repeatable) [all]",
)
@_CONFIG
@_DATA_DIR
def keys_rotate(algs: tuple[str, ...], config: str | None, **flags: Any) -> None:
    """New active signing keys; the old ones stay published (and verifying) until retired.
    A running hub picks the change up within a second."""
    from hub.smart import KeyStore

    settings = _settings(config, **flags)
    store = KeyStore(settings.keys_dir)
    for kid in store.rotate(algs) if algs else store.rotate():
        click.echo(f"active: {kid}")


@keys.command(name="retire")
@click.argument("kid")
@_CONFIG
@_DATA_DIR
def keys_retire(kid: str, config: str | None, **flags: Any) -> None:
    """Unpublish the inactive key KID: tokens it signed stop verifying. A kid is a base64url
    thumbprint and may begin with '-': then write it after '--' (keys retire -- -Xy...)."""
    from hub.smart import KeyStore

    settings = _settings(config, **flags)
    try:
        KeyStore(settings.keys_dir).retire(kid)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"retired: {kid}")


@main.command()
@_CONFIG
@_DATA_DIR
@click.option("--database-url", help="store of record URL [sqlite in the data dir]")
@click.option("--elasticsearch-url", help="the search index to rebuild")
@click.option("--type", "types", multiple=True, help="resource type to rebuild (repeatable) [all]")
def reindex(config: str | None, types: tuple[str, ...], **flags: Any) -> None:
    """Rebuild the search index (Elasticsearch) from the store of record: new indexes are built
    and swapped in atomically, searches keep answering meanwhile."""
    from rich.progress import Progress

    from hub.engines import open_engine
    from hub.errors import HubError
    from hub.reindex import reindex as run
    from hub.search.registry import default_registry

    settings = _settings(config, **flags)
    if not settings.elasticsearch_url:
        raise click.UsageError("no search index to rebuild: set --elasticsearch-url")
    engine = open_engine(
        settings.database,
        data_dir=str(settings.data_dir),
        search_url=settings.elasticsearch_url,
    )
    try:
        with Progress(transient=False) as progress:
            task = progress.add_task("indexing", total=None)
            indexed, replayed = run(
                engine,
                default_registry(),
                types,
                on_start=lambda total: progress.update(task, total=total),
                advance=lambda n: progress.advance(task, n),
            )
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.close()
    click.echo(f"reindexed {indexed} resources; replayed {replayed} changes made meanwhile")
