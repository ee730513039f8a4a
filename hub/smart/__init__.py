"""PixelHub's SMART on FHIR authorization server (SMART App Launch 2.2, backend services)."""

from hub.smart.clients import CLIENT_TYPES, Client, ClientStore
from hub.smart.keys import KeyStore
from hub.smart.scopes import ResourceScope, parse_scope, parse_scopes
from hub.smart.server import AuthorizationServer, Endpoints, InvalidToken, OAuthError

__all__ = [
    "CLIENT_TYPES",
    "AuthorizationServer",
    "Client",
    "ClientStore",
    "Endpoints",
    "InvalidToken",
    "KeyStore",
    "OAuthError",
    "ResourceScope",
    "parse_scope",
    "parse_scopes",
]
