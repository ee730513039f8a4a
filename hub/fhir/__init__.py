"""FHIR R4 REST semantics: the interactions of http.html, independent of any HTTP framework."""
