// One item in a modal dialog (native <dialog>: focus kept inside, Escape closes): a larger
// preview, every fact, its linked order, reports and studies, and the way to compare it or
// open it in the diagnostic viewer.

import { useEffect, useRef } from "preact/hooks";
import type { Api } from "../api";
import { type Item, modalityName } from "../model";
import { previewPath, Thumb } from "./images";
import { MAX_COMPARE } from "./Timeline";

interface Props {
  api: Api;
  item: Item;
  viewer: string | null;
  selection: string[];
  onClose: () => void;
  onOpen: (key: string) => void;
  onToggle: (key: string) => void;
  onCompare: () => void;
}

function Row({ term, values }: { term: string; values: (string | null | undefined)[] }) {
  const shown = values.filter(Boolean);
  if (!shown.length) return null;
  return (
    <>
      <dt>{term}</dt>
      <dd>{shown.join(", ")}</dd>
    </>
  );
}

export function Detail({ api, item, viewer, selection, onClose, onOpen, onToggle, onCompare }: Props) {
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = dialog.current;
    if (d && !d.open) d.showModal();
    const closed = () => onClose();
    d?.addEventListener("close", closed);
    return () => d?.removeEventListener("close", closed);
  }, [item.key]);
  const selected = selection.includes(item.key);
  const links = (title: string, list: Item["reports"]) =>
    list.length > 0 && (
      <>
        <dt>{title}</dt>
        <dd>
          <ul class="plain">
            {list.map((l) => (
              <li key={l.reference + l.display}>
                {l.key ? (
                  <button type="button" class="link" onClick={() => onOpen(l.key!)}>
                    {l.display}
                  </button>
                ) : (
                  l.display
                )}
              </li>
            ))}
          </ul>
        </dd>
      </>
    );
  return (
    <dialog ref={dialog} class="detail" aria-labelledby="detail-title" data-key={item.key}>
      <div class="detail-head">
        <h2 id="detail-title">{item.title}</h2>
        <button type="button" class="close" onClick={() => dialog.current?.close()} aria-label="Close">
          ×
        </button>
      </div>
      <div class="detail-body">
        <div class="detail-preview">
          {item.type === "DiagnosticReport" ? (
            <p class="report-text">{item.summary ?? "This report has no text to show here."}</p>
          ) : (
            <Thumb api={api} item={item} path={previewPath(item)} />
          )}
        </div>
        <dl>
          <Row term="Date" values={[item.date ? item.date.replace("T", " ").replace(/(:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$/, "$1") : "undated"]} />
          <Row term="Kind" values={[item.kindLabel, item.mediaType]} />
          <Row term="Site" values={[item.site ? `${item.site.display} (partner)` : null]} />
          <Row term="Ology" values={item.ologies} />
          <Row term="Modality" values={item.modalities.map(modalityName)} />
          <Row term="Body site" values={item.bodySites} />
          <Row term="Encounter" values={[item.encounter?.display]} />
          <Row term="Performer" values={item.performers} />
          <Row term="Accession" values={[item.accession]} />
          <Row term="Description" values={[item.type !== "DiagnosticReport" ? item.summary : null]} />
          {links("Order", item.orders)}
          {links("Reports", item.reports)}
          {links("Studies", item.studies)}
        </dl>
      </div>
      <div class="detail-actions">
        <button
          type="button"
          aria-pressed={selected}
          disabled={!selected && selection.length >= MAX_COMPARE}
          onClick={() => onToggle(item.key)}
        >
          {selected ? "Remove from comparison" : "Add to comparison"}
        </button>
        <button type="button" class="primary" disabled={selection.length < 2} onClick={onCompare}>
          Compare selected ({selection.length})
        </button>
        {viewer && (
          <a class="button" href={viewer} target="_blank" rel="noopener noreferrer">
            Open in diagnostic viewer
          </a>
        )}
      </div>
    </dialog>
  );
}
