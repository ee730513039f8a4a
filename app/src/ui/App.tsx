// The signed-in app: patient banner, the timeline, an item's detail, the compare view. The
// view is in the URL's hash (#/item/<key>, #/compare/<key>,<key>) so Back works.

import { useCallback, useEffect, useMemo, useState } from "preact/hooks";
import type { Api } from "../api";
import type { AppConfig } from "../config";
import { type Timeline as Loaded, loadTimeline, practitionerNames } from "../load";
import { type Filters, NO_FILTERS, patientMrn, patientName, viewerUrl } from "../model";
import { Compare } from "./Compare";
import { Detail } from "./Detail";
import { Loading } from "./Screens";
import { MAX_COMPARE, Timeline } from "./Timeline";

export interface Session {
  api: Api;
  config: AppConfig;
  patientId: string;
  patient: any;
  scopes: string[];
  missingOptional: string[];
  banner: boolean;
  signOut: string | null;
  first: Loaded;
}

type Route = { view: "timeline" } | { view: "item"; key: string } | { view: "compare"; keys: string[] };

function parseRoute(hash: string): Route {
  const item = /^#\/item\/(.+)$/.exec(hash);
  if (item) return { view: "item", key: decodeURIComponent(item[1]) };
  const compare = /^#\/compare\/(.*)$/.exec(hash);
  if (compare) return { view: "compare", keys: compare[1].split(",").filter(Boolean).map(decodeURIComponent).slice(0, MAX_COMPARE) };
  return { view: "timeline" };
}

function go(hash: string) {
  if (location.hash !== hash) location.hash = hash;
}

function focusOpenButton(key: string) {
  const card = [...document.querySelectorAll<HTMLElement>(".card")].find((c) => c.dataset.key === key);
  card?.querySelector<HTMLButtonElement>("button.link")?.focus();
}

export function App({ session }: { session: Session }) {
  const { api, config, patient, patientId } = session;
  const [timeline, setTimeline] = useState<Loaded>(session.first);
  const [federated, setFederated] = useState(false);
  const [busy, setBusy] = useState<string | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [selection, setSelection] = useState<string[]>([]);
  const [route, setRoute] = useState<Route>(() => parseRoute(location.hash));
  const [focusKey, setFocusKey] = useState<string | null>(null); // back on the timeline: here

  useEffect(() => {
    if (route.view !== "timeline" || !focusKey) return;
    focusOpenButton(focusKey);
    setFocusKey(null);
  }, [route.view, focusKey]);

  useEffect(() => {
    const changed = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);

  // performers given only as references get their names after the first paint
  useEffect(() => {
    if (session.missingOptional.includes("Practitioner")) return;
    let live = true;
    practitionerNames(api, timeline.items).then((names) => {
      if (!live || !names.size) return;
      setTimeline((t) => ({
        ...t,
        items: t.items.map((i) => ({ ...i, performers: i.performers.map((p) => names.get(p) ?? p) })),
      }));
    });
    return () => {
      live = false;
    };
  }, [timeline.items.length, federated]);

  const onFederated = useCallback(
    (on: boolean) => {
      setFederated(on);
      setBusy(on ? "Asking the partner sites…" : "Loading this hub's record…");
      setFailure(null);
      loadTimeline(api, patientId, session.scopes, on).then(
        (t) => {
          setTimeline(t);
          setBusy(null);
        },
        (e: Error) => {
          setBusy(null);
          setFailure(e.message);
          setFederated(!on);
        },
      );
    },
    [api, patientId],
  );

  const byKey = useMemo(() => new Map(timeline.items.map((i) => [i.key, i])), [timeline.items]);
  const toggle = useCallback((key: string) => {
    setSelection((s) => (s.includes(key) ? s.filter((k) => k !== key) : s.length < MAX_COMPARE ? [...s, key] : s));
  }, []);
  const open = useCallback((key: string) => go(`#/item/${encodeURIComponent(key)}`), []);
  const compareKeys = route.view === "compare" ? route.keys : selection;
  const compare = () => go(`#/compare/${selection.map(encodeURIComponent).join(",")}`);
  const detail = route.view === "item" ? byKey.get(route.key) : undefined;
  const born = patient?.birthDate ? `born ${patient.birthDate}` : null;
  const mrn = patientMrn(patient);

  return (
    <>
      <a
        class="skip"
        href="#main"
        onClick={(e) => {
          e.preventDefault();
          document.getElementById("main")?.focus();
        }}
      >
        Skip to the timeline
      </a>
      <header class="top">
        <p class="brand">
          <span class="logo" aria-hidden="true">
            ▦
          </span>{" "}
          PixelHub · Imaging timeline
        </p>
        <section class={session.banner ? "patient" : "patient sr-only"} aria-label="Patient" data-patient={patientId}>
          <strong class="patient-name">{patientName(patient)}</strong>
          {[born, patient?.gender, mrn ? `MRN ${mrn}` : null].filter(Boolean).map((t) => (
            <span key={t}> · {t}</span>
          ))}
        </section>
        {session.signOut && (
          <a class="signout" href={session.signOut} onClick={() => sessionStorage.clear()}>
            Sign out
          </a>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        {route.view === "compare" ? (
          <Compare
            api={api}
            items={compareKeys.map((k) => byKey.get(k)).filter((i): i is NonNullable<typeof i> => !!i)}
            viewer={config.viewerUrlTemplate}
            patientId={patientId}
            onBack={() => {
              setFocusKey(compareKeys[0] ?? null);
              go("#/");
            }}
          />
        ) : (
          <>
            <h1 class="sr-only">Imaging timeline of {patientName(patient)}</h1>
            {session.missingOptional.length > 0 && (
              <p class="notice">
                Not shown (no permission): {session.missingOptional.join(", ")}.
              </p>
            )}
            {timeline.warnings.length > 0 && (
              <div class="notice" role="alert">
                <p>Some partner sites did not answer:</p>
                <ul>
                  {timeline.warnings.map((w) => (
                    <li key={w}>{w}</li>
                  ))}
                </ul>
              </div>
            )}
            {failure && (
              <p class="notice" role="alert">
                The partner sites could not be asked: {failure}
              </p>
            )}
            {busy && (
              <p class="status" role="status">
                {busy}
              </p>
            )}
            {selection.length > 0 && (
              <div class="tray" role="region" aria-label="Comparison">
                <span>
                  {selection.length} of {MAX_COMPARE} picked for comparison
                </span>
                <button type="button" class="primary" disabled={selection.length < 2} onClick={compare}>
                  Compare ({selection.length})
                </button>
                <button type="button" onClick={() => setSelection([])}>
                  Clear
                </button>
              </div>
            )}
            <Timeline
              api={api}
              items={timeline.items}
              filters={filters}
              onFilters={setFilters}
              federation={config.federation.partners}
              federated={federated}
              onFederated={onFederated}
              selection={selection}
              onOpen={open}
              onToggle={toggle}
            />
            {detail && (
              <Detail
                api={api}
                item={detail}
                viewer={viewerUrl(config.viewerUrlTemplate, detail, patientId)}
                selection={selection}
                onClose={() => {
                  setFocusKey(detail.key);
                  if (parseRoute(location.hash).view === "item") go("#/");
                }}
                onOpen={open}
                onToggle={toggle}
                onCompare={compare}
              />
            )}
            {route.view === "item" && !detail && busy === null && (
              <p class="notice" role="alert">
                That item is not on this patient's timeline.
              </p>
            )}
          </>
        )}
      </main>
    </>
  );
}

export { Loading };
