"""Elasticsearch as PixelHub's search index at scale (DESIGN.md: storage engines).

Registered as ``elasticsearch`` in the ``pixelhub.search_indexes`` entry point group; the
composition root opens it from ``PIXELHUB_ELASTICSEARCH_URL`` (see ``hub.engines``).
"""

from adapters.elasticsearch.index import ElasticsearchSearchIndex

__all__ = ["ElasticsearchSearchIndex"]
