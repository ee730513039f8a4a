// The SMART App Launch 2.2 flows, through fhirclient (smart-on-fhir/client-js): EHR launch
// (launch.html?iss=…&launch=…), standalone launch (/app/ with PixelHub's patient picker), both
// with the authorization code grant and PKCE S256, redirecting back to /app/. fhirclient keeps
// its state, tokens included, in sessionStorage (lib/storage/BrowserStorage): never localStorage.

import FHIR from "fhirclient";
import type Client from "fhirclient/lib/Client";
import { AppError, type AppConfig, sameBase } from "./config";

export type { Client };

// A refresh of a public client names itself (RFC 6749 §6 with §3.2.1): PixelHub asks for it.
FHIR.oauth2.settings.refreshTokenWithClientId = true;

const SMART_KEY = "SMART_KEY"; // fhirclient's pointer to the current state in sessionStorage

// fhirclient's development shortcuts, read from the URL: a fake launch without authorization
// (fhirServiceUrl), a patient or encounter set by the link (patientId, encounterId), another
// client (clientId). The app never honours them: its patient comes from the token response.
const FORBIDDEN_PARAMS = ["fhirServiceUrl", "patientId", "encounterId", "clientId", "patient"];

/** Read access (`.rs`, or v1 `.read`) to the whole of a resource type in the patient's record,
 * from SMART scopes (scopes-and-launch-context.html): the timeline needs the REQUIRED types,
 * and shows what it can of the OPTIONAL ones. */
export const REQUIRED_TYPES = ["Patient", "ImagingStudy", "DocumentReference", "DiagnosticReport"];
export const OPTIONAL_TYPES = ["ServiceRequest", "Encounter", "Media", "Practitioner"];

export function readsType(scopes: string[], type: string): boolean {
  return scopes.some((scope) => {
    const m = /^(patient|user)\/(\*|[A-Z][A-Za-z]*)\.([a-z*]+)(\?.*)?$/.exec(scope);
    if (!m || (m[2] !== "*" && m[2] !== type) || m[4]) return false;
    const perms = m[3];
    return perms === "read" || perms === "*" || (perms.includes("r") && perms.includes("s"));
  });
}

export interface Grant {
  scopes: string[];
  missing: string[]; // required types the token cannot read
  missingOptional: string[];
}

export function checkGrant(scope: string): Grant {
  const scopes = scope.split(/\s+/).filter(Boolean);
  return {
    scopes,
    missing: REQUIRED_TYPES.filter((t) => !readsType(scopes, t)),
    missingOptional: OPTIONAL_TYPES.filter((t) => !readsType(scopes, t)),
  };
}

function checkParams(params: URLSearchParams): void {
  const bad = FORBIDDEN_PARAMS.filter((p) => params.has(p));
  if (bad.length) {
    throw new AppError(
      "launch",
      "This link tries to choose the app's patient or server itself; the app takes them only from PixelHub's sign-in.",
      bad.map((p) => `Unexpected parameter: ${p}`),
    );
  }
}

/** /app/: the redirect URI of both launches, and the standalone entry. */
function redirectUri(): string {
  return new URL("./", location.href.split(/[?#]/)[0]).href;
}

async function authorize(config: AppConfig, iss: string, launch?: string): Promise<never> {
  await FHIR.oauth2.authorize({
    clientId: config.clientId ?? undefined,
    scope: config.scope,
    redirectUri: redirectUri(),
    iss,
    launch,
    pkceMode: "required",
    completeInTarget: true, // an EHR may show the app in a frame: finish the sign-in there
  });
  return new Promise<never>(() => {}); // the browser is on its way to the authorization server
}

/** SMART App Launch 2.2 §"Launch App: EHR Launch": the EHR opened us with `iss` and `launch`.
 * Only this PixelHub's FHIR base is trusted as `iss`. */
export async function ehrLaunch(config: AppConfig): Promise<never> {
  const params = new URLSearchParams(location.search);
  checkParams(params);
  const iss = params.get("iss");
  const launch = params.get("launch");
  if (!iss || !launch) {
    throw new AppError("launch", "The EHR launch link lacks its iss or launch parameter.");
  }
  if (!sameBase(iss, config.fhirBaseUrl)) {
    throw new AppError(
      "launch",
      "This app was launched for another FHIR server than the PixelHub that serves it.",
      [`Launched for: ${iss}`, `Served by: ${config.fhirBaseUrl}`],
    );
  }
  return authorize(config, config.fhirBaseUrl, launch);
}

/** The signed-in client on /app/: completes the code exchange (§"Obtain access token"),
 * revives the session from sessionStorage on reload, or starts a standalone launch
 * (§"Launch App: Standalone Launch"). */
export async function connect(config: AppConfig): Promise<Client> {
  const params = new URLSearchParams(location.search);
  checkParams(params);
  if (params.has("error")) {
    const reason = params.get("error_description") || params.get("error") || "";
    throw new AppError("auth", "PixelHub did not authorize the app.", [reason]);
  }
  if (params.has("iss") || params.has("launch")) return ehrLaunch(config);
  if (params.has("code") || sessionStorage.getItem(SMART_KEY)) {
    try {
      return await FHIR.oauth2.ready();
    } catch (e) {
      throw new AppError("auth", "The sign-in could not be completed.", [String((e as Error).message)]);
    }
  }
  const base = new URL(config.fhirBaseUrl);
  if (base.origin !== location.origin) {
    // the app lives beside its FHIR server (same origin, no CORS): go there
    location.replace(base.origin + location.pathname + location.hash);
    return new Promise<never>(() => {});
  }
  return authorize(config, config.fhirBaseUrl);
}

/** Start over: forget this tab's SMART state and sign in again (standalone). */
export function restart(): void {
  sessionStorage.clear();
  location.assign(redirectUri());
}

function jwtClaims(token: string): Record<string, unknown> | null {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(json) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** The launched patient (SMART §"Launch context arrives with your access_token"); a patient
 * id in the stored state that the access token does not carry is refused. */
export function launchedPatient(client: Client): string {
  const patient = client.getPatientId();
  if (!patient) {
    throw new AppError("patient", "The app was launched without a patient.", [
      "Open it from a patient's chart in the EHR, or pick a patient when signing in.",
    ]);
  }
  const token = String(client.getState("tokenResponse.access_token") || "");
  const claims = jwtClaims(token);
  if (claims && typeof claims.patient === "string" && claims.patient !== patient) {
    throw new AppError("patient", "This patient is not the one the app was launched for.", [
      "The app's stored patient does not match its access token; launch it again.",
    ]);
  }
  return patient;
}

export function signOutUrl(client: Client): string | null {
  const tokenUri = String(client.getState("tokenUri") || "");
  return tokenUri ? tokenUri.replace(/\/token$/, "/logout") : null;
}
