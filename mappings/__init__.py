"""Pure mappings from source formats (DICOM, HL7 v2, XDS, media) to FHIR R4 resources."""
