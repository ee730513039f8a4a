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
