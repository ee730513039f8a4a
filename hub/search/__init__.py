"""FHIR R4 search: the SearchParameter registry, index extraction and query parsing
(FHIR R4 search.html)."""
