"""Imaging-specific derived state: order <-> study linking by accession number, and DICOM
instances -> one ImagingStudy per study."""

from hub.imaging.order_linking import (
    DEFAULT_ACCESSION_SYSTEM,
    OrderLinkingProjector,
    find_by_accession,
)
from hub.imaging.study_aggregator import StudyAggregator, study_resource_id

__all__ = [
    "DEFAULT_ACCESSION_SYSTEM",
    "OrderLinkingProjector",
    "StudyAggregator",
    "find_by_accession",
    "study_resource_id",
]
