"""A real SOAP client against PixelHub's XDS.b endpoints: zeep, driven by the WSDL written for
these tests (tests/fixtures/xds/xds-b.wsdl), with its WS-Addressing plugin. ITI-41 with the
document inline (base64, as zeep sends it), ITI-18 FindDocuments, and ITI-43 whose MTOM answer
zeep decodes itself (XOP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from lxml import etree
from zeep import Client, Settings
from zeep.transports import Transport
from zeep.wsa import WsAddressingPlugin

from tests.integration.dicomweb.conftest import TOKEN, WebHub
from tests.integration.xds.conftest import AFFINITY, new_submission, repository_id
from tests.integration.xds.test_xds_exchange import APPROVED, FIND_DOCUMENTS, QUERY, RIM, patient

WSDL = Path(__file__).parents[2] / "fixtures" / "xds" / "xds-b.wsdl"
XDSB = "{urn:ihe:iti:xds-b:2007}"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"


@pytest.fixture
def client(xds_hub: WebHub) -> Iterator[Client]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    with session:
        yield Client(
            str(WSDL),
            transport=Transport(session=session, timeout=30),
            plugins=[WsAddressingPlugin()],
            settings=Settings(strict=True, raw_response=False),
        )


def service(client: Client, hub: WebHub, port: str, path: str) -> object:
    binding = f"{XDSB}{port}_Binding_Soap12"
    return client.create_service(binding, f"{hub.url}/xds/{path}")


def test_zeep_provides_queries_and_retrieves(client: Client, xds_hub: WebHub) -> None:
    submission = new_submission()
    patient(xds_hub, submission.patient_mrn)
    submit = submission.body.find(
        "{urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0}SubmitObjectsRequest"
    )
    repository = service(client, xds_hub, "DocumentRepository", "repository")
    # ITI-41: the metadata as is, the document inline (zeep base64-encodes it)
    provide = repository["DocumentRepository_ProvideAndRegisterDocumentSet-b"]
    answer = provide(
        _value_1=submit, Document=[{"_value_1": submission.document, "id": "Document01"}]
    )
    assert answer.status == SUCCESS, answer
    # ITI-18: FindDocuments, LeafClass
    query = etree.fromstring(
        f'<rim:AdhocQuery xmlns:rim="{RIM}" id="{FIND_DOCUMENTS}">'
        f'<rim:Slot name="$XDSDocumentEntryPatientId"><rim:ValueList><rim:Value>'
        f"'{submission.patient_mrn}^^^&amp;{AFFINITY}&amp;ISO'</rim:Value></rim:ValueList></rim:Slot>"
        f'<rim:Slot name="$XDSDocumentEntryStatus"><rim:ValueList><rim:Value>'
        f"('{APPROVED}')</rim:Value></rim:ValueList></rim:Slot></rim:AdhocQuery>"
    )
    option = etree.fromstring(
        f'<query:ResponseOption xmlns:query="{QUERY}" returnType="LeafClass" returnComposedObjects="true"/>'
    )
    registry = service(client, xds_hub, "DocumentRegistry", "registry")
    found = registry.DocumentRegistry_RegistryStoredQuery(_value_1=[option, query])
    assert found.status == SUCCESS
    [objects] = found._value_1
    entries = objects.findall(f"{{{RIM}}}ExtrinsicObject")
    assert len(entries) == 1
    # ITI-43: zeep reads the MTOM answer and resolves the xop:Include itself
    retrieved = repository.DocumentRepository_RetrieveDocumentSet(
        DocumentRequest=[{
            "RepositoryUniqueId": repository_id(xds_hub),
            "DocumentUniqueId": submission.unique_id,
        }]
    )  # fmt: skip
    assert retrieved.RegistryResponse.status == SUCCESS
    [document] = retrieved.DocumentResponse
    assert document.mimeType == "application/dicom"
    assert document.Document == submission.document
