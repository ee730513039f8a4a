"""What ``POST /media`` does with a received upload, and how renditions are served back
(IHE Encounter-Based Imaging Workflow; FHIR R4 documentreference.html).

Upload, in order, so that nothing is acknowledged before it is durable and nothing half-made
is left behind on a refusal:

1. the fields are checked (400) and the patient, encounter, operator and device resolved
   through the FHIR service as the caller (422 when unknown or not visible to it, or when the
   encounter is another patient's);
2. the real type is detected from the bytes (415, 422 for a declared type the bytes deny or a
   polyglot), images are fully decoded under a pixel limit (422 for a bomb or corrupt pixels),
   videos and PDFs opened (422 when corrupt); EXIF gives the capture time and camera;
3. the original is stored unchanged, the metadata-free renditions beside it (blobs, fsynced);
4. when asked (``wrap=dicom``) or by department policy (``media_dicom_wrapping``), a DICOM
   object is made (VL Photographic Image, Video Photographic Image, Encapsulated PDF; audio is
   refused with 422) as a file in the spool before anything is stored, so a video that cannot be
   remuxed or transcoded leaves nothing behind; after step 3 it is stored through the DICOM
   importer (``pixelhub.importers`` entry point ``dicom``: the same path as C-STORE), so it
   becomes an ``ImagingStudy`` like any other; its UIDs are derived from the bytes, so a retry
   stores nothing twice;
5. the ``DocumentReference`` is created as the caller (SMART scopes apply), conditionally on
   its identifier (derived from the bytes and the patient): the same upload again answers the
   existing record.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from PIL import Image, ImageOps
from pydicom.uid import generate_uid

from adapters.media import _images, _sniff, _video, _wrap
from adapters.media._fields import CaptureFields, capture_fields
from adapters.media._form import Upload
from hub.auth import Principal
from hub.blobs import open_blob_store
from hub.channels import ChannelContext
from hub.errors import Forbidden, Gone, NotFound, Unprocessable
from hub.fhir.binary import blob_of
from hub.fhir.service import WriteResult
from hub.importers import ImportItem, available_importers
from hub.ports import BlobStore
from mappings.identifier_system import issuer_of
from mappings.media_to_documentreference import (
    BLOB_EXTENSION,
    Capture,
    Rendition,
    media_to_documentreference,
)

DOCUMENT = "DocumentReference"
ROLES = ("original", "preview", "thumbnail")
# PS3.3 C.7.6.1.1.5.1: pixels that were once lossy-compressed stay marked so when wrapped.
_LOSSY_METHOD = {
    "image/jpeg": "ISO_10918_1",
    "image/heic": "ISO_23008_2",
    "image/heif": "ISO_23008_2",
}
_NAMESPACE = uuid.UUID("6f1c3a52-8f0e-4b59-9a55-0f3e5b7d2c11")  # PixelHub media identifiers


@dataclass(frozen=True)
class Served:
    """A rendition to send: its bytes and how to label them."""

    stream: BinaryIO
    content_type: str
    size: int | None
    title: str | None
    etag: str


@dataclass
class _Resolved:
    patient: dict[str, Any]
    patient_ref: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MediaService:
    """The media web service's logic over one ``ChannelContext``."""

    def __init__(self, context: ChannelContext, blobs: BlobStore | None = None) -> None:
        self.context = context
        self.settings = context.settings
        self.blobs = blobs or open_blob_store(context.settings.data_dir)
        self.spool_dir = str(Path(context.settings.data_dir) / "media-spool")
        self.views_dir = Path(context.settings.data_dir) / "media-views"
        self._itself = context.peer("pixelhub-media", None)  # reads Binaries for their views
        base = context.service.options.base_url.rstrip("/")
        self.origin = base.removesuffix("/fhir")

    # ------------------------------------------------------------------ access

    def authorize_upload(self, principal: Principal) -> None:
        """Uploading creates a DocumentReference: 403 before the body is read otherwise."""
        self.context.policy.check(principal, "create", DOCUMENT)

    def _read(self, principal: Principal, reference: str, field: str) -> dict[str, Any]:
        rtype, _, rid = reference.partition("/")
        try:
            stored = self.context.service.read(principal, rtype, rid)
        except (NotFound, Gone, Forbidden) as exc:
            raise Unprocessable(f"{field}: {reference} is not known") from exc
        assert stored.data is not None
        resource: dict[str, Any] = orjson.loads(stored.data)
        return resource

    def _resolve_patient(self, principal: Principal, patient: str) -> _Resolved:
        if "|" not in patient:
            return _Resolved(self._read(principal, patient, "patient"), patient)
        try:
            bundle = self.context.service.search(
                principal, "Patient", [("identifier", patient), ("_count", "2")]
            )
        except Forbidden as exc:
            raise Unprocessable(f"patient: {patient} is not known") from exc
        entries = [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
        if len(entries) != 1:
            found = "no patient" if not entries else "more than one patient"
            raise Unprocessable(f"patient: {found} has the identifier {patient}")
        resource = orjson.loads(orjson.dumps(entries[0]))
        return _Resolved(resource, f"Patient/{resource['id']}")

    def _check_references(self, principal: Principal, fields: CaptureFields, patient: str) -> None:
        if fields.encounter:
            encounter = self._read(principal, fields.encounter, "encounter")
            subject = str(encounter.get("subject", {}).get("reference", ""))
            if "/".join(subject.split("/_history")[0].split("/")[-2:]) != patient:
                raise Unprocessable(f"encounter: {fields.encounter} is not {patient}'s")
        if fields.operator:
            self._read(principal, fields.operator, "operator")
        if fields.device and fields.device.startswith("Device/"):
            self._read(principal, fields.device, "device")

    # ------------------------------------------------------------------ upload

    def upload(self, principal: Principal, upload: Upload) -> WriteResult:
        """Steps 1-5 of the module docstring; the spooled file is removed in every case."""
        try:
            return self._upload(principal, upload)
        finally:
            upload.discard()

    def _upload(self, principal: Principal, upload: Upload) -> WriteResult:
        fields = capture_fields(upload.fields)
        resolved = self._resolve_patient(principal, fields.patient)
        self._check_references(principal, fields, resolved.patient_ref)
        assert upload.path is not None
        detected = self._detect(upload)
        wrap = self._wants_wrap(fields)
        if wrap and detected.kind not in ("image", "video") and detected.mime != "application/pdf":
            raise Unprocessable(
                f"DICOM wrapping of {detected.mime} is not supported: "
                "only photos, videos and PDFs are wrapped"
            )
        facts = self._examine(upload.path, detected)
        captured = fields.captured or facts.captured
        views = facts.views
        identifier = uuid.uuid5(_NAMESPACE, f"{upload.sha256}|{resolved.patient_ref}")
        doc_id = str(identifier)
        with ExitStack() as stack:
            part10 = None
            if wrap:
                attrs = self._wrap_attributes(upload, fields, resolved, facts, captured, detected)
                part10 = stack.enter_context(self._dicom_file(upload, detected, attrs))
            renditions = [
                self._store(
                    upload.path, "original", detected.mime, doc_id, upload.filename, upload.sha1
                )
            ]
            for role, data in zip(("thumbnail", "preview"), views or (), strict=False):
                renditions.append(self._store_bytes(data, role, doc_id))
            study_uid = None
            if part10 is not None:
                study_uid, dicom = self._import_dicom(part10, attrs)
                renditions.append(dicom)
        capture = Capture(
            identifier=f"urn:uuid:{identifier}",
            patient=resolved.patient_ref,
            kind=detected.kind,
            recorded=_now(),
            renditions=renditions,
            encounter=fields.encounter,
            ology=fields.ology,
            body_site=fields.body_site,
            laterality=fields.laterality,
            modality=fields.modality,
            view=fields.view,
            operator=fields.operator,
            device=fields.device or facts.device,
            captured=captured,
            description=fields.description,
            accession=fields.accession,
            study_uid=study_uid,
        )
        resource = media_to_documentreference(capture)
        result = self.context.service.create(
            principal,
            DOCUMENT,
            resource,
            if_none_exist=f"identifier=urn:ietf:rfc:3986|urn:uuid:{identifier}",
            new_id=doc_id,
        )
        self.context.notify_change()
        return result

    def _detect(self, upload: Upload) -> _sniff.Detected:
        assert upload.path is not None
        with open(upload.path, "rb") as fp:
            head = fp.read(_sniff.HEAD)
            fp.seek(max(0, upload.size - _sniff.TAIL))
            tail = fp.read(_sniff.TAIL)
        detected = _sniff.detect(head, tail, upload.size)
        _sniff.check_declared(upload.declared_type, detected)
        return detected

    def _examine(self, path: str, detected: _sniff.Detected) -> _Facts:
        """Open the bytes as what they are: decoded in full for images (the pixel limit first)."""
        limit = self.settings.media_max_pixels
        if detected.kind == "image":
            facts, views = _images.examine(path, max_pixels=limit)
            device = " ".join(p for p in (facts.make, facts.model) if p) or None
            return _Facts(facts.captured, device, views, (facts.make or "", facts.model or ""))
        if detected.kind == "video":
            _images.video_facts(path)  # opens the container: 422 when it is not one
            return _Facts(None, None, _images.video_poster(path))
        if detected.mime == "application/pdf":
            return _Facts(None, None, _images.pdf_views(path))
        return _Facts(None, None, None)

    def _url(self, doc_id: str, role: str) -> str:
        return f"{self.origin}/media/{doc_id}/{role}"

    def _store(
        self, path: str, role: str, mime: str, doc_id: str, title: str | None, sha1: bytes
    ) -> Rendition:
        with open(path, "rb") as fp:
            ref = self.blobs.put(fp, prefix="media")
        return Rendition(
            role="original",
            content_type=mime,
            url=self._url(doc_id, role),
            blob_key=ref.key,
            size=ref.size,
            sha1=base64.b64encode(sha1).decode(),
            title=title,
        )

    def _store_bytes(self, data: bytes, role: str, doc_id: str) -> Rendition:
        with self._spooled(data) as fp:
            ref = self.blobs.put(fp, prefix="media")
        return Rendition(
            role="preview" if role == "preview" else "thumbnail",
            content_type="image/jpeg",
            url=self._url(doc_id, role),
            blob_key=ref.key,
            size=ref.size,
        )

    @contextmanager
    def _spooled(self, data: bytes) -> Iterator[BinaryIO]:
        os.makedirs(self.spool_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.spool_dir) as fp:
            fp.write(data)
            fp.seek(0)
            yield fp

    # ------------------------------------------------------------------ DICOM wrapping

    def _wants_wrap(self, fields: CaptureFields) -> bool:
        if fields.wrap is not None:
            return fields.wrap == "dicom"
        return fields.ology is not None and fields.ology in self.settings.media_dicom_wrapping

    @contextmanager
    def _dicom_file(
        self, upload: Upload, detected: _sniff.Detected, attrs: _wrap.WrapAttributes
    ) -> Iterator[Path]:
        """The capture as a DICOM Part-10 file in a work directory of the spool, removed with
        everything else made on the way (step 4); 422 when it cannot be made."""
        assert upload.path is not None
        os.makedirs(self.spool_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.spool_dir) as work:
            path = Path(work) / "capture.dcm"
            if detected.kind == "video":
                video = _video.h264_mp4(upload.path, work)
                _wrap.wrap_video(video, attrs=attrs, path=path)
            elif detected.kind == "image":
                path.write_bytes(self._wrap_image(upload.path, detected, attrs))
            elif detected.mime == "application/pdf":
                title = upload.filename or "Document"
                path.write_bytes(_wrap.wrap_pdf(upload.path, attrs=attrs, title=title))
            else:  # refused before anything was stored (``_upload``)
                raise AssertionError(f"no DICOM wrapping for {detected.mime}")
            yield path

    def _import_dicom(self, part10: Path, attrs: _wrap.WrapAttributes) -> tuple[str, Rendition]:
        """The DICOM object of the capture, stored through the DICOM importer (step 4)."""
        importers = available_importers()
        if "dicom" not in importers:
            raise Unprocessable("DICOM wrapping needs the dicom importer, which is not installed")
        importer = importers["dicom"](self.context)
        outcome = importer.import_one(ImportItem(part10))
        importer.finish()
        if outcome.status == "rejected":
            reason = outcome.reason
            raise Unprocessable(f"The DICOM object made of the capture was refused: {reason}")
        url = (
            f"{self.origin}/dicomweb/studies/{attrs.study_uid}/series/{attrs.series_uid}"
            f"/instances/{attrs.sop_uid}"
        )
        rendition = Rendition(role="dicom", content_type="application/dicom", url=url)
        return attrs.study_uid, rendition

    def _wrap_image(
        self, path: str, detected: _sniff.Detected, attrs: _wrap.WrapAttributes
    ) -> bytes:
        """A baseline JPEG as it is (metadata segments removed, PS3.5 A.4.1); any other image,
        or a JPEG that needs its EXIF orientation applied, as its decoded RGB pixels."""
        with Image.open(path) as image:
            upright = image.getexif().get(0x0112, 1) in (0, 1)
            if detected.mime == "image/jpeg" and upright:
                with open(path, "rb") as fp:
                    jpeg = _images.strip_jpeg_metadata(fp.read())
                ok, components, photometric = _images.is_baseline_jpeg(jpeg)
                if ok:
                    return _wrap.wrap_jpeg(
                        jpeg, attrs=attrs, width=image.width, height=image.height,
                        components=components, photometric=photometric,
                    )  # fmt: skip
            rgb = ImageOps.exif_transpose(image).convert("RGB")
            lossy = _LOSSY_METHOD.get(detected.mime, "")
            return _wrap.wrap_pixels(
                rgb.tobytes(), attrs=attrs, width=rgb.width, height=rgb.height, lossy_method=lossy
            )

    def _wrap_attributes(
        self,
        upload: Upload,
        fields: CaptureFields,
        resolved: _Resolved,
        facts: _Facts,
        captured: str | None,
        detected: _sniff.Detected,
    ) -> _wrap.WrapAttributes:
        patient = resolved.patient
        identifiers = [i for i in patient.get("identifier", []) if i.get("value")]
        if not identifiers:
            raise Unprocessable("DICOM wrapping needs a patient identifier (Patient.identifier)")
        identifier = identifiers[0]
        settings = self.settings
        issuer = issuer_of(
            identifier.get("system", ""),
            settings.dicom_issuer_systems,
            settings.dicom_default_patient_system,
        )
        seed = [upload.sha256, resolved.patient_ref, fields.accession or ""]
        when = _as_datetime(captured)
        if detected.kind == "document":
            modality = "DOC"
        else:  # a modality without its own IOD here (OP...) is a VL or Video Photographic Image
            modality = fields.modality or "XC"
            if modality not in _wrap.PHOTO_SOP_CLASSES:
                modality = "XC"
        return _wrap.WrapAttributes(
            patient_id=identifier["value"],
            issuer=issuer,
            patient_name=_person_name(patient),
            birth_date=str(patient.get("birthDate", "")).replace("-", "")[:8],
            sex={"male": "M", "female": "F", "other": "O"}.get(patient.get("gender", ""), ""),
            study_uid=generate_uid(entropy_srcs=[*seed, "study"]),
            series_uid=generate_uid(entropy_srcs=[*seed, "series"]),
            sop_uid=generate_uid(entropy_srcs=[*seed, "instance"]),
            accession=fields.accession or "",
            captured=when,
            modality=modality,
            body_site=fields.body_site if fields.body_site else None,
            laterality=fields.laterality or "",
            study_description=fields.description or "",
            series_description=fields.view or "",
            operator="",
            device=facts.camera,
            encounter=(fields.encounter or "").removeprefix("Encounter/"),
            institution="",
        )

    # ------------------------------------------------------------------ reading

    def rendition(self, principal: Principal, doc_id: str, role: str) -> tuple[Served, str]:
        """A rendition's bytes and the patient they belong to; 404 for an unknown or invisible
        record or rendition; the original needs a scope that names ``Binary`` (403)."""
        if role not in ROLES:
            raise NotFound(f"No rendition {role!r}: one of {', '.join(ROLES)}")
        stored = self.context.service.read(principal, DOCUMENT, doc_id)
        assert stored.data is not None
        resource = orjson.loads(stored.data)
        if role == "original":
            self.context.policy.check(principal, "read", "Binary")
        wanted = self._url(doc_id, role)
        for content in resource.get("content", []):
            attachment = content.get("attachment", {})
            if attachment.get("url") != wanted:
                continue
            key = next(
                (e.get("valueString") for e in attachment.get("extension", [])
                 if e.get("url") == BLOB_EXTENSION),
                None,
            )  # fmt: skip
            if key is None:
                break
            served = Served(
                stream=self.blobs.open(key),
                content_type=attachment.get("contentType", "application/octet-stream"),
                size=attachment.get("size"),
                title=attachment.get("title"),
                etag=f'"{key.rsplit("/", 1)[-1]}"',
            )
            return served, resource.get("subject", {}).get("reference", "")
        if role != "original":  # a FHIR-native capture: views of the Binary it points to
            binary = self._native_binary(resource)
            if binary is not None:
                return self._view_of(binary, role), resource.get("subject", {}).get("reference", "")
        raise NotFound(f"{DOCUMENT}/{doc_id} has no {role}")

    def _native_binary(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """The blob-backed ``Binary`` of a DocumentReference's first attachment that is one
        (``Binary/<id>``, relative or under this base), read as PixelHub itself: the views made
        of it carry none of its metadata, so they need no ``Binary`` scope."""
        base = self.context.service.options.base_url.rstrip("/") + "/"
        for content in resource.get("content", []):
            url = str(content.get("attachment", {}).get("url", "")).removeprefix(base)
            kind, _, rid = url.partition("/")
            if kind != "Binary" or not rid or "/" in rid:
                continue
            try:
                stored = self.context.service.read(self._itself, "Binary", rid)
            except (NotFound, Gone):
                return None
            assert stored.data is not None
            binary: dict[str, Any] = orjson.loads(stored.data)
            return binary if blob_of(binary) else None
        return None

    def _view_of(self, binary: dict[str, Any], role: str) -> Served:
        """The thumbnail or preview of a Binary's content, made once and kept under
        ``<data dir>/media-views`` by the content's digest (422 when it cannot be rendered, 404
        for a type that has no views)."""
        key = blob_of(binary)
        assert key is not None
        digest = key.rsplit("/", 1)[-1]
        cached = self.views_dir / f"{digest}.{role}.jpg"
        if not cached.exists():
            detected = _sniff.known(str(binary.get("contentType", "")))
            if detected is None:
                raise NotFound(f"Binary/{binary['id']} ({binary.get('contentType')}) has no {role}")
            with self.blobs.open(key) as stream, self._as_file(stream) as path:
                views = self._examine(path, detected).views
            if views is None:
                raise NotFound(f"Binary/{binary['id']} ({detected.mime}) has no {role}")
            self.views_dir.mkdir(parents=True, exist_ok=True)
            for name, data in zip(("thumbnail", "preview"), views, strict=True):
                part = self.views_dir / f".{digest}.{name}.{uuid.uuid4().hex}"
                part.write_bytes(data)
                os.replace(part, self.views_dir / f"{digest}.{name}.jpg")
        return Served(
            stream=open(cached, "rb"),
            content_type="image/jpeg",
            size=cached.stat().st_size,
            title=None,
            etag=f'"{digest}.{role}"',
        )

    @contextmanager
    def _as_file(self, stream: BinaryIO) -> Iterator[str]:
        """A path to the blob's bytes: its own file when the store has one, else a copy."""
        name = getattr(stream, "name", None)
        if isinstance(name, str) and os.path.isfile(name):
            yield name
            return
        os.makedirs(self.spool_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.spool_dir) as copy:
            shutil.copyfileobj(stream, copy, 1024 * 1024)
            copy.flush()
            yield copy.name


@dataclass(frozen=True)
class _Facts:
    captured: str | None
    device: str | None
    views: tuple[bytes, bytes] | None  # (thumbnail, preview)
    camera: tuple[str, str] = ("", "")  # EXIF Make, Model


def _as_datetime(value: str | None) -> datetime:
    """A FHIR dateTime as an aware datetime (partial dates at their start; no zone: UTC)."""
    if not value:
        return datetime.now(UTC)
    text = value.replace("Z", "+00:00")
    for size in (4, 7):
        if len(text) == size:
            text += "-01" * ((10 - size) // 3)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _person_name(patient: dict[str, Any]) -> str:
    """The first HumanName as a DICOM PN (PS3.5 6.2: ``Family^Given``)."""
    for name in patient.get("name", []):
        family = str(name.get("family", ""))
        given = " ".join(str(g) for g in name.get("given", []))
        if family or given:
            return f"{family}^{given}".rstrip("^").replace("\\", " ")[:64]
    return ""


__all__ = ["ROLES", "MediaService", "Served"]
