"""DICOM DIMSE: the ``dicom`` channel of ``pixelhub serve`` (entry point ``pixelhub.channels``)
and the ``dicom`` importer of ``pixelhub import`` (entry point ``pixelhub.importers``).

Modalities and PACS send instances by C-STORE (DICOM PS3.4 B.2, PS3.7 9.1.1); each is stored
as received, durably, before the success status is sent; the study aggregator
(``hub.imaging.study_aggregator``) turns the stored instances into FHIR R4 ``ImagingStudy``.
"""

from adapters.dicom._channel import DicomChannel, create_channel, dicom_store_of, make_ingest
from adapters.dicom._errors import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    OUT_OF_RESOURCES,
    SUCCESS,
    DicomStoreError,
    store_status,
)
from adapters.dicom._ingest import DicomIngest, Received
from adapters.dicom._part10 import file_meta, read_file_meta
from adapters.dicom._scp import TRANSFER_SYNTAXES, PeerRule, StorageScp, parse_peers
from adapters.dicom.importer import DicomImporter, create_importer

__all__ = [
    "CANNOT_UNDERSTAND",
    "DATASET_MISMATCH",
    "OUT_OF_RESOURCES",
    "SUCCESS",
    "TRANSFER_SYNTAXES",
    "DicomChannel",
    "DicomImporter",
    "DicomIngest",
    "DicomStoreError",
    "PeerRule",
    "Received",
    "StorageScp",
    "create_channel",
    "create_importer",
    "dicom_store_of",
    "file_meta",
    "make_ingest",
    "parse_peers",
    "read_file_meta",
    "store_status",
]
