// Loading one patient's timeline: the patient, then every ImagingStudy, DocumentReference,
// DiagnosticReport (and Media) of the patient's compartment, at once; orders and encounters
// to name the links. With partner sites, the three imaging types come from PixelHub's
// federated search (/fhir/federated/<type>, each entry tagged with its site).

import { Api, type Bundle, HttpError } from "./api";
import { AppError } from "./config";
import {
  assemble,
  fromDiagnosticReport,
  fromDocumentReference,
  fromImagingStudy,
  fromMedia,
  type Directory,
  type Item,
  siteOf,
} from "./model";
import { readsType } from "./smart";

export interface Timeline {
  patient: any;
  items: Item[];
  warnings: string[];
}

const PAGE = 200;
const MAKERS: Record<string, (r: any) => Item> = {
  ImagingStudy: fromImagingStudy,
  DocumentReference: fromDocumentReference,
  DiagnosticReport: fromDiagnosticReport,
  Media: fromMedia,
};

export async function loadPatient(api: Api, patientId: string): Promise<any> {
  try {
    return await api.fhir(`Patient/${encodeURIComponent(patientId)}`);
  } catch (e) {
    if (e instanceof HttpError && [401, 403, 404, 410].includes(e.status)) {
      throw new AppError("patient", "This patient's record is not available to you.", [
        `PixelHub answered ${e.status} for Patient/${patientId}.`,
      ]);
    }
    throw e;
  }
}

function resources(pages: Bundle[]): any[] {
  return pages.flatMap((p) => (p.entry ?? []).filter((e) => e.search?.mode !== "outcome").map((e) => e.resource));
}

function outcomes(pages: Bundle[]): string[] {
  return pages.flatMap((p) =>
    (p.entry ?? [])
      .filter((e) => e.search?.mode === "outcome" && e.resource?.resourceType === "OperationOutcome")
      .map((e) => {
        const site = siteOf(e.resource);
        const issue = e.resource.issue?.[0];
        const why = issue?.diagnostics ?? issue?.details?.text ?? "did not answer";
        return site ? `${site.display}: ${why}` : String(why);
      }),
  );
}

async function search(api: Api, path: string, required: boolean): Promise<Bundle[]> {
  try {
    return await api.searchAll(path);
  } catch (e) {
    if (!required) return [];
    if (e instanceof HttpError && (e.status === 401 || e.status === 403)) {
      throw new AppError("permission", "PixelHub refused the app access to this record.", [e.message]);
    }
    throw e;
  }
}

export async function loadTimeline(
  api: Api,
  patientId: string,
  scopes: string[],
  federated: boolean,
): Promise<Timeline> {
  const pid = encodeURIComponent(patientId);
  const reads = (type: string) => readsType(scopes, type);
  const imaging = ["ImagingStudy", "DocumentReference", "DiagnosticReport"].map((type) =>
    search(
      api,
      federated
        ? `federated/${type}?patient=Patient/${pid}&_count=${PAGE}`
        : `${type}?patient=${pid}&_count=${PAGE}`,
      true,
    ),
  );
  const media = reads("Media") ? search(api, `Media?patient=${pid}&_count=${PAGE}`, false) : Promise.resolve([]);
  const orders = reads("ServiceRequest")
    ? search(api, `ServiceRequest?patient=${pid}&_count=${PAGE}`, false)
    : Promise.resolve([]);
  const encounters = reads("Encounter")
    ? search(api, `Encounter?patient=${pid}&_count=${PAGE}`, false)
    : Promise.resolve([]);
  const [studies, documents, reports] = await Promise.all(imaging);
  const [mediaPages, orderPages, encounterPages] = await Promise.all([media, orders, encounters]);
  const items: Item[] = [];
  for (const pages of [studies, documents, reports, mediaPages]) {
    for (const resource of resources(pages)) {
      const make = MAKERS[resource?.resourceType];
      if (make && resource.id) items.push(make(resource));
    }
  }
  const dir: Directory = {
    orders: new Map(resources(orderPages).map((r) => [`ServiceRequest/${r.id}`, r])),
    encounters: new Map(resources(encounterPages).map((r) => [`Encounter/${r.id}`, r])),
    practitioners: new Map(),
  };
  const warnings = federated ? [...new Set(outcomes([...studies, ...documents, ...reports]))] : [];
  return { patient: null, items: assemble(items, dir), warnings };
}

/** Names of performers given only as `Practitioner/<id>` references, read afterwards (the
 * first paint does not wait for them). */
export async function practitionerNames(api: Api, items: Item[]): Promise<Map<string, string>> {
  const ids = [
    ...new Set(
      items.flatMap((i) => i.performers).flatMap((p) => (/^Practitioner\/([A-Za-z0-9\-.]+)$/.exec(p) ?? []).slice(1)),
    ),
  ];
  const names = new Map<string, string>();
  if (!ids.length) return names;
  try {
    const pages = await api.searchAll(`Practitioner?_id=${ids.slice(0, 100).join(",")}&_count=100`, 1);
    for (const r of resources(pages)) {
      const n = r.name?.[0];
      const name = n?.text ?? [...(n?.prefix ?? []), ...(n?.given ?? []), n?.family].filter(Boolean).join(" ");
      if (name) names.set(`Practitioner/${r.id}`, name);
    }
  } catch {
    // names stay as references
  }
  return names;
}
