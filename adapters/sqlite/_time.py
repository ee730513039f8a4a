"""Instants as the store keeps them: integer ms since the Unix epoch (UTC) and the FHIR R4
``instant`` text with millisecond precision and a ``Z`` zone (datatypes.html#instant); shared with
the other SQL engines through ``hub.search.matching``."""

from hub.search.matching import format_ms, instant_range, now_ms, parse_instant

__all__ = ["format_ms", "instant_range", "now_ms", "parse_instant"]
