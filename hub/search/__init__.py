"""FHIR R4 search: the SearchParameter registry, index extraction and query parsing (search.html)."""
