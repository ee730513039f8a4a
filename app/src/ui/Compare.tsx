// Two to four items side by side: a reviewing view, not a diagnostic viewer. DICOM studies are
// browsed frame by frame through WADO-RS rendered frames (DICOM PS3.18 10.4, 8.3.5: `window`,
// `viewport`), captures through their preview, reports as text; each study links out to the
// configured diagnostic viewer.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Api } from "../api";
import { type Item, modalityName, viewerUrl } from "../model";
import { previewPath, useAuthorizedImage } from "./images";

interface Frame {
  series: string;
  sop: string;
  frame: number; // 1-based
  seriesLabel: string;
}

// Window presets (center, width) in Hounsfield units, as CT reading rooms use them.
const PRESETS: { name: string; center?: number; width?: number }[] = [
  { name: "As stored" },
  { name: "Soft tissue", center: 40, width: 400 },
  { name: "Lung", center: -600, width: 1500 },
  { name: "Bone", center: 400, width: 1800 },
  { name: "Brain", center: 40, width: 80 },
];
// SOP classes without frames to render: SR, KOS, presentation states, encapsulated documents,
// waveforms, raw data.
const NOT_IMAGES = /^1\.2\.840\.10008\.5\.1\.4\.1\.1\.(88\.|11\.|104\.|9\.|66(\.|$)|481\.)/;
const ZOOMS = [0.5, 0.75, 1, 1.5, 2, 3, 4];

function value(obj: any, tag: string): any {
  return obj?.[tag]?.Value?.[0];
}

async function framesOf(api: Api, studyUid: string): Promise<Frame[]> {
  const found = await api.dicomJson(
    `/dicomweb/studies/${encodeURIComponent(studyUid)}/instances?includefield=00200011&includefield=0008103E`,
  );
  const instances = found
    .filter((i) => !NOT_IMAGES.test(String(value(i, "00080016") ?? "")))
    .map((i) => ({
      series: String(value(i, "0020000E")),
      sop: String(value(i, "00080018")),
      seriesNumber: Number(value(i, "00200011") ?? 0),
      seriesLabel: String(value(i, "0008103E") ?? value(i, "00080060") ?? "Series"),
      number: Number(value(i, "00200013") ?? 0),
      frames: Math.max(1, Number(value(i, "00280008") ?? 1) || 1),
    }))
    .sort((a, b) => a.seriesNumber - b.seriesNumber || a.series.localeCompare(b.series) || a.number - b.number);
  return instances.flatMap((i) =>
    Array.from({ length: i.frames }, (_, n) => ({ series: i.series, sop: i.sop, frame: n + 1, seriesLabel: i.seriesLabel })),
  );
}

/** The rendered size to ask for: the stage's size in device pixels, in steps of 128 (so a
 * small resize does not fetch every frame again), 256 to 1024; null until measured. */
