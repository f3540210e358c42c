// Small SVG graphs: a sparkline for a table cell, a line chart with a legend for the VM page.
import { html } from "./html.js";

function path(values, w, h, max) {
  const n = values.length;
  if (n < 2) return "";
  return values.map((v, i) => `${i ? "L" : "M"}${((i / (n - 1)) * w).toFixed(1)},${(h - (Math.min(v ?? 0, max) / max) * h).toFixed(1)}`).join("");
}

export function Sparkline({ values, max, label }) {
  const top = max || Math.max(1, ...values.map((v) => v ?? 0));
  return html`<svg class="spark" viewBox="0 0 60 16" width="60" height="16" role="img" aria-label=${label}>
    <path d=${path(values, 60, 16, top)} fill="none" stroke="currentColor" stroke-width="1.5" /></svg>`;
}

const COLORS = ["var(--accent)", "var(--ok)"];

export function Chart({ title, series, format, max }) {
  const all = series.flatMap((s) => s.values.map((v) => v ?? 0));
  const top = max || Math.max(1, ...all) * 1.1;
  const last = series.map((s) => s.values[s.values.length - 1]);
  return html`<figure class="chart card">
    <figcaption><strong>${title}</strong>
      ${series.map((s, i) => html` <span style=${`color:${COLORS[i]}`}>■</span> ${s.label} ${last[i] == null ? "—" : format(last[i])}`)}</figcaption>
    <svg viewBox="0 0 300 80" preserveAspectRatio="none" role="img"
        aria-label=${`${title}: ${series.map((s, i) => `${s.label} ${last[i] == null ? "no data" : format(last[i])}`).join(", ")}`}>
      <line x1="0" y1="79.5" x2="300" y2="79.5" stroke="var(--line)" />
      ${series.map((s, i) => html`<path d=${path(s.values, 300, 78, top)} fill="none" stroke=${COLORS[i]} stroke-width="1.5" vector-effect="non-scaling-stroke" />`)}
    </svg>
    <div class="muted small">max ${format(top / 1.1)}</div>
  </figure>`;
}
