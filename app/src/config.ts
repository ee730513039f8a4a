// /app/config.json: what PixelHub tells the app before it signs in (hub/http/app_routes.py).

export interface AppConfig {
  fhirBaseUrl: string;
  clientId: string | null;
  scope: string;
  viewerUrlTemplate: string | null;
  federation: { partners: boolean };
}

export class AppError extends Error {
  constructor(
    readonly kind:
      | "config"
      | "launch"
      | "auth"
      | "patient"
      | "permission"
      | "network",
    message: string,
    readonly detail: string[] = [],
  ) {
    super(message);
  }
}

export async function loadConfig(): Promise<AppConfig> {
  let response: Response;
  try {
    response = await fetch(new URL("config.json", document.baseURI), { cache: "no-cache" });
  } catch {
    throw new AppError("network", "PixelHub cannot be reached.");
  }
  if (!response.ok) {
    throw new AppError("config", `PixelHub did not give the app its configuration (HTTP ${response.status}).`);
  }
  const config = (await response.json()) as AppConfig;
  if (!config.clientId) {
    throw new AppError(
      "config",
      "The imaging timeline is not registered with PixelHub yet.",
      [
        "An administrator registers it as a public SMART client (pixelhub clients add timeline --type public --redirect-uri <this origin>/app/ --scope \"…\") and sets PIXELHUB_APP_CLIENT_ID.",
      ],
    );
  }
  return config;
}

/** The same FHIR base, whatever its trailing slash. */
export function sameBase(a: string, b: string): boolean {
  return a.replace(/\/+$/, "") === b.replace(/\/+$/, "");
}

/** The origin PixelHub serves its web services from (DICOMweb, /media) beside /fhir. */
export function hubOrigin(config: AppConfig): string {
  return config.fhirBaseUrl.replace(/\/+$/, "").replace(/\/fhir$/, "");
}
