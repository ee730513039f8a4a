"""PixelHub's HTTP front door (FastAPI): FHIR, health, metrics; later DICOMweb, XDS, OAuth, app."""
