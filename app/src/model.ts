// One patient's imaging record as timeline items: ImagingStudy, DocumentReference (and R4
// Media) and DiagnosticReport resources made comparable (date, ology, modality, body site,
// encounter, performer, order, report, thumbnail), pure functions of the FHIR resources.

export type ItemType = "ImagingStudy" | "DocumentReference" | "DiagnosticReport" | "Media";

export interface Site {
  code: string; // urn:pixelhub:federation:site code: "local" or the partner's name
  display: string;
}

export interface Link {
  reference: string;
  display: string;
  key?: string; // the timeline item it points to, when on the timeline
}

export type Thumb =
  | { kind: "dicom"; studyUid: string }
  | { kind: "media"; documentId: string }
  | null;

export interface Item {
  key: string; // "<site>:<type>/<id>"
  type: ItemType;
  id: string;
  site: Site | null; // null: this hub (also when federated search names it "local")
  date: string | null; // ISO date-time or date
  day: string; // YYYY-MM-DD, or "" when undated
  title: string;
  kindLabel: string; // "Imaging study", "Photo", "Report"...
  ologies: string[];
  modalities: string[];
  bodySites: string[];
  encounter: Link | null;
  performers: string[];
  orders: Link[];
  reports: Link[];
  studies: Link[]; // for reports and documents: the studies they are about
  studyUid: string | null;
  accession: string | null;
  thumb: Thumb;
  mediaType: string | null; // the content type of a document or capture
  summary: string | null; // a report's conclusion, a document's description
  resource: any;
}

const DCM = "http://dicom.nema.org/resources/ontology/DCM";
const OLOGY = "urn:pixelhub:ology";
const SNOMED = "http://snomed.info/sct";
const V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074";
const SITE_TAG = "urn:pixelhub:federation:site";
const LATERALITY = new Set(["24028007", "7771000", "51440002"]); // right, left, bilateral

// Modality (DICOM PS3.16 CID 29/33) -> the ology that usually owns it, for studies that carry
// no ology of their own (an ImagingStudy has no category).
const MODALITY_OLOGY: Record<string, string> = {
  CR: "Radiology", CT: "Radiology", DX: "Radiology", MG: "Radiology", MR: "Radiology",
  NM: "Radiology", PT: "Radiology", RF: "Radiology", XA: "Radiology", US: "Radiology",
  RG: "Radiology", DG: "Radiology", BDUS: "Radiology", BMD: "Radiology",
  IVUS: "Cardiology", ECG: "Cardiology", HD: "Cardiology", EPS: "Cardiology", IVOCT: "Cardiology",
  SM: "Pathology", GM: "Pathology",
  XC: "Photography", ES: "Endoscopy",
  OP: "Ophthalmology", OPT: "Ophthalmology", OPV: "Ophthalmology", OAM: "Ophthalmology",
  OPM: "Ophthalmology", OCT: "Ophthalmology", SRF: "Ophthalmology",
  IO: "Dental", PX: "Dental",
};
// DiagnosticReport.category (HL7 v2 table 0074, diagnostic service section).
const SECTION_OLOGY: Record<string, string> = {
  RAD: "Radiology", RX: "Radiology", CT: "Radiology", NMR: "Radiology", NMS: "Radiology",
  OUS: "Radiology", VUS: "Radiology", CUS: "Cardiology", CTH: "Cardiology", EC: "Cardiology",
  PAT: "Pathology", SP: "Pathology", CP: "Pathology", OSL: "Pathology", GE: "Endoscopy",
};
const MODALITY_NAMES: Record<string, string> = {
  CT: "CT", MR: "MR", US: "Ultrasound", MG: "Mammography", CR: "Radiograph", DX: "X-ray",
  XA: "Angiography", NM: "Nuclear medicine", PT: "PET", SM: "Slide microscopy",
  XC: "External camera", ES: "Endoscopy", OP: "Ophthalmic photo", OPT: "OCT", ECG: "ECG", OT: "Other",
};

