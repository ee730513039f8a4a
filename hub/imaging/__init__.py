"""Imaging-specific derived state: order <-> study linking by accession number."""

from hub.imaging.order_linking import (
    DEFAULT_ACCESSION_SYSTEM,
    OrderLinkingProjector,
    find_by_accession,
)

__all__ = ["DEFAULT_ACCESSION_SYSTEM", "OrderLinkingProjector", "find_by_accession"]
