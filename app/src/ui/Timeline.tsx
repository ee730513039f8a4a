// The timeline: filters, then the items grouped by day, newest first. Every item is a card
// whose title is a button (Tab to it, Enter opens it) and whose checkbox picks it for the
// compare view.

import { useLayoutEffect, useMemo } from "preact/hooks";
import type { Api } from "../api";
import { facets, type Filters, type Item, matches, modalityName, NO_FILTERS } from "../model";
import { Thumb } from "./images";

export const MAX_COMPARE = 4;
let painted = false;

function formatDay(day: string): string {
  if (!day) return "Undated";
  const d = new Date(`${day}T12:00:00`);
  return Number.isNaN(d.getTime())
    ? day
    : d.toLocaleDateString(undefined, { weekday: "short", year: "numeric", month: "long", day: "numeric" });
}

function formatTime(date: string | null): string | null {
  if (!date || !date.includes("T")) return null;
  const d = new Date(date);
  return Number.isNaN(d.getTime()) ? null : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

interface FilterBarProps {
  items: Item[];
  filters: Filters;
  onFilters: (f: Filters) => void;
  shown: number;
  federation: boolean;
  federated: boolean;
  onFederated: (on: boolean) => void;
}

function Select({ id, label, value, options, onChange, render }: {
  id: string;
  label: string;
  value: string;
  options: string[];
  onChange: (v: string) => void;
  render?: (v: string) => string;
}) {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <select id={id} value={value} onChange={(e) => onChange((e.currentTarget as HTMLSelectElement).value)}>
        <option value="">All</option>
        {options.map((o) => (
          <option key={o} value={o}>
            {render ? render(o) : o}
          </option>
        ))}
      </select>
    </div>
  );
}

function FilterBar({ items, filters, onFilters, shown, federation, federated, onFederated }: FilterBarProps) {
  const f = useMemo(() => facets(items), [items]);
  const set = (k: keyof Filters) => (v: string) => onFilters({ ...filters, [k]: v });
  return (
    <form class="filters" role="search" aria-label="Filter the timeline" onSubmit={(e) => e.preventDefault()}>
      <Select id="f-ology" label="Ology" value={filters.ology} options={f.ology} onChange={set("ology")} />
      <Select id="f-modality" label="Modality" value={filters.modality} options={f.modality} onChange={set("modality")} render={modalityName} />
      <Select id="f-bodysite" label="Body site" value={filters.bodySite} options={f.bodySite} onChange={set("bodySite")} />
      <Select id="f-encounter" label="Encounter" value={filters.encounter} options={f.encounter} onChange={set("encounter")} />
      {federation && (
        <div class="field check">
          <input
            id="f-partners"
            type="checkbox"
            checked={federated}
            onChange={(e) => onFederated((e.currentTarget as HTMLInputElement).checked)}
          />
          <label for="f-partners">Include partner sites</label>
        </div>
      )}
      <div class="field">
        <button type="button" onClick={() => onFilters(NO_FILTERS)} disabled={filters === NO_FILTERS}>
          Clear filters
        </button>
      </div>
      <p class="count" role="status" aria-live="polite">
        {shown === items.length ? `${items.length} items` : `${shown} of ${items.length} items`}
      </p>
    </form>
  );
}

interface CardProps {
  api: Api;
  item: Item;
  selected: boolean;
  canSelect: boolean;
  onOpen: (key: string) => void;
  onToggle: (key: string) => void;
}

function Card({ api, item, selected, canSelect, onOpen, onToggle }: CardProps) {
  const id = `card-${item.key.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const time = formatTime(item.date);
  const facts = [item.kindLabel, ...item.modalities.map(modalityName), ...item.ologies, ...item.bodySites, time].filter(Boolean);
  return (
    <li class={`card${selected ? " selected" : ""}${item.site ? " partner" : ""}`} data-key={item.key} data-type={item.type}>
      <div class="card-thumb" onClick={() => onOpen(item.key)}>
        <Thumb api={api} item={item} />
      </div>
      <div class="card-body">
        <h3 class="card-title">
          <button type="button" class="link" id={`${id}-open`} aria-describedby={`${id}-facts`} onClick={() => onOpen(item.key)}>
            {item.title}
          </button>
        </h3>
        <p class="facts" id={`${id}-facts`}>
          {facts.join(" · ")}
        </p>
        {item.site && (
          <p>
            <span class="badge site" title={`From partner site ${item.site.display}`}>
              {item.site.display}
            </span>
          </p>
        )}
        {item.performers.length > 0 && <p class="small">By {item.performers.join(", ")}</p>}
        {item.encounter && <p class="small">Encounter: {item.encounter.display}</p>}
        {item.orders.length > 0 && <p class="small">Order: {item.orders.map((o) => o.display).join("; ")}</p>}
        {item.reports.length > 0 && <p class="small">Report: {item.reports.map((r) => r.display).join("; ")}</p>}
        {item.studies.length > 0 && <p class="small">About: {item.studies.map((s) => s.display).join("; ")}</p>}
        {item.type === "DiagnosticReport" && item.summary && <p class="small summary">{item.summary}</p>}
        <div class="pick">
          <input
            type="checkbox"
            id={`${id}-pick`}
            checked={selected}
            disabled={!selected && !canSelect}
            onChange={() => onToggle(item.key)}
          />
          <label for={`${id}-pick`}>
            Compare<span class="sr-only"> {item.title}</span>
          </label>
        </div>
      </div>
    </li>
  );
}

export interface TimelineProps extends Omit<FilterBarProps, "shown"> {
  api: Api;
  selection: string[];
  onOpen: (key: string) => void;
  onToggle: (key: string) => void;
}

export function Timeline(props: TimelineProps) {
  const { api, items, filters, selection, onOpen, onToggle } = props;
  const shown = useMemo(() => items.filter((i) => matches(i, filters)), [items, filters]);
  const groups = useMemo(() => {
    const byDay = new Map<string, Item[]>();
    for (const item of shown) {
      const list = byDay.get(item.day) ?? [];
      list.push(item);
      byDay.set(item.day, list);
    }
    return [...byDay.entries()];
  }, [shown]);

  useLayoutEffect(() => {
    if (painted || !items.length) return;
    painted = true;
    // the first items are on screen at the next frame: what benchmarks/app_timeline.py reads
    requestAnimationFrame(() => {
      performance.mark("timeline-first-paint", { detail: { items: items.length } });
      document.documentElement.dataset.timelinePainted = String(items.length);
    });
  }, [items]);

  const canSelect = selection.length < MAX_COMPARE;
  return (
    <>
      <FilterBar {...props} shown={shown.length} />
      {items.length === 0 && <p class="empty">No images, documents or reports for this patient.</p>}
      {items.length > 0 && shown.length === 0 && <p class="empty">No item matches these filters.</p>}
      <div class="timeline">
        {groups.map(([day, list]) => (
          <section class="day" key={day} aria-labelledby={`day-${day || "undated"}`}>
            <h2 id={`day-${day || "undated"}`}>
              {day ? <time dateTime={day}>{formatDay(day)}</time> : "Undated"}
            </h2>
            <ul class="cards">
              {list.map((item) => (
                <Card
                  key={item.key}
                  api={api}
                  item={item}
                  selected={selection.includes(item.key)}
                  canSelect={canSelect}
                  onOpen={onOpen}
                  onToggle={onToggle}
                />
              ))}
            </ul>
          </section>
        ))}
      </div>
    </>
  );
}