export function modalityName(code: string): string {
  return MODALITY_NAMES[code] ? `${MODALITY_NAMES[code]}${MODALITY_NAMES[code] === code ? "" : ` (${code})`}` : code;
}

function text(concept: any): string | null {
  if (!concept) return null;
  if (concept.text) return String(concept.text);
  for (const coding of concept.coding ?? []) {
    if (coding.display) return String(coding.display);
  }
  const first = concept.coding?.[0];
  return first?.code ? String(first.code) : null;
}

function codingLabel(coding: any): string | null {
  if (!coding) return null;
  return coding.display ? String(coding.display) : coding.code ? String(coding.code) : null;
}

function refDisplay(ref: any): string | null {
  if (!ref) return null;
  if (ref.display) return String(ref.display);
  if (ref.reference) return String(ref.reference);
  return ref.identifier?.value ? String(ref.identifier.value) : null;
}

function uniq(values: (string | null | undefined)[]): string[] {
  return [...new Set(values.filter((v): v is string => !!v))];
}

function studyUidOf(identifiers: any[] | undefined): string | null {
  for (const id of identifiers ?? []) {
    if (id?.system === "urn:dicom:uid" && typeof id.value === "string") {
      return id.value.replace(/^urn:oid:/, "");
    }
  }
  return null;
}

function accessionOf(identifiers: any[] | undefined): string | null {
  for (const id of identifiers ?? []) {
    if (id?.type?.coding?.some((c: any) => c.code === "ACSN") && id.value) return String(id.value);
  }
  return null;
}

export function siteOf(resource: any): Site | null {
  const tag = (resource?.meta?.tag ?? []).find((t: any) => t.system === SITE_TAG);
  if (!tag || tag.code === "local") return null;
  return { code: String(tag.code), display: String(tag.display || tag.code) };
}

function base(resource: any, type: ItemType): Pick<Item, "key" | "type" | "id" | "site" | "resource"> {
  const site = siteOf(resource);
  return {
    key: `${site ? site.code : "local"}:${type}/${resource.id}`,
    type,
    id: String(resource.id),
    site,
    resource,
  };
}

