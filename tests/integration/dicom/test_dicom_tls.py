"""DICOM over TLS (PS3.15 B.9, BCP 195: TLS 1.2+): with ``dicom_tls_ca`` set, the association
requestor must present a certificate the CA signed; plain TCP and unsigned peers get nothing."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from tests.integration.dicom.dicom_support import AET, CT_CLASS, make_ct


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem",
                cwd=folder)  # fmt: skip
    return {
        n: folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    }


def client_context(pki: dict[str, Path], *, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca.pem"]))
    if with_certificate:
        context.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
    return context


def associate(port: int, tls: ssl.SSLContext | None) -> Any:
    ae = AE(ae_title="PYSCU")
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context(CT_CLASS, ExplicitVRLittleEndian)
    ae.add_requested_context("1.2.840.10008.1.1")
    return ae.associate(
        "127.0.0.1", port, ae_title=AET, tls_args=(tls, "localhost") if tls else None
    )


def test_tls_with_client_certificates(dicom_hub_factory: Any, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    hub = dicom_hub_factory(
        dicom_tls_cert=pki["server.pem"],
        dicom_tls_key=pki["server.key"],
        dicom_tls_ca=pki["ca.pem"],
    )
    assoc = associate(hub.port, client_context(pki, with_certificate=True))
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        ds = make_ct(sop=generate_uid(), study=generate_uid())
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    assert hub.store.get(ds.SOPInstanceUID) is not None

    unsigned = associate(hub.port, client_context(pki, with_certificate=False))
    assert not unsigned.is_established
    plain = associate(hub.port, None)
    assert not plain.is_established
    for refused in (unsigned, plain):  # pynetdicom's requestor leaves a refused socket open
        sock = refused.dul.socket.socket if refused.dul.socket else None
        if sock is not None:
            sock.close()

    again = associate(hub.port, client_context(pki, with_certificate=True))  # still serving
    assert again.is_established
    again.release()
