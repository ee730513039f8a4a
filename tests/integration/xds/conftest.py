"""One real ``pixelhub serve`` per session with the ``xds`` SOAP endpoints, and the XDS-I.b
submissions the tests send: the hand-written ITI-41 metadata of ``tests/fixtures/xds`` carrying a
real KOS manifest (``mappings/study_to_kos``) as its MTOM document."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree
from pydicom import dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from mappings.study_to_kos import ManifestInput, ManifestInstance, ManifestPatient, study_to_kos
from tests.integration.dicomweb.conftest import TOKEN, WebHub, start_web_hub, stop_process

FIXTURE = Path(__file__).parents[2] / "fixtures" / "xds" / "pnr_kos_metadata.xml"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
AFFINITY = "2.999.1.1"  # the fixture's affinity domain assigning authority
ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
SET_PATIENT_ID = "urn:uuid:6b5aea1a-875a-4d9f-8f0e-6b08db7d26b0"


@pytest.fixture(scope="session")
def xds_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHub]:
    # dicomweb: the RAD-69 tests load their DICOM instances with STOW-RS
    hub = start_web_hub(tmp_path_factory.mktemp("xds") / "data", channels="xds,dicomweb")
    yield hub
    stop_process(hub.process)
    hub.log.close()


def repository_id(hub: WebHub) -> str:
    return str(json.loads((hub.data_dir / "xds-ids.json").read_text())["repository"])


def kos_bytes(patient_id: str, study_uid: str, sop_uid: str, instances: int = 3) -> bytes:
    """A KOS manifest of an ``instances``-instance CT study, as Part 10 bytes."""
    ds = study_to_kos(
        ManifestInput(
            patient=ManifestPatient(patient_id, "", "Test^Xds"),
            study_uid=study_uid,
            study_date="20240315",
            accession="ACC-2024-0042",
            instances=tuple(
                ManifestInstance(
                    f"{study_uid}.1", "1.2.840.10008.5.1.4.1.1.2", f"{study_uid}.1.{n}"
                )
                for n in range(1, instances + 1)
            ),
            retrieve_location_uid="2.999.9",
            retrieve_ae_title="PIXELHUB",
            manifest_series_uid=f"{study_uid}.9",
            manifest_sop_uid=sop_uid,
            content_datetime=datetime(2024, 3, 15, 12, 0, tzinfo=UTC),
        )
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


@dataclass
class Submission:
    """One ITI-41 request: the SOAP body element, the document, the ids that identify it."""

    body: etree._Element
    document: bytes
    unique_id: str
    patient_mrn: str

    def envelope(self, action: str = ITI41) -> bytes:
        root = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"env": SOAP, "wsa": WSA})
        header = etree.SubElement(root, f"{{{SOAP}}}Header")
        etree.SubElement(header, f"{{{WSA}}}Action").text = action
        etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
        etree.SubElement(root, f"{{{SOAP}}}Body").append(self.body)
        return etree.tostring(root)

    def mtom(self, action: str = ITI41, document: bytes | None = None) -> tuple[str, bytes]:
        boundary = "MIMEBoundary_test"
        body = (
            f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; "
            f'type="application/soap+xml"\r\nContent-ID: <root@test>\r\n\r\n'
        ).encode() + self.envelope(action)
        body += (
            f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\nContent-ID: <{self.cid}>\r\n\r\n"
        ).encode() + (self.document if document is None else document)
        body += f"\r\n--{boundary}--\r\n".encode()
        content_type = (
            f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; '
            f'start="<root@test>"; start-info="application/soap+xml"; action="{action}"'
        )
        return content_type, body

    @property
    def cid(self) -> str:
        """The Content-ID the metadata's ``xop:Include`` names for the document."""
        include = self.body.find(".//{http://www.w3.org/2004/08/xop/include}Include")
        return "none" if include is None else str(include.get("href", "")).removeprefix("cid:")

    def slot(self, name: str) -> etree._Element:
        return self.body.xpath(
            f"//rim:ExtrinsicObject/rim:Slot[@name='{name}']/rim:ValueList/rim:Value",
            namespaces={"rim": RIM},
        )[0]


def new_submission(instances: int = 3) -> Submission:
    """The fixture with its own patient, a fresh KOS uniqueId and the KOS's hash and size."""
    tree = etree.parse(str(FIXTURE))
    body = tree.getroot()
    mrn = f"PX-{uuid.uuid4().hex[:10]}"
    cx = f"{mrn}^^^&{AFFINITY}&ISO"
    for scheme in (PATIENT_ID, SET_PATIENT_ID):
        for element in body.xpath(f"//rim:ExternalIdentifier[@identificationScheme='{scheme}']",
                                  namespaces={"rim": RIM}):  # fmt: skip
            element.set("value", cx)
    sop_uid = f"2.25.{uuid.uuid4().int}"
    study_uid = f"2.25.{uuid.uuid4().int}"
    unique = body.xpath(f"//rim:ExternalIdentifier[@identificationScheme='{UNIQUE_ID}']",
                        namespaces={"rim": RIM})[0]  # fmt: skip
    unique.set("value", sop_uid)
    set_unique = body.xpath(
        "//rim:ExternalIdentifier[@identificationScheme="
        "'urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8']",
        namespaces={"rim": RIM},
    )[0]
    set_unique.set("value", f"2.25.{uuid.uuid4().int}")
    document = kos_bytes(mrn, study_uid, sop_uid, instances)
    submission = Submission(body, document, sop_uid, mrn)
    submission.slot("hash").text = hashlib.sha1(document).hexdigest()
    submission.slot("size").text = str(len(document))
    return submission


__all__ = ["AFFINITY", "ITI18", "ITI41", "ITI43", "TOKEN", "Submission", "new_submission",
           "repository_id", "xds_hub"]  # fmt: skip