/** The calendar day an item belongs to: a date as written, a date-time in local time. */
export function dayOf(date: string | null): string {
  if (!date || !/^\d{4}/.test(date)) return "";
  if (!date.includes("T")) return date.slice(0, 10);
  const d = new Date(date);
  if (Number.isNaN(d.getTime())) return date.slice(0, 10);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function bodySitesOf(codings: any[]): string[] {
  return uniq(
    codings
      .filter((c) => c && c.system !== DCM && !(c.system === SNOMED && LATERALITY.has(c.code)))
      .map(codingLabel),
  );
}

function link(ref: any): Link | null {
  const display = refDisplay(ref);
  return display ? { reference: String(ref.reference ?? ""), display } : null;
}

export function fromImagingStudy(r: any): Item {
  const series: any[] = r.series ?? [];
  const modalities = uniq([
    ...(r.modality ?? []).map((c: any) => c.code),
    ...series.map((s) => s.modality?.code),
  ]);
  const date = r.started ?? series.find((s) => s.started)?.started ?? null;
  const uid = studyUidOf(r.identifier);
  const site = siteOf(r);
  return {
    ...base(r, "ImagingStudy"),
    date,
    day: dayOf(date),
    title:
      r.description ??
      text(r.procedureCode?.[0]) ??
      `${modalities.map(modalityName).join(", ") || "Imaging"} study`,
    kindLabel: "Imaging study",
    ologies: uniq(modalities.map((m) => MODALITY_OLOGY[m])),
    modalities,
    bodySites: bodySitesOf(series.map((s) => s.bodySite)),
    encounter: link(r.encounter),
    performers: uniq([
      ...series.flatMap((s) => (s.performer ?? []).map((p: any) => refDisplay(p.actor))),
      ...(r.interpreter ?? []).map(refDisplay),
    ]),
    orders: (r.basedOn ?? []).map(link).filter(Boolean) as Link[],
    reports: [],
    studies: [],
    studyUid: uid,
    accession: accessionOf(r.identifier),
    thumb: uid && !site ? { kind: "dicom", studyUid: uid } : null,
    mediaType: null,
    summary: r.numberOfInstances ? `${r.numberOfSeries ?? series.length} series, ${r.numberOfInstances} images` : null,
  };
}

function mediaThumb(r: any, site: Site | null): Thumb {
  if (site) return null;
  const urls: string[] = (r.content ?? []).map((c: any) => String(c.attachment?.url ?? ""));
  if (urls.some((u) => /\/media\/[^/]+\/(thumbnail|preview|original)$/.test(u))) {
    return { kind: "media", documentId: String(r.id) };
  }
  const first = r.content?.[0]?.attachment ?? {};
  const type = String(first.contentType ?? "");
  if (/(^|\/)Binary\//.test(String(first.url ?? "")) && /^(image|video)\/|pdf$/.test(type)) {
    return { kind: "media", documentId: String(r.id) };
  }
  return null;
}

export function fromDocumentReference(r: any): Item {
  const site = siteOf(r);
  const events: any[] = (r.context?.event ?? []).flatMap((e: any) => e.coding ?? []);
  const ology = uniq([
    ...(r.category ?? []).flatMap((c: any) =>
      (c.coding ?? []).filter((x: any) => x.system === OLOGY).map(codingLabel),
    ),
    text(r.context?.practiceSetting),
  ]);
  const date = r.context?.period?.start ?? r.date ?? null;
  const attachment = r.content?.[0]?.attachment ?? {};
  const mediaType = attachment.contentType ? String(attachment.contentType) : null;
  const related: any[] = r.context?.related ?? [];
  const uid = studyUidOf(related.map((x) => x.identifier).filter(Boolean));
  const kind = /^image\//.test(mediaType ?? "")
    ? "Photo"
    : /^video\//.test(mediaType ?? "")
      ? "Video"
      : /^audio\//.test(mediaType ?? "")
        ? "Audio"
        : mediaType === "application/dicom"
          ? "Imaging manifest"
          : "Document";
  return {
    ...base(r, "DocumentReference"),
    date,
    day: dayOf(date),
    title: r.description ?? text(r.type) ?? attachment.title ?? "Document",
    kindLabel: kind,
    ologies: ology,
    modalities: uniq(events.filter((c) => c.system === DCM).map((c) => c.code)),
    bodySites: bodySitesOf(events),
    encounter: link(r.context?.encounter?.[0]),
    performers: uniq((r.author ?? []).map(refDisplay)),
    orders: (r.context?.related ?? [])
      .filter((x: any) => /^ServiceRequest\//.test(String(x.reference ?? "")))
      .map(link)
      .filter(Boolean) as Link[],
    reports: [],
    studies: [],
    studyUid: uid,
    accession: accessionOf(related.map((x) => x.identifier).filter(Boolean)),
    thumb: mediaThumb(r, site),
    mediaType,
    summary: attachment.title && r.description ? String(attachment.title) : null,
  };
}

export function fromMedia(r: any): Item {
  const date = r.createdDateTime ?? r.createdPeriod?.start ?? r.issued ?? null;
  return {
    ...base(r, "Media"),
    date,
    day: dayOf(date),
    title: r.content?.title ?? text(r.view) ?? text(r.type) ?? "Media",
    kindLabel: "Media",
    ologies: [],
    modalities: uniq([r.modality?.coding?.find((c: any) => c.system === DCM)?.code]),
    bodySites: uniq([text(r.bodySite)]),
    encounter: link(r.encounter),
    performers: uniq([refDisplay(r.operator)]),
    orders: (r.basedOn ?? []).map(link).filter(Boolean) as Link[],
    reports: [],
    studies: [],
    studyUid: null,
    accession: null,
    thumb: null,
    mediaType: r.content?.contentType ? String(r.content.contentType) : null,
    summary: null,
  };
}

function reportText(r: any): string | null {
  if (r.conclusion) return String(r.conclusion);
  for (const form of r.presentedForm ?? []) {
    if (/^text\/plain/.test(String(form.contentType ?? "")) && form.data) {
      try {
        return new TextDecoder().decode(Uint8Array.from(atob(form.data), (c) => c.charCodeAt(0)));
      } catch {
        return null;
      }
    }
  }
  return null;
}

export function fromDiagnosticReport(r: any): Item {
  const date = r.effectiveDateTime ?? r.effectivePeriod?.start ?? r.issued ?? null;
  const sections: any[] = (r.category ?? []).flatMap((c: any) => c.coding ?? []);
  return {
    ...base(r, "DiagnosticReport"),
    date,
    day: dayOf(date),
    title: text(r.code) ?? "Report",
    kindLabel: "Report",
    ologies: uniq(
      sections.map((c) =>
        c.system === V2_0074 ? (SECTION_OLOGY[c.code] ?? codingLabel(c)) : codingLabel(c),
      ),
    ),
    modalities: [],
    bodySites: [],
    encounter: link(r.encounter),
    performers: uniq([...(r.performer ?? []), ...(r.resultsInterpreter ?? [])].map(refDisplay)),
    orders: (r.basedOn ?? []).map(link).filter(Boolean) as Link[],
    reports: [],
    studies: (r.imagingStudy ?? []).map(link).filter(Boolean) as Link[],
    studyUid: null,
    accession: null,
    thumb: null,
    mediaType: null,
    summary: reportText(r),
  };
}

/** A reference relative to the hub ("ImagingStudy/1") or absolute (a partner's fullUrl). */
function refKey(reference: string, site: Site | null): string | null {
  const m = /([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(\/_history\/[^/]+)?$/.exec(reference);
  return m ? `${site ? site.code : "local"}:${m[1]}/${m[2]}` : null;
}

export interface Directory {
  orders: Map<string, any>; // "ServiceRequest/<id>" -> resource
  encounters: Map<string, any>; // "Encounter/<id>"
  practitioners: Map<string, any>;
}

function orderLabel(order: any): string {
  const what = text(order.code) ?? "Order";
  const acc = accessionOf(order.identifier) ?? order.requisition?.value;
  return `${what}${acc ? ` · accession ${acc}` : ""}${order.status ? ` · ${order.status}` : ""}`;
}

function encounterLabel(enc: any): string {
  const when = enc.period?.start ? String(enc.period.start).slice(0, 10) : "";
  const what = text(enc.type?.[0]) ?? enc.class?.display ?? enc.class?.code ?? "Encounter";
  return [what, when].filter(Boolean).join(", ");
}

function personName(p: any): string | null {
  const n = p?.name?.[0];
  if (!n) return null;
  return n.text ?? [...(n.prefix ?? []), ...(n.given ?? []), n.family].filter(Boolean).join(" ");
}

/** Links items to each other (report <-> study, order, encounter names), folds a capture's
 * DICOM twin (a DocumentReference naming a study's UID) into one item, sorts newest first. */
export function assemble(items: Item[], dir: Directory): Item[] {
  const byKey = new Map(items.map((i) => [i.key, i]));
  const byUid = new Map<string, Item>();
  for (const item of items) {
    if (item.type === "ImagingStudy" && item.studyUid) byUid.set(`${item.site?.code}:${item.studyUid}`, item);
  }
  const hidden = new Set<string>();
  for (const item of items) {
    if (item.type !== "DocumentReference" || !item.studyUid) continue;
    const study = byUid.get(`${item.site?.code}:${item.studyUid}`);
    if (!study) continue;
    if (item.kindLabel === "Imaging manifest" || item.mediaType === "application/dicom") {
      hidden.add(item.key); // the study stands for its manifest
      continue;
    }
    // a capture wrapped as DICOM: one item, the capture's description and ology, the study's
    // frames for the compare view
    item.modalities = uniq([...item.modalities, ...study.modalities]);
    item.ologies = item.ologies.length ? item.ologies : study.ologies;
    item.orders = item.orders.length ? item.orders : study.orders;
    hidden.add(study.key);
  }
  for (const item of items) {
    for (const ref of item.studies) {
      ref.key = refKey(ref.reference, item.site) ?? undefined;
      const study = ref.key ? byKey.get(ref.key) : undefined;
      if (study) {
        ref.display = study.title;
        study.reports.push({ reference: `DiagnosticReport/${item.id}`, display: item.title, key: item.key });
        if (!study.ologies.length || study.ologies.every((o) => !item.ologies.includes(o))) {
          study.ologies = uniq([...item.ologies, ...study.ologies]);
        }
      }
    }
    for (const order of item.orders) {
      const found = dir.orders.get(order.reference.replace(/^.*\/(ServiceRequest\/)/, "$1"));
      if (found) order.display = orderLabel(found);
    }
    if (item.encounter) {
      const found = dir.encounters.get(item.encounter.reference.replace(/^.*\/(Encounter\/)/, "$1"));
      if (found) item.encounter.display = encounterLabel(found);
    }
    item.performers = item.performers.map((p) => {
      const found = dir.practitioners.get(p.replace(/^.*\/(Practitioner\/)/, "$1"));
      return (found && personName(found)) || p;
    });
  }
  // a report whose study is folded into a capture points to the capture
  for (const item of items) {
    for (const ref of item.studies) {
      if (ref.key && hidden.has(ref.key)) {
        const study = byKey.get(ref.key);
        const capture = items.find((c) => c.type === "DocumentReference" && c.studyUid && c.studyUid === study?.studyUid && !hidden.has(c.key));
        if (capture) {
          ref.key = capture.key;
          capture.reports.push({ reference: `DiagnosticReport/${item.id}`, display: item.title, key: item.key });
        }
      }
    }
  }
  return items
    .filter((i) => !hidden.has(i.key))
    .sort((a, b) => (b.date ?? "").localeCompare(a.date ?? "") || a.key.localeCompare(b.key));
}

export function patientName(p: any): string {
  return personName(p) ?? `Patient ${p?.id ?? ""}`;
}

export function patientMrn(p: any): string | null {
  const mr = (p?.identifier ?? []).find((i: any) => i.type?.coding?.some((c: any) => c.code === "MR"));
  return (mr ?? p?.identifier?.[0])?.value ?? null;
}

export interface Filters {
  ology: string;
  modality: string;
  bodySite: string;
  encounter: string;
}

export const NO_FILTERS: Filters = { ology: "", modality: "", bodySite: "", encounter: "" };

export function matches(item: Item, f: Filters): boolean {
  return (
    (!f.ology || item.ologies.includes(f.ology)) &&
    (!f.modality || item.modalities.includes(f.modality)) &&
    (!f.bodySite || item.bodySites.includes(f.bodySite)) &&
    (!f.encounter || item.encounter?.display === f.encounter)
  );
}

export function facets(items: Item[]): { ology: string[]; modality: string[]; bodySite: string[]; encounter: string[] } {
  const sorted = (values: string[]) => [...new Set(values)].sort((a, b) => a.localeCompare(b));
  return {
    ology: sorted(items.flatMap((i) => i.ologies)),
    modality: sorted(items.flatMap((i) => i.modalities)),
    bodySite: sorted(items.flatMap((i) => i.bodySites)),
    encounter: sorted(items.flatMap((i) => (i.encounter ? [i.encounter.display] : []))),
  };
}

/** The configured diagnostic viewer's URL for a study (e.g. an OHIF template). */
export function viewerUrl(template: string | null, item: Item, patientId: string): string | null {
  if (!template || !item.studyUid || item.site) return null;
  return template
    .replace(/\{StudyInstanceUID\}/g, encodeURIComponent(item.studyUid))
    .replace(/\{PatientID\}/g, encodeURIComponent(patientId))
    .replace(/\{AccessionNumber\}/g, encodeURIComponent(item.accession ?? ""));
}
