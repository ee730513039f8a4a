"""DICOM anatomy -> SNOMED CT codings for ``ImagingStudy.series.bodySite`` and ``.laterality``.

Sources (see ``dicom_bodysite.md``):

- Body Part Examined (0018,0015) defined terms -> SNOMED CT, per DICOM PS3.16 Annex L
  "Correspondence of Anatomic Region Codes and Body Part Examined Defined Terms" (the terms are
  those of PS3.3 C.7.3.1 General Series; the codes are the CID 4031 "Common Anatomic Regions"
  concepts).
- Laterality (0020,0060), Image Laterality (0020,0062) and Frame Laterality (0020,9072):
  ``R``/``L``/``B`` -> SNOMED CT 24028007 / 7771000 / 51440002 (PS3.16 CID 244 "Laterality").

Pure data and lookups: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = [
    "BODY_PART_TO_SNOMED",
    "LATERALITY_TO_SNOMED",
    "SNOMED_SYSTEM",
    "body_part_coding",
    "laterality_coding",
]

SNOMED_SYSTEM: Final = "http://snomed.info/sct"

# (Body Part Examined defined term, SNOMED CT code, code meaning) -- PS3.16 Annex L.
# Only terms with an SCT code are listed; CHEST uses the current CID 4031 code (816094009),
# which replaced 43799004 ("Thorax", now the code of the THORAX term).
_ANNEX_L: Final[tuple[tuple[str, str, str], ...]] = (
    ("ABDOMEN", "818981001", "Abdomen"),
    ("ABDOMENPELVIS", "818982008", "Abdomen and Pelvis"),
    ("ABDOMINALAORTA", "7832008", "Abdominal aorta"),
    ("ACJOINT", "85856004", "Acromioclavicular joint"),
    ("ADRENAL", "23451007", "Adrenal gland"),
    ("ANKLE", "70258002", "Ankle joint"),
    ("AORTA", "15825003", "Aorta"),
    ("APPENDIX", "66754008", "Appendix"),
    ("AXILLA", "91470000", "Axilla"),
    ("BACK", "77568009", "Back"),
    ("BILEDUCT", "28273000", "Bile duct"),
    ("BILIARYTRACT", "34707002", "Biliary tract"),
    ("BLADDER", "89837001", "Bladder"),
    ("BRAIN", "12738006", "Brain"),
    ("BREAST", "76752008", "Breast"),
    ("BRONCHUS", "955009", "Bronchus"),
    ("BUTTOCK", "46862004", "Buttock"),
    ("CALCANEUS", "80144004", "Calcaneus"),
    ("CALF", "53840002", "Calf of leg"),
    ("CAROTID", "69105007", "Carotid Artery"),
    ("CEREBELLUM", "113305005", "Cerebellum"),
    ("CERVIX", "71252005", "Cervix"),
    ("CHEEK", "60819002", "Cheek"),
    ("CHEST", "816094009", "Chest"),
    ("CHESTABDOMEN", "416550000", "Chest and Abdomen"),
    ("CHESTABDPELVIS", "416775004", "Chest, Abdomen and Pelvis"),
    ("CIRCLEOFWILLIS", "11279006", "Circle of Willis"),
    ("CLAVICLE", "51299004", "Clavicle"),
    ("COCCYX", "64688005", "Coccyx"),
    ("COLON", "71854001", "Colon"),
    ("COMMONBILEDUCT", "79741001", "Common bile duct"),
    ("CORNEA", "28726007", "Cornea"),
    ("CORONARYARTERY", "41801008", "Coronary artery"),
    ("CSPINE", "122494005", "Cervical spine"),
    ("CTSPINE", "1217257000", "Cervico-thoracic spine"),
    ("DUODENUM", "38848004", "Duodenum"),
    ("EAR", "117590005", "Ear"),
    ("ELBOW", "16953009", "Elbow joint"),
    ("ESOPHAGUS", "32849002", "Esophagus"),
    ("EXTREMITY", "66019005", "Extremity"),
    ("EYE", "81745001", "Eye"),
    ("EYELID", "80243003", "Eyelid"),
    ("FACE", "89545001", "Face"),
    ("FEMUR", "71341001", "Femur"),
    ("FIBULA", "87342007", "Fibula"),
    ("FINGER", "7569003", "Finger"),
    ("FOOT", "56459004", "Foot"),
    ("FOREARM", "14975008", "Forearm"),
    ("GALLBLADDER", "28231008", "Gallbladder"),
    ("HAND", "85562004", "Hand"),
    ("HEAD", "69536005", "Head"),
    ("HEADNECK", "774007", "Head and Neck"),
    ("HEART", "80891009", "Heart"),
    ("HIP", "24136001", "Hip joint"),
    ("HUMERUS", "85050009", "Humerus"),
    ("IAC", "361078006", "Internal Auditory Canal"),
    ("ILEUM", "34516001", "Ileum"),
    ("ILIUM", "22356005", "Ilium"),
    ("JAW", "661005", "Jaw region"),
    ("JEJUNUM", "21306003", "Jejunum"),
    ("KIDNEY", "64033007", "Kidney"),
    ("KNEE", "72696002", "Knee"),
    ("LARGEINTESTINE", "14742008", "Large intestine"),
    ("LARYNX", "4596009", "Larynx"),
    ("LIVER", "10200004", "Liver"),
    ("LOWERLEG", "30021000", "Lower leg"),
    ("LOWERLIMB", "61685007", "Lower limb"),
    ("LSPINE", "122496007", "Lumbar spine"),
    ("LSSPINE", "1217253001", "Lumbo-sacral spine"),
    ("LUNG", "39607008", "Lung"),
    ("MANDIBLE", "91609006", "Mandible"),
    ("MASTOID", "59066005", "Mastoid bone"),
    ("MAXILLA", "70925003", "Maxilla"),
    ("MEDIASTINUM", "72410000", "Mediastinum"),
    ("MOUTH", "123851003", "Mouth"),
    ("NECK", "45048000", "Neck"),
    ("NECKCHEST", "417437006", "Neck and Chest"),
    ("NECKCHESTABDOMEN", "416152001", "Neck, Chest and Abdomen"),
    ("NECKCHESTABDPELV", "416319003", "Neck, Chest, Abdomen and Pelvis"),
    ("NOSE", "45206002", "Nose"),
    ("OPTICCANAL", "55024004", "Optic canal"),
    ("ORBIT", "363654007", "Orbital structure"),
    ("OVARY", "15497006", "Ovary"),
    ("PANCBILEDUCT", "110621006", "Pancreatic duct and bile duct systems"),
    ("PANCREAS", "15776009", "Pancreas"),
    ("PANCREATICDUCT", "69930009", "Pancreatic duct"),
    ("PAROTID", "45289007", "Parotid gland"),
    ("PATELLA", "64234005", "Patella"),
    ("PELVIS", "816092008", "Pelvis"),
    ("PELVISLOWEXTREMT", "1231522001", "Pelvis and lower extremities"),
    ("PENIS", "18911002", "Penis"),
    ("PHANTOM", "706342009", "Phantom"),
    ("PHARYNX", "54066008", "Pharynx"),
    ("PROSTATE", "41216001", "Prostate"),
    ("RECTUM", "34402009", "Rectum"),
    ("RIB", "113197003", "Rib"),
    ("SCALP", "41695006", "Scalp"),
    ("SCAPULA", "79601000", "Scapula"),
    ("SCJOINT", "7844006", "Sternoclavicular joint"),
    ("SCROTUM", "20233005", "Scrotum"),
    ("SELLA", "42575006", "Sella turcica"),
    ("SESAMOID", "58742003", "Sesamoid bones of foot"),
    ("SHOULDER", "16982005", "Shoulder"),
    ("SIJOINT", "39723000", "Sacroiliac joint"),
    ("SKULL", "89546000", "Skull"),
    ("SMALLINTESTINE", "30315005", "Small intestine"),
    ("SPINE", "421060004", "Spine"),
    ("SPLEEN", "78961009", "Spleen"),
    ("SSPINE", "54735007", "Sacrum"),
    ("STERNUM", "56873002", "Sternum"),
    ("STOMACH", "69695003", "Stomach"),
    ("SUBMANDIBULAR", "54019009", "Submandibular gland"),
    ("TESTIS", "40689003", "Testis"),
    ("THIGH", "68367000", "Thigh"),
    ("THORAX", "43799004", "Thorax"),
    ("THUMB", "76505004", "Thumb"),
    ("THYROID", "69748006", "Thyroid"),
    ("TIBIA", "12611008", "Tibia"),
    ("TLSPINE", "1217256009", "Thoraco-lumbar spine"),
    ("TMJ", "53620006", "Temporomandibular joint"),
    ("TOE", "29707007", "Toe"),
    ("TRACHEA", "44567001", "Trachea"),
    ("TSPINE", "122495006", "Thoracic spine"),
    ("UPPERARM", "40983000", "Upper arm"),
    ("UPPERLIMB", "53120007", "Upper limb"),
    ("UPRURINARYTRACT", "431491007", "Upper urinary tract"),
    ("URETER", "87953007", "Ureter"),
    ("URETHRA", "13648007", "Urethra"),
    ("UTERUS", "35039007", "Uterus"),
    ("VAGINA", "76784001", "Vagina"),
    ("VULVA", "45292006", "Vulva"),
    ("WHOLEBODY", "38266002", "Entire body"),
    ("WRIST", "74670003", "Wrist joint"),
    ("ZYGOMA", "13881006", "Zygoma"),
)

BODY_PART_TO_SNOMED: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {term: (code, meaning) for term, code, meaning in _ANNEX_L}
)
"""Body Part Examined defined term -> (SNOMED CT code, code meaning), PS3.16 Annex L."""

LATERALITY_TO_SNOMED: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        "R": ("24028007", "Right"),
        "L": ("7771000", "Left"),
        "B": ("51440002", "Right and left"),
    }
)
"""DICOM laterality enumerated value -> (SNOMED CT code, display), PS3.16 CID 244."""


def _normalise_term(value: str) -> str:
    # Defined terms are upper case without spaces (PS3.3 C.7.3.1); senders often add spaces,
    # hyphens or underscores ("C SPINE", "chest-abdomen"), which carry no meaning here.
    return "".join(ch for ch in value.upper() if ch.isalnum())


def body_part_coding(body_part_examined: str) -> dict[str, str] | None:
    """The SNOMED CT Coding for a Body Part Examined (0018,0015) value, or None if unknown.

    Lookup per PS3.16 Annex L, tolerant of case, spaces, hyphens and underscores.
    """
    entry = BODY_PART_TO_SNOMED.get(_normalise_term(body_part_examined))
    if entry is None:
        return None
    code, meaning = entry
    return {"system": SNOMED_SYSTEM, "code": code, "display": meaning}


def laterality_coding(laterality: str) -> dict[str, str] | None:
    """The SNOMED CT Coding for a DICOM laterality value R, L or B (PS3.16 CID 244).

    ``U`` (unpaired, Image Laterality only) and anything else give None.
    """
    entry = LATERALITY_TO_SNOMED.get(laterality.strip().upper())
    if entry is None:
        return None
    code, display = entry
    return {"system": SNOMED_SYSTEM, "code": code, "display": display}
