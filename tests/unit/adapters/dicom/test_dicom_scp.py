"""The storage SCP's configuration: peers, SOP classes and transfer syntaxes offered, the
channel entry point, the public surface."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import pydicom.uid
import pytest
from pynetdicom import AllStoragePresentationContexts

import adapters.dicom
from adapters.dicom import TRANSFER_SYNTAXES, PeerRule, create_channel, dicom_store_of, parse_peers
from adapters.dicom._channel import NoDicomStore
from adapters.dicom._scp import NON_PATIENT_OBJECTS, storage_sop_classes


def test_peers() -> None:
    rules = parse_peers(["CT01", " MR01@10.0.0.5 "], demo=False)
    assert rules == [PeerRule("CT01"), PeerRule("MR01", "10.0.0.5")]
    assert rules is not None
    assert rules[0].allows("CT01", "192.168.1.1")
    assert rules[1].allows("MR01", "10.0.0.5") and not rules[1].allows("MR01", "10.0.0.6")
    assert not rules[0].allows("CT02", None)
    assert parse_peers(["*"], demo=True) is None
    assert parse_peers([], demo=True) is None  # the demo accepts anyone unless told otherwise
    assert parse_peers([], demo=False) == []  # outside the demo: nobody until configured
    with pytest.raises(ValueError, match="only with --demo"):
        parse_peers(["*"], demo=False)
    with pytest.raises(ValueError):
        parse_peers(["THIS-TITLE-IS-TOO-LONG"], demo=False)


def test_every_standard_transfer_syntax_is_offered() -> None:
    assert set(pydicom.uid.AllTransferSyntaxes) <= set(TRANSFER_SYNTAXES)
    assert len(set(TRANSFER_SYNTAXES)) == len(TRANSFER_SYNTAXES)


def test_every_storage_class_is_offered_retired_ones_too() -> None:
    classes = set(storage_sop_classes())
    assert {str(c.abstract_syntax) for c in AllStoragePresentationContexts} <= classes
    assert "1.2.840.10008.5.1.4.1.1.6" in classes  # Ultrasound Image Storage (Retired)
    assert "1.2.840.10008.5.1.4.1.1.3" in classes  # Ultrasound Multi-frame (Retired)
    assert not classes & NON_PATIENT_OBJECTS
    assert "1.2.840.10008.1.20.1" not in classes  # Storage Commitment is not a storage class


def test_registered_as_the_dicom_channel() -> None:
    (ep,) = [e for e in entry_points(group="pixelhub.channels") if e.name == "dicom"]
    assert ep.load() is create_channel


def test_an_engine_without_a_dicom_store_is_refused() -> None:
    with pytest.raises(NoDicomStore):
        dicom_store_of(SimpleNamespace(name="elsewhere"))  # type: ignore[arg-type]


def test_public_surface() -> None:
    assert sorted(adapters.dicom.__all__) == sorted(
        name
        for name in dir(adapters.dicom)
        if not name.startswith("_")
        and name not in {"annotations"}
        and not isinstance(getattr(adapters.dicom, name), type(adapters.dicom))
    )
    assert Path(adapters.dicom.__file__).parent.name == "dicom"


def test_the_store_response_is_encoded_as_pynetdicom_encodes_it() -> None:
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    from adapters.dicom._scp import _plain_response as _store_response

    for instance in ("1.2.3.44", "1.2.3.4"):  # odd and even lengths (NUL padding)
        for status in (0x0000, 0xB000):
            rsp = C_STORE()
            rsp.MessageIDBeingRespondedTo = 7
            rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            rsp.AffectedSOPInstanceUID = instance
            rsp.Status = status
            message = C_STORE_RSP()
            message.primitive_to_message(rsp)
            [pdata] = list(message.encode_msg(1, 16384))
            [(context_id, pdv)] = pdata.presentation_data_value_list
            assert context_id == 1 and pdv == b"\x03" + (_store_response(rsp) or b"")
    rsp.ErrorComment = "refused"  # anything beyond a status is left to pynetdicom
    assert _store_response(rsp) is None


def test_a_find_response_is_encoded_as_pynetdicom_encodes_it() -> None:
    from io import BytesIO

    from pynetdicom.dimse_messages import C_FIND_RSP
    from pynetdicom.dimse_primitives import C_FIND

    from adapters.dicom._scp import _plain_response

    for identifier in (BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "), None):
        for status in (0xFF00, 0x0000, 0xFE00):
            rsp = C_FIND()
            rsp.MessageIDBeingRespondedTo = 3
            rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
            rsp.Status = status
            rsp.Identifier = identifier
            message = C_FIND_RSP()
            message.primitive_to_message(rsp)
            pdatas = list(message.encode_msg(1, 16384))
            command = pdatas[0].presentation_data_value_list[0][1]
            assert command == b"\x03" + (_plain_response(rsp) or b"")


def test_each_association_gets_its_own_copy_of_the_supported_contexts() -> None:
    import copy

    from pynetdicom.presentation import build_context

    from adapters.dicom._scp import _SupportedContexts

    contexts = _SupportedContexts(
        [build_context("1.2.840.10008.5.1.4.1.1.2", TRANSFER_SYNTAXES[:3])]
    )
    [twin] = copy.deepcopy(contexts)
    [original] = contexts
    assert twin is not original and twin.transfer_syntax == original.transfer_syntax
    assert twin.abstract_syntax == original.abstract_syntax
    twin.transfer_syntax.clear()
    assert len(original.transfer_syntax) == 3
