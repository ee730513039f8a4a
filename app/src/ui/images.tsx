// Images fetched with the access token (Api.image) and shown as blob: URLs; thumbnails load
// when they scroll into view.

import { useEffect, useRef, useState } from "preact/hooks";
import type { Api } from "../api";
import type { Item } from "../model";

export function thumbPath(item: Item, size = 200): string | null {
  const t = item.thumb;
  if (!t) return null;
  if (t.kind === "media") return `/media/${encodeURIComponent(t.documentId)}/thumbnail`;
  return `/dicomweb/studies/${encodeURIComponent(t.studyUid)}/thumbnail?viewport=${size},${size}`;
}

export function previewPath(item: Item): string | null {
  const t = item.thumb;
  if (!t) return null;
  if (t.kind === "media") return `/media/${encodeURIComponent(t.documentId)}/preview`;
  return `/dicomweb/studies/${encodeURIComponent(t.studyUid)}/thumbnail?viewport=512,512`;
}

const GLYPHS: Record<string, string> = {
  "Imaging study": "▦",
  Photo: "◩",
  Video: "▶",
  Audio: "♪",
  Report: "¶",
  Document: "▤",
  "Imaging manifest": "▦",
  Media: "◩",
};

function Placeholder({ item, note }: { item: Item; note: string }) {
  return (
    <div class="thumb placeholder" role="img" aria-label={`${item.kindLabel}: ${note}`}>
      <span aria-hidden="true" class="glyph">
        {GLYPHS[item.kindLabel] ?? "▤"}
      </span>
      <span class="note" aria-hidden="true">
        {note}
      </span>
    </div>
  );
}

/** A card's thumbnail: WADO-RS study thumbnail or the capture's thumbnail; a partner's item
 * (not fetchable with this hub's token) or an item without one gets a placeholder. */
export function Thumb({ api, item, path }: { api: Api; item: Item; path?: string | null }) {
  const wanted = path === undefined ? thumbPath(item) : path;
  const box = useRef<HTMLDivElement>(null);
  const [visible, setVisible] = useState(false);
  const [src, setSrc] = useState<string | null>(null);
  const [failed, setFailed] = useState(false);

  useEffect(() => {
    if (!wanted || visible || !box.current) return;
    const observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) {
          setVisible(true);
          observer.disconnect();
        }
      },
      { rootMargin: "300px" },
    );
    observer.observe(box.current);
    return () => observer.disconnect();
  }, [wanted, visible]);

  useEffect(() => {
    if (!wanted || !visible) return;
    let live = true;
    api.image(wanted).then(
      (url) => live && setSrc(url),
      () => live && setFailed(true),
    );
    return () => {
      live = false;
    };
  }, [api, wanted, visible]);

  if (item.site) return <Placeholder item={item} note={`held at ${item.site.display}`} />;
  if (!wanted || failed) return <Placeholder item={item} note={item.type === "DiagnosticReport" ? "report" : "no preview"} />;
  return (
    <div class="thumb" ref={box}>
      {src ? (
        <img src={src} alt={`Preview of ${item.title}${item.day ? `, ${item.day}` : ""}`} loading="lazy" decoding="async" />
      ) : (
        <span class="loading" role="img" aria-label={`Loading the preview of ${item.title}`} />
      )}
    </div>
  );
}

/** An authorized image for a path that changes (frames, windows): keeps showing the last one
 * while the next loads. */
export function useAuthorizedImage(api: Api, path: string | null): { src: string | null; shown: string | null; error: string | null } {
  const [state, setState] = useState<{ src: string | null; shown: string | null; error: string | null }>({
    src: null,
    shown: null,
    error: null,
  });
  useEffect(() => {
    if (!path) return;
    let live = true;
    api.image(path).then(
      (src) => live && setState({ src, shown: path, error: null }),
      (e: Error) => live && setState((s) => ({ ...s, error: e.message })),
    );
    return () => {
      live = false;
    };
  }, [api, path]);
  return state;
}
