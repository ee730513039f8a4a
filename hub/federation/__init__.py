"""Federation (issue 12): one query across partner sites.

- ``partners``: the partner sites and their credentials (``pixelhub partners``);
- ``http``: the HTTP port to partners (aiohttp) and ``PartnerError``;
- ``tokens``: SMART Backend Services tokens at partners (the client side);
- ``requester``: the user and purpose of use a request carries, and loop prevention;
- ``identity``: naming one patient at each site by identifier, PIXm when configured;
- ``search``: the fan-out, merge and paging of ``/fhir/federated/<type>``;
- ``pix``: this hub's own PIXm ``Patient/$ihe-pix`` for its partners.
"""

from hub.federation.partners import FEDERATED_TYPES, Partner, PartnerStore, site_id
from hub.federation.search import FederatedSearch, FederationOptions
from hub.federation.tokens import BackendTokens

__all__ = [
    "FEDERATED_TYPES",
    "BackendTokens",
    "FederatedSearch",
    "FederationOptions",
    "Partner",
    "PartnerStore",
    "site_id",
]