function useViewport(): [ref: { current: HTMLDivElement | null }, size: number | null] {
  const ref = useRef<HTMLDivElement>(null);
  const [size, setSize] = useState<number | null>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const observer = new ResizeObserver(() => {
      const px = Math.max(el.clientWidth, el.clientHeight) * (window.devicePixelRatio || 1);
      setSize(Math.min(1024, Math.max(256, Math.ceil(px / 128) * 128)));
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return [ref, size];
}

function Zoom({ zoom, setZoom, label }: { zoom: number; setZoom: (z: number) => void; label: string }) {
  const at = ZOOMS.indexOf(zoom);
  return (
    <div class="control" role="group" aria-label={`Zoom, ${label}`}>
      <button type="button" aria-label="Zoom out" disabled={at <= 0} onClick={() => setZoom(ZOOMS[at - 1])}>
        −
      </button>
      <output aria-live="polite">{Math.round(zoom * 100)}%</output>
      <button type="button" aria-label="Zoom in" disabled={at >= ZOOMS.length - 1} onClick={() => setZoom(ZOOMS[at + 1])}>
        +
      </button>
      <button type="button" onClick={() => setZoom(1)} disabled={zoom === 1}>
        Fit
      </button>
    </div>
  );
}

function Stage({ src, alt, zoom, requested, onKey, label, error }: {
  src: string | null;
  alt: string;
  zoom: number;
  requested: string | null;
  onKey?: (e: KeyboardEvent) => void;
  label: string;
  error: string | null;
}) {
  return (
    <div class="stage" tabIndex={0} role="group" aria-label={label} onKeyDown={onKey}>
      {src ? (
        <img src={src} alt={alt} data-request={requested ?? ""} style={{ transform: `scale(${zoom})` }} />
      ) : error ? (
        <p class="stage-note" role="alert">
          The image could not be loaded ({error}).
        </p>
      ) : (
        <p class="stage-note" role="status">
          Loading…
        </p>
      )}
    </div>
  );
}

function DicomPanel({ api, item, index }: { api: Api; item: Item; index: number }) {
  const [frames, setFrames] = useState<Frame[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [at, setAt] = useState(0);
  const [preset, setPreset] = useState(0);
  const [center, setCenter] = useState("");
  const [width, setWidth] = useState("");
  const [windowParam, setWindowParam] = useState<string | null>(null);
  const [zoom, setZoom] = useState(1);
  const [box, size] = useViewport();

  useEffect(() => {
    framesOf(api, item.studyUid!).then(setFrames, (e: Error) => setError(e.message));
  }, [api, item.studyUid]);

  // typed window values apply after a pause, not on every keystroke
  useEffect(() => {
    const c = Number(center);
    const w = Number(width);
    const next = center !== "" && width !== "" && Number.isFinite(c) && Number.isFinite(w) && w >= 1 ? `${c},${w}` : null;
    const timer = setTimeout(() => setWindowParam(next), 250);
    return () => clearTimeout(timer);
  }, [center, width]);

  const frame = frames?.[at];
  const pathOf = (f: Frame | undefined) =>
    f && size
      ? `/dicomweb/studies/${encodeURIComponent(item.studyUid!)}/series/${encodeURIComponent(f.series)}` +
        `/instances/${encodeURIComponent(f.sop)}/frames/${f.frame}/rendered?viewport=${size},${size}` +
        (windowParam ? `&window=${windowParam}` : "")
      : null;
  const path = pathOf(frame);
  const image = useAuthorizedImage(api, path);
  const total = frames?.length ?? 0;

  useEffect(() => {
    const next = pathOf(frames?.[at + 1]); // probably wanted next
    if (next && image.shown === path) api.image(next).catch(() => {});
  }, [image.shown]);

  const go = (n: number) => setAt(Math.min(Math.max(n, 0), Math.max(total - 1, 0)));
  const choosePreset = (n: number) => {
    setPreset(n);
    const p = PRESETS[n];
    setCenter(p.center === undefined ? "" : String(p.center));
    setWidth(p.width === undefined ? "" : String(p.width));
  };
  const onKey = (e: KeyboardEvent) => {
    const keys: Record<string, () => void> = {
      ArrowDown: () => go(at + 1),
      ArrowRight: () => go(at + 1),
      ArrowUp: () => go(at - 1),
      ArrowLeft: () => go(at - 1),
      Home: () => go(0),
      End: () => go(total - 1),
      "+": () => setZoom(ZOOMS[Math.min(ZOOMS.indexOf(zoom) + 1, ZOOMS.length - 1)]),
      "-": () => setZoom(ZOOMS[Math.max(ZOOMS.indexOf(zoom) - 1, 0)]),
    };
    if (keys[e.key]) {
      e.preventDefault();
      keys[e.key]();
    }
  };
  const id = `p${index}`;
  if (error) return <p class="stage-note" role="alert">The study's images could not be listed ({error}).</p>;
  if (frames && !frames.length) return <p class="stage-note">This study has no images to show here.</p>;
  return (
    <>
      <div ref={box} class="stage-box">
        <Stage
          src={image.src}
          requested={image.shown}
          alt={`${item.title}, ${frame ? `${frame.seriesLabel}, image ${at + 1} of ${total}` : "loading"}`}
          zoom={zoom}
          onKey={onKey}
          label={`${item.title}: arrow keys change the image, + and − zoom`}
          error={image.error}
        />
      </div>
      <div class="controls">
        <div class="control" role="group" aria-label={`Frames, ${item.title}`}>
          <button type="button" aria-label="Previous frame" disabled={at <= 0} onClick={() => go(at - 1)}>
            ‹
          </button>
          <input
            type="range"
            id={`${id}-frame`}
            aria-label="Frame"
            min={1}
            max={Math.max(total, 1)}
            value={at + 1}
            disabled={total < 2}
            onInput={(e) => go(Number((e.currentTarget as HTMLInputElement).value) - 1)}
          />
          <button type="button" aria-label="Next frame" disabled={at >= total - 1} onClick={() => go(at + 1)}>
            ›
          </button>
          <output class="frame-count" aria-live="polite">
            {total ? `Frame ${at + 1} of ${total}` : "…"}
          </output>
        </div>
        <div class="control window">
          <label for={`${id}-preset`}>Window</label>
          <select id={`${id}-preset`} value={String(preset)} onChange={(e) => choosePreset(Number((e.currentTarget as HTMLSelectElement).value))}>
            {PRESETS.map((p, n) => (
              <option key={p.name} value={String(n)}>
                {p.name}
                {p.center !== undefined ? ` (${p.center}/${p.width})` : ""}
              </option>
            ))}
          </select>
          <label for={`${id}-center`}>Center</label>
          <input id={`${id}-center`} type="number" inputMode="numeric" value={center} onInput={(e) => setCenter((e.currentTarget as HTMLInputElement).value)} />
          <label for={`${id}-width`}>Width</label>
          <input id={`${id}-width`} type="number" inputMode="numeric" min={1} value={width} onInput={(e) => setWidth((e.currentTarget as HTMLInputElement).value)} />
        </div>
        <Zoom zoom={zoom} setZoom={setZoom} label={item.title} />
      </div>
    </>
  );
}

function ImagePanel({ api, item }: { api: Api; item: Item }) {
  const [zoom, setZoom] = useState(1);
  const path = previewPath(item);
  const image = useAuthorizedImage(api, path);
  if (!path) return <p class="stage-note">No preview for this {item.kindLabel.toLowerCase()}.</p>;
  return (
    <>
      <div class="stage-box">
        <Stage src={image.src} requested={image.shown} alt={`Preview of ${item.title}`} zoom={zoom} label={item.title} error={image.error} />
      </div>
      <div class="controls">
        <Zoom zoom={zoom} setZoom={setZoom} label={item.title} />
      </div>
    </>
  );
}

function Panel({ api, item, index, viewer, patientId }: { api: Api; item: Item; index: number; viewer: string | null; patientId: string }) {
  const link = viewerUrl(viewer, item, patientId);
  // a capture is shown as itself (colour JPEG preview), a study through its frames
  const dicom = item.type === "ImagingStudy" && item.studyUid && !item.site;
  return (
    <section class="panel" aria-labelledby={`panel-${index}`} data-key={item.key}>
      <header>
        <h2 id={`panel-${index}`}>{item.title}</h2>
        <p class="facts">
          {[item.day, item.kindLabel, ...item.modalities.map(modalityName), ...item.bodySites].filter(Boolean).join(" · ")}
          {item.site && <span class="badge site">{item.site.display}</span>}
        </p>
      </header>
      {item.site ? (
        <p class="stage-note">Held at partner site {item.site.display}: its images are not viewable with this hub's sign-in.</p>
      ) : item.type === "DiagnosticReport" ? (
        <div class="report-text">{item.summary ?? "This report has no text to show here."}</div>
      ) : dicom ? (
        <DicomPanel api={api} item={item} index={index} />
      ) : (
        <ImagePanel api={api} item={item} />
      )}
      {link && (
        <p>
          <a class="button" href={link} target="_blank" rel="noopener noreferrer">
            Open in diagnostic viewer<span class="sr-only"> ({item.title})</span>
          </a>
        </p>
      )}
    </section>
  );
}

export function Compare({ api, items, viewer, patientId, onBack }: { api: Api; items: Item[]; viewer: string | null; patientId: string; onBack: () => void }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);
  const cols = useMemo(() => `cols-${Math.min(Math.max(items.length, 1), 4)}`, [items.length]);
  return (
    <section class="compare" aria-labelledby="compare-title">
      <div class="compare-head">
        <button type="button" onClick={onBack}>
          ← Back to timeline
        </button>
        <h1 id="compare-title" ref={heading} tabIndex={-1}>
          Compare {items.length} items
        </h1>
      </div>
      {items.length < 2 && <p role="alert">Pick two to four items on the timeline to compare them.</p>}
      <div class={`panels ${cols}`}>
        {items.map((item, n) => (
          <Panel key={item.key} api={api} item={item} index={n} viewer={viewer} patientId={patientId} />
        ))}
      </div>
    </section>
  );
}
