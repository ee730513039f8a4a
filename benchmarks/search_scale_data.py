"""Deterministic, realistic FHIR R4 data for ``search_scale.py``: a radiology/enterprise-imaging
population.

Patients have a Zipf-like number of studies (Pareto, alpha 1.3: most have one or two, a few have
hundreds), spread over ten years (2015-2024). Each study comes with the order it answers
(``ServiceRequest`` with placer and accession identifiers) and its report (``DocumentReference``
with type, category, a description holding the impression, the PDF's attachment title, the report
itself as an inline ``text/plain`` attachment for full-text search, and ``context.related``
pointing at the study). Modalities follow an enterprise mix (CR/DX/CT/US/MR
most, then MG, XA, NM, PT, SM, XC, OP, ES); PET and some NM studies also carry a CT series. Body
sites are the SNOMED CT codings PixelHub's own DICOM mapping uses (``mappings.dicom_bodysite``).
Studies list their series, not their instances (``numberOfInstances`` is set).

Same seed, same resources, in the same order: every engine loads identical data.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mappings.dicom_bodysite import body_part_coding

DCM = "http://dicom.nema.org/resources/ontology/DCM"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
LOINC = "http://loinc.org"
MRN_SYSTEM = "urn:oid:1.3.6.1.4.1.99999.1.1"
PLACER_SYSTEM = "urn:oid:1.3.6.1.4.1.99999.1.2"
ACCESSION_SYSTEM = "urn:oid:1.3.6.1.4.1.99999.1.3"
PROCEDURE_SYSTEM = "urn:oid:1.3.6.1.4.1.99999.1.4"  # the site's charge master codes
UID_ROOT = "1.2.826.0.1.3680043.8.498"
WINDOW_START = datetime(2015, 1, 1, tzinfo=UTC)
WINDOW_DAYS = 3652  # ten years

Resource = dict[str, Any]
Item = tuple[str, str, Resource]  # (resource type, id, resource)

# (modality, relative weight): an enterprise imaging volume mix.
MODALITY_MIX: tuple[tuple[str, float], ...] = (
    ("CR", 22), ("DX", 14), ("CT", 17), ("US", 14), ("MR", 12), ("MG", 6), ("XA", 2),
    ("NM", 1.5), ("PT", 1.5), ("SM", 2), ("XC", 3), ("OP", 3), ("ES", 2),
)  # fmt: skip
MODALITY_DISPLAY = {
    "CR": "Computed Radiography", "DX": "Digital Radiography", "CT": "Computed Tomography",
    "US": "Ultrasound", "MR": "Magnetic Resonance", "MG": "Mammography",
    "XA": "X-Ray Angiography", "NM": "Nuclear Medicine", "PT": "Positron emission tomography",
    "SM": "Slide Microscopy", "XC": "External-camera Photography", "OP": "Ophthalmic Photography",
    "ES": "Endoscopy",
}  # fmt: skip

# modality -> exams: (DICOM Body Part Examined term, description, series count range)
EXAMS: dict[str, tuple[tuple[str, str, tuple[int, int]], ...]] = {
    "CR": (("CHEST", "XR Chest 2 views", (2, 2)), ("HAND", "XR Hand 3 views", (3, 3)),
           ("KNEE", "XR Knee 2 views", (2, 2)), ("FOOT", "XR Foot 3 views", (3, 3)),
           ("SHOULDER", "XR Shoulder 2 views", (2, 2)), ("PELVIS", "XR Pelvis AP", (1, 1))),
    "DX": (("CHEST", "DX Chest PA and lateral", (2, 2)), ("ANKLE", "DX Ankle 3 views", (3, 3)),
           ("WRIST", "DX Wrist 3 views", (3, 3)), ("HIP", "DX Hip 2 views", (2, 2)),
           ("LSPINE", "DX Lumbar spine 2 views", (2, 2))),
    "CT": (("HEAD", "CT Head without contrast", (2, 4)),
           ("CHEST", "CT Chest with contrast", (3, 6)),
           ("ABDOMENPELVIS", "CT Abdomen and Pelvis with contrast", (3, 8)),
           ("CSPINE", "CT Cervical spine without contrast", (2, 4)),
           ("HEART", "CT Coronary angiography", (4, 8))),
    "US": (("ABDOMEN", "US Abdomen complete", (1, 2)), ("THYROID", "US Thyroid", (1, 1)),
           ("PELVIS", "US Pelvis transvaginal", (1, 2)), ("KIDNEY", "US Renal", (1, 1)),
           ("HEART", "Echocardiogram transthoracic", (1, 3))),
    "MR": (("BRAIN", "MR Brain with and without contrast", (6, 12)),
           ("KNEE", "MR Knee without contrast", (5, 8)),
           ("LSPINE", "MR Lumbar spine without contrast", (4, 7)),
           ("SHOULDER", "MR Shoulder without contrast", (5, 8)),
           ("PROSTATE", "MR Prostate multiparametric", (6, 10))),
    "MG": (("BREAST", "Mammography screening bilateral", (4, 4)),
           ("BREAST", "Mammography diagnostic with tomosynthesis", (4, 6))),
    "XA": (("HEART", "Coronary angiography", (3, 10)),),
    "NM": (("WHOLEBODY", "NM Bone scan whole body", (1, 3)),
           ("THYROID", "NM Thyroid uptake and scan", (1, 2))),
    "PT": (("WHOLEBODY", "PET/CT FDG skull base to mid-thigh", (3, 5)),),
    "SM": (("PROSTATE", "Whole slide image prostate biopsy", (6, 12)),
           ("COLON", "Whole slide image colon polyp", (1, 3))),
    "XC": (("FOOT", "Wound photography foot", (1, 2)), ("HAND", "Clinical photo hand", (1, 1))),
    "OP": (("EYE", "Fundus photography both eyes", (2, 2)),),
    "ES": (("COLON", "Colonoscopy", (1, 2)), ("STOMACH", "Upper GI endoscopy", (1, 2))),
}  # fmt: skip

# Report impressions: (weight, text). Words like "pneumothorax" drive the full-text query
# (``_content``, which reads the description and the inline text report).
IMPRESSIONS: tuple[tuple[float, str], ...] = (
    (40, "No acute abnormality."), (12, "Degenerative changes, unchanged from prior."),
    (6, "Small pulmonary nodule, follow-up recommended."), (5, "Nondisplaced fracture."),
    (4, "Mild pleural effusion."), (3, "Complex meniscal tear."),
    (3, "Suspicious mass, biopsy recommended."), (2, "Pneumothorax, clinician notified."),
    (2, "Acute appendicitis."), (2, "Intracranial hemorrhage, critical result called."),
    (2, "Hepatic steatosis."), (2, "Renal calculus without hydronephrosis."),
    (1, "Pulmonary embolism in the right lower lobe."), (1, "Diabetic retinopathy, moderate."),
    (1, "Adenomatous polyp removed."), (1, "Gleason 3+4 adenocarcinoma."),
)  # fmt: skip
# Distinctive words of the impressions above, for the full-text query.
FINDING_WORDS = (
    "nodule", "fracture", "effusion", "meniscal", "biopsy", "pneumothorax", "appendicitis",
    "hemorrhage", "steatosis", "calculus", "embolism", "retinopathy", "polyp", "gleason",
)  # fmt: skip

# report type by modality family: LOINC document type and category
REPORT_TYPES = {
    "SM": ("11526-1", "Pathology study"),
    "ES": ("18751-8", "Endoscopy study"),
    "OP": ("18748-4", "Diagnostic imaging study"),
}
DEFAULT_REPORT_TYPE = ("18748-4", "Diagnostic imaging study")
CATEGORIES = {
    "SM": ("LP7839-6", "Pathology"),
    "ES": ("LP7137-5", "Endoscopy"),
    "XA": ("LP29708-2", "Cardiology"),
}
DEFAULT_CATEGORY = ("LP29684-5", "Radiology")

FAMILIES = (
    "Smith", "Johnson", "Garcia", "Müller", "Nguyen", "Kowalski", "Rossi", "Dubois", "Tanaka",
    "Okafor", "Hansen", "Silva", "Cohen", "Novak", "Yilmaz", "Andersson", "Murphy", "Kim",
)  # fmt: skip
GIVENS = (
    "Anna", "Ben", "Chloé", "David", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Kira", "Liam", "Maria", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Talia",
)  # fmt: skip
PHYSICIANS = tuple(f"{f}^{g}" for f in FAMILIES[:8] for g in GIVENS[:5])


def report_text(modality: str, description: str, impression: str) -> str:
    """The dictated report, short and plain (no random draw: the data stream stays the same)."""
    return (
        f"EXAMINATION: {description}.\n"
        f"TECHNIQUE: Standard departmental {modality} protocol.\n"
        "COMPARISON: Prior imaging reviewed where available.\n"
        f"IMPRESSION: {impression}\n"
        "Electronically signed by the reporting radiologist.\n"
    )


@dataclass(frozen=True, slots=True)
class StudySample:
    """What the queries need to know about one generated study."""

    patient: str
    study_id: str
    study_uid: str
    accession: str
    modality: str
    started: str
    body_site: str
    report_date: str
    impression: str


class Population:
    """A deterministic stream of Patients with their studies, orders and reports.

    ``items(n)`` yields every resource of ``n`` studies (and as many reports), patient by
    patient; ``samples`` then holds a uniform sample of the studies (reservoir sampling), so a
    query picks patients in proportion to their studies, as real traffic does.
    """

    def __init__(self, seed: int, *, sample_size: int = 200) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self._pick = random.Random(seed + 1)  # sampling must not disturb the data stream
        self.sample_size = sample_size
        self.samples: list[StudySample] = []
        self.studies = 0
        self.patients = 0
        self.max_studies_per_patient = 0
        self._modalities = [m for m, _ in MODALITY_MIX]
        self._weights = [w for _, w in MODALITY_MIX]
        self._impressions = [t for _, t in IMPRESSIONS]
        self._impression_weights = [w for w, _ in IMPRESSIONS]

    def items(self, n: int) -> Iterator[Item]:
        while self.studies < n:
            self.patients += 1
            pid = f"p{self.patients}"
            yield "Patient", pid, self.patient(pid)
            count = min(int(self.rng.paretovariate(1.3)), 400, n - self.studies)
            self.max_studies_per_patient = max(self.max_studies_per_patient, count)
            first = self.rng.randrange(WINDOW_DAYS)
            span = self.rng.randrange(WINDOW_DAYS - first)
            days = sorted(first + self.rng.randint(0, span) for _ in range(count))
            for day in days:
                self.studies += 1
                yield from self.study(pid, self.studies, day)

    def patient(self, pid: str) -> Resource:
        rng = self.rng
        born = datetime(1930, 1, 1) + timedelta(days=rng.randrange(90 * 365))
        return {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [
                {
                    "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                    "system": MRN_SYSTEM,
                    "value": f"MRN{self.patients:09d}",
                }
            ],
            "name": [{"family": rng.choice(FAMILIES), "given": [rng.choice(GIVENS)]}],
            "gender": rng.choice(("female", "male", "female", "male", "other", "unknown")),
            "birthDate": born.date().isoformat(),
        }

    def study(self, pid: str, n: int, day: int) -> Iterator[Item]:
        """The order, the study and its report."""
        rng = self.rng
        modality = rng.choices(self._modalities, self._weights)[0]
        term, description, (low, high) = rng.choice(EXAMS[modality])
        when = WINDOW_START + timedelta(days=day, seconds=rng.randrange(7 * 3600, 20 * 3600))
        started = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        reported = (when + timedelta(minutes=rng.randrange(20, 3 * 24 * 60))).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        uid, accession = f"{UID_ROOT}.{self.seed}.{n}", f"RAD{n:010d}"
        impression = rng.choices(self._impressions, self._impression_weights)[0]
        ids = {"order": f"sr{n}", "study": f"s{n}", "report": f"d{n}"}
        referrer = rng.choice(PHYSICIANS)
        yield "ServiceRequest", ids["order"], self.order(ids, pid, accession, description, when)
        yield (
            "ImagingStudy",
            ids["study"],
            self.imaging_study(
                ids,
                pid,
                uid,
                accession,
                modality,
                term,
                description,
                started,
                (low, high),
                referrer,
            ),
        )
        yield (
            "DocumentReference",
            ids["report"],
            self.report(ids, pid, modality, description, reported, impression),
        )
        self._sample(
            StudySample(
                pid,
                ids["study"],
                uid,
                accession,
                modality,
                started,
                body_part_coding(term)["display"],
                reported,
                impression,
            )
        )

    def order(
        self, ids: dict[str, str], pid: str, accession: str, description: str, when: datetime
    ) -> Resource:
        code = description.upper().replace(" ", "-")[:32]
        return {
            "resourceType": "ServiceRequest",
            "id": ids["order"],
            "identifier": [
                {
                    "type": {"coding": [{"system": V2_0203, "code": "PLAC"}]},
                    "system": PLACER_SYSTEM,
                    "value": f"ORD{ids['order'][2:]}",
                },
                {
                    "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                    "system": ACCESSION_SYSTEM,
                    "value": accession,
                },
            ],
            "status": "completed",
            "intent": "order",
            "category": [
                {
                    "coding": [{"system": "http://snomed.info/sct", "code": "363679005"}],
                    "text": "Imaging",
                }
            ],
            "code": {
                "coding": [{"system": PROCEDURE_SYSTEM, "code": code, "display": description}],
                "text": description,
            },
            "subject": {"reference": f"Patient/{pid}"},
            "authoredOn": (when - timedelta(days=self.rng.randrange(0, 30))).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        }

    def imaging_study(
        self,
        ids: dict[str, str],
        pid: str,
        uid: str,
        accession: str,
        modality: str,
        term: str,
        description: str,
        started: str,
        series_range: tuple[int, int],
        referrer: str,
    ) -> Resource:
        rng = self.rng
        body = body_part_coding(term)
        series_modalities = [modality] * rng.randint(*series_range)
        if modality == "PT" or (modality == "NM" and rng.random() < 0.3):
            series_modalities.append("CT")  # PET/CT, SPECT/CT
        series = []
        for number, mod in enumerate(series_modalities, start=1):
            count = rng.randint(1, 400) if mod in ("CT", "MR", "PT") else rng.randint(1, 4)
            series.append(
                {
                    "uid": f"{uid}.{number}",
                    "number": number,
                    "modality": {"system": DCM, "code": mod, "display": MODALITY_DISPLAY[mod]},
                    "description": f"{description} series {number}",
                    "numberOfInstances": count,
                    "bodySite": body,
                }
            )
        family, given = referrer.split("^")
        return {
            "resourceType": "ImagingStudy",
            "id": ids["study"],
            "identifier": [
                {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"},
                {
                    "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                    "system": ACCESSION_SYSTEM,
                    "value": accession,
                },
            ],
            "status": "available",
            "modality": [
                {"system": DCM, "code": m, "display": MODALITY_DISPLAY[m]}
                for m in sorted(set(series_modalities))
            ],
            "subject": {"reference": f"Patient/{pid}"},
            "started": started,
            "basedOn": [{"reference": f"ServiceRequest/{ids['order']}"}],
            "referrer": {"display": f"{given} {family}"},
            "numberOfSeries": len(series),
            "numberOfInstances": sum(s["numberOfInstances"] for s in series),
            "description": description,
            "series": series,
        }

    def report(
        self,
        ids: dict[str, str],
        pid: str,
        modality: str,
        description: str,
        reported: str,
        impression: str,
    ) -> Resource:
        type_code, type_display = REPORT_TYPES.get(modality, DEFAULT_REPORT_TYPE)
        cat_code, cat_display = CATEGORIES.get(modality, DEFAULT_CATEGORY)
        return {
            "resourceType": "DocumentReference",
            "id": ids["report"],
            "status": "current",
            "docStatus": "final",
            "type": {
                "coding": [{"system": LOINC, "code": type_code, "display": type_display}],
                "text": type_display,
            },
            "category": [{"coding": [{"system": LOINC, "code": cat_code, "display": cat_display}]}],
            "subject": {"reference": f"Patient/{pid}"},
            "date": reported,
            "author": [{"display": self.rng.choice(PHYSICIANS).replace("^", ", ")}],
            "description": f"{description}. Impression: {impression}",
            "content": [
                {
                    "attachment": {
                        "contentType": "application/pdf",
                        "url": f"Binary/{ids['report']}-pdf",
                        "title": f"{description} report",
                        "creation": reported,
                    }
                },
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "language": "en",
                        "data": base64.b64encode(
                            report_text(modality, description, impression).encode()
                        ).decode(),
                        "title": f"{description} report (text)",
                        "creation": reported,
                    }
                },
            ],
            "context": {"related": [{"reference": f"ImagingStudy/{ids['study']}"}]},
        }

    def _sample(self, sample: StudySample) -> None:
        if len(self.samples) < self.sample_size:
            self.samples.append(sample)
            return
        slot = self._pick.randrange(self.studies)
        if slot < self.sample_size:
            self.samples[slot] = sample
