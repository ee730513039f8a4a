// Authorized requests: FHIR JSON and images (DICOMweb rendered frames, media thumbnails), with
// the access token in the Authorization header (an <img src> cannot carry it: images are fetched
// and shown as blob: URLs). fhirclient refreshes the token (online_access) when it is due.

import type { Client } from "./smart";
import { hubOrigin, type AppConfig } from "./config";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly url: string,
    message: string,
  ) {
    super(message);
  }
}

export type Bundle = {
  resourceType: "Bundle";
  entry?: { fullUrl?: string; resource?: any; search?: { mode?: string } }[];
  link?: { relation: string; url: string }[];
};

const MAX_IMAGE_REQUESTS = 4; // at a time: thumbnails never starve the FHIR searches

export class Api {
  readonly origin: string;
  private images = new Map<string, Promise<string>>();
  private running = 0;
  private waiting: (() => void)[] = [];

  constructor(
    readonly client: Client,
    readonly config: AppConfig,
  ) {
    this.origin = hubOrigin(config);
  }

  get fhirBase(): string {
    return this.config.fhirBaseUrl.replace(/\/+$/, "");
  }

  async token(): Promise<string> {
    try {
      await this.client.refreshIfNeeded();
    } catch {
      // the refresh token is gone or refused: the request below answers 401 and says so
    }
    return String(this.client.getState("tokenResponse.access_token") || "");
  }

  async fetch(url: string, accept: string, signal?: AbortSignal): Promise<Response> {
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${await this.token()}`, Accept: accept },
      signal,
    });
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        const body = await response.json();
        const text = body?.issue?.[0]?.diagnostics;
        if (text) message += `: ${text}`;
      } catch {
        // not JSON
      }
      throw new HttpError(response.status, url, message);
    }
    return response;
  }

  /** A FHIR read or search: `path` relative to the FHIR base, or an absolute URL. */
  async fhir<T = any>(path: string, signal?: AbortSignal): Promise<T> {
    const url = /^https?:/.test(path) ? path : `${this.fhirBase}/${path}`;
    const response = await this.fetch(url, "application/fhir+json", signal);
    return (await response.json()) as T;
  }

  /** Every page of a search (following `next`, at most `maxPages`). */
  async searchAll(path: string, maxPages = 10): Promise<Bundle[]> {
    const pages: Bundle[] = [];
    let next: string | undefined = path;
    while (next && pages.length < maxPages) {
      const page: Bundle = await this.fhir<Bundle>(next);
      pages.push(page);
      next = page.link?.find((l) => l.relation === "next")?.url;
    }
    return pages;
  }

  private async slot(): Promise<void> {
    if (this.running < MAX_IMAGE_REQUESTS) {
      this.running++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
  }

  /** An image as a blob: URL (cached for the page's life); `path` is below the hub's origin. */
  image(path: string): Promise<string> {
    const url = /^https?:/.test(path) ? path : this.origin + path;
    let found = this.images.get(url);
    if (!found) {
      found = (async () => {
        await this.slot();
        try {
          const response = await this.fetch(url, "image/jpeg, image/png;q=0.9, image/*;q=0.8");
          return URL.createObjectURL(await response.blob());
        } finally {
          this.release();
        }
      })();
      found.catch(() => this.images.delete(url)); // a failed image may be asked again
      this.images.set(url, found);
    }
    return found;
  }

  /** DICOM JSON (QIDO-RS) below the hub's origin; 204 is an empty list. */
  async dicomJson(path: string): Promise<any[]> {
    const response = await this.fetch(this.origin + path, "application/dicom+json");
    if (response.status === 204) return [];
    return (await response.json()) as any[];
  }
}
