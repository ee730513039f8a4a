"""Errors of the DICOM channel and the C-STORE status each becomes (DICOM PS3.4 B.2.3,
Table B.2-1; PS3.7 C.4.2.1.5 Error Comment).

Where they enter: pydicom raises while the received header is parsed (``InvalidDicomError``,
``EOFError``, ``struct.error``, ``ValueError``...); the mapping raises
``mappings.dicom_instance.DicomMappingError`` for a missing or malformed Type 1 UID; the blob store
and the instance store raise ``hub.errors.HubError``. Where they leave: ``store_status`` turns each
into ``(status, error comment)``::

    DicomStoreError            as raised (UID mismatch 0xA900, truncated data 0xC000...)
    DicomMappingError          0xA900 missing UID (the data set does not match its SOP Class),
                               0xC000 a UID that is present but malformed
    pydicom / parse errors     0xC000 cannot understand
    HubError
    ├── OutOfResources         0xA700 refused: out of resources (disk full, store busy)
    └── other                  0xC000
    anything else              0xC000 (logged)
"""

from __future__ import annotations

import struct

from pydicom.errors import InvalidDicomError

from hub.errors import HubError, OutOfResources
from mappings.dicom_instance import DicomMappingError

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources
DATASET_MISMATCH = 0xA900  # Error: Data Set does not match SOP Class
CANNOT_UNDERSTAND = 0xC000  # Error: Cannot understand
MAX_COMMENT = 64  # Error Comment (0000,0902) is LO: at most 64 characters (PS3.5 6.2)

PARSE_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    EOFError,
    struct.error,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    OverflowError,
    NotImplementedError,
    UnicodeError,
)


class DicomStoreError(Exception):
    """A C-STORE refused by the channel itself, with its status and Error Comment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


def comment(text: str) -> str:
    """An Error Comment: ASCII, no backslash, at most 64 characters."""
    clean = text.encode("ascii", "replace").decode("ascii").replace("\\", "/")
    clean = " ".join(clean.split())
    return clean if len(clean) <= MAX_COMMENT else clean[: MAX_COMMENT - 3] + "..."


def store_status(exc: BaseException) -> tuple[int, str]:
    """The C-STORE status and Error Comment for an error raised while storing an instance."""
    if isinstance(exc, DicomStoreError):
        return exc.status, comment(exc.comment)
    if isinstance(exc, DicomMappingError):
        where = f"{exc.keyword} {exc.tag}".strip()
        text = str(exc)
        missing = "missing" in text.lower() or "absent" in text.lower() or "empty" in text.lower()
        status = DATASET_MISMATCH if missing else CANNOT_UNDERSTAND
        return status, comment(f"{'Missing' if missing else 'Invalid'} {where}")
    if isinstance(exc, OutOfResources):
        return OUT_OF_RESOURCES, comment(f"Out of resources: {exc.message}")
    if isinstance(exc, HubError):
        return CANNOT_UNDERSTAND, comment(exc.message)
    if isinstance(exc, PARSE_ERRORS):
        return CANNOT_UNDERSTAND, comment(f"Cannot parse data set: {exc}")
    return CANNOT_UNDERSTAND, comment(f"Internal error: {type(exc).__name__}")
