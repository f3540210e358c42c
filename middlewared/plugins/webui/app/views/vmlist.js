// The VM list: live state from events, search, state filter, sorting, per-row and bulk actions, the jobs
// running on each VM. Rows are rendered incrementally (more as one scrolls), so 1,000 VMs stay quick.
import { html, useState, useMemo, useEffect, useRef, useCallback, Component } from "../lib/html.js";
import { useStore } from "../lib/store.js";
import { vms, groups, vmsLoad } from "../lib/vms.js";
import { jobs, jobsByVm } from "../lib/jobs.js";
import { stats } from "../lib/stats.js";
import { Sparkline } from "../lib/chart.js";
import { can, session } from "../lib/session.js";
import { Link, navigate } from "../lib/router.js";
import { ACTIONS, byKey, blocked, runOne, runBulk, Confirm } from "../lib/vmactions.js";
import { Button, Progress, Empty } from "../lib/widgets.js";
import { mib, bytes, topology, roughDuration } from "../lib/format.js";

const PAGE = 100;
const COLUMNS = [
  { key: "name", label: "Name", value: (vm) => vm.name.toLowerCase() },
  { key: "state", label: "State", value: (vm) => vm.status?.state || "" },
  { key: "vcpus", label: "vCPUs", value: (vm) => vm.vcpus * vm.cores * vm.threads },
  { key: "memory", label: "Memory", value: (vm) => vm.memory },
  { key: "usage", label: "CPU · memory use", value: (vm, g, st) => (st.get(vm.id) || []).slice(-1)[0]?.cpu ?? -1 },
  // Longest running first when ascending; stopped VMs last.
  { key: "uptime", label: "Uptime", value: (vm) => vm.status?.started_at ?? Infinity },
  { key: "autostart", label: "Autostart", value: (vm) => (vm.autostart ? 1 : 0) },
  { key: "group", label: "Group", value: (vm, g) => g.get(vm.id) || "" },
];
const PREFS = "middlewared.vmlist";
const loadPrefs = () => { try { return JSON.parse(localStorage.getItem(PREFS)) || {}; } catch { return {}; } };

export function StateBadge({ state }) {
  const s = String(state || "unknown").toLowerCase();
  return html`<span class=${`badge ${s}`}>${state || "…"}</span>`;
}

function RowActions({ vm, ask }) {
  const primary = vm.status?.state === "RUNNING" ? byKey.stop : vm.status?.state === "SUSPENDED" ? byKey.resume : byKey.start;
  const act = (a) => (a.confirm ? ask(a, [vm]) : runOne(a, vm));
  return html`<div class="row-actions">
    <${Button} why=${blocked(primary, vm)} onClick=${() => act(primary)} aria-label=${`${primary.label} ${vm.name}`}>${primary.label}<//>
    <details class="menu">
      <summary class="btn" aria-label=${`More actions for ${vm.name}`}>⋯</summary>
      <div class="menu-items">
        ${ACTIONS.filter((a) => a !== primary).map((a) => html`<${Button} key=${a.key} kind="ghost" why=${blocked(a, vm)}
          onClick=${(e) => { e.target.closest("details").open = false; act(a); }}>${a.label}<//>`)}
      </div>
    </details>
  </div>`;
}

function Usage({ points, vm }) {
  if (!points || !points.length || vm.status?.state !== "RUNNING") return html`<span class="muted">—</span>`;
  const last = points[points.length - 1];
  return html`<span class="usage"><${Sparkline} values=${points.map((p) => p.cpu)} max=${100} label=${`CPU of ${vm.name}, last minutes`} />
    <span class="small">${last.cpu == null ? "—" : `${last.cpu.toFixed(0)}%`}</span>
    <${Sparkline} values=${points.map((p) => p.mem)} max=${vm.memory * 2 ** 20} label=${`Memory of ${vm.name}, last minutes`} />
    <span class="small">${last.mem == null ? "—" : bytes(last.mem)}</span></span>`;
}

const NONE = [];

// A row renders again only when one of its props changed: an event about one VM redraws one row.
class Row extends Component {
  shouldComponentUpdate(next) {
    return Object.keys(next).some((k) => next[k] !== this.props[k]);
  }

  render() {
    return rowHtml(this.props);
  }
}

// `minute` only makes a running VM's row redraw as its uptime grows.
function rowHtml({ vm, group, running, selected, toggle, ask, usage }) {
  const started = vm.status?.started_at;
  return html`<tr data-vm=${vm.name} class=${selected ? "selected" : ""}>
    <td class="sel"><input type="checkbox" checked=${selected} onChange=${() => toggle(vm.id)} aria-label=${`Select ${vm.name}`} /></td>
    <td class="name" data-label="Name"><${Link} to=${`vms/${vm.id}`}>${vm.name}<//>
      ${vm.description && html`<div class="muted small clip">${vm.description}</div>`}</td>
    <td data-label="State" class="state"><${StateBadge} state=${vm.status?.state} />
      ${running.map((job) => html`<${Progress} key=${job.id} job=${job} />`)}</td>
    <td data-label="vCPUs" class="num">${topology(vm)}</td>
    <td data-label="Memory" class="num">${mib(vm.memory)}</td>
    <td data-label="Use"><${Usage} points=${usage} vm=${vm} /></td>
    <td data-label="Uptime" class="num">${started == null ? html`<span class="muted">—</span>` : roughDuration(Date.now() / 1000 - started)}</td>
    <td data-label="Autostart">${vm.autostart ? "Yes" : "No"}</td>
    <td data-label="Group">${group || html`<span class="muted">—</span>`}</td>
    <td class="acts">${can("VM_WRITE", vm.id) ? html`<${RowActions} vm=${vm} ask=${ask} />`
      : html`<span class="muted small" title="Your roles allow viewing this VM, not changing it">View only</span>`}</td>
  </tr>`;
}

// The current minute (Unix time / 60), advancing on its own: uptimes in the list move once a minute, and
// only the rows of running VMs are redrawn for it.
function useMinute() {
  const [minute, setMinute] = useState(() => Math.floor(Date.now() / 60000));
  useEffect(() => {
    const timer = setInterval(() => setMinute(Math.floor(Date.now() / 60000)), 5000);
    return () => clearInterval(timer);
  }, []);
  return minute;
}

function useIncremental(total, reset) {
  const [limit, setLimit] = useState(PAGE);
  const sentinel = useRef(null);
  useEffect(() => setLimit(PAGE), [reset]);
  useEffect(() => {
    if (!sentinel.current) return undefined;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) setLimit((n) => n + PAGE);
    }, { rootMargin: "600px" });
    io.observe(sentinel.current);
    return () => io.disconnect();
  }, [limit < total]);
  return [limit, sentinel];
}

export function VmList() {
  const all = useStore(vms);
  const load = useStore(vmsLoad);
  const g = useStore(groups);
  const jobMap = useStore(jobs);
  const st = useStore(stats);
  const { me } = useStore(session); // rows re-render when the session's grants change
  const minute = useMinute();
  const [prefs, setPrefs] = useState(loadPrefs);
  const [selected, setSelected] = useState(new Set());
  const [asking, setAsking] = useState(null);
  const { q = "", state = "", sort = "name", dir = 1 } = prefs;
  const update = (p) => { const next = { ...prefs, ...p }; setPrefs(next); localStorage.setItem(PREFS, JSON.stringify(next)); };

  const rows = useMemo(() => {
    const needle = q.trim().toLowerCase();
    const col = COLUMNS.find((c) => c.key === sort) || COLUMNS[0];
    return [...all.values()]
      .filter((vm) => (!state || vm.status?.state === state)
        && (!needle || vm.name.toLowerCase().includes(needle) || (vm.description || "").toLowerCase().includes(needle)))
      .sort((a, b) => { const x = col.value(a, g, st); const y = col.value(b, g, st); return (x < y ? -1 : x > y ? 1 : a.id - b.id) * dir; });
  }, [all, g, q, state, sort, dir, sort === "usage" ? st : null]);
  const [limit, sentinel] = useIncremental(rows.length, `${q}|${state}|${sort}|${dir}`);
  const chosen = rows.filter((vm) => selected.has(vm.id));
  const toggle = useCallback((id) => setSelected((s) => { const n = new Set(s); if (n.has(id)) n.delete(id); else n.add(id); return n; }), []);
  const allChosen = rows.length > 0 && chosen.length === rows.length;
  const ask = useCallback((action, list) => setAsking({ action, list }), []);
  const bulk = (a) => (a.confirm ? ask(a, chosen) : runBulk(a, chosen));
  const busy = useMemo(() => jobsByVm(jobMap), [jobMap]);
  const counts = useMemo(() => {
    const c = {};
    for (const vm of all.values()) c[vm.status?.state] = (c[vm.status?.state] || 0) + 1;
    return c;
  }, [all]);

  return html`<section aria-labelledby="vms-title">
    <div class="page-head">
      <h1 id="vms-title">Virtual machines</h1>
      <span class="muted">${all.size} total · ${counts.RUNNING || 0} running</span>
      <span class="spacer"></span>
      <${Button} kind="primary" why=${can("VM_WRITE") ? null : "Needs the VM_WRITE role"} onClick=${() => navigate("vms/new")}>Create VM<//>
    </div>
    <div class="toolbar" role="search">
      <label class="sr-only" for="vm-search">Search VMs</label>
      <input id="vm-search" type="search" placeholder="Search name or description" value=${q} onInput=${(e) => update({ q: e.target.value })} />
      <label class="sr-only" for="vm-state">State</label>
      <select id="vm-state" value=${state} onChange=${(e) => update({ state: e.target.value })}>
        <option value="">All states</option>
        ${["RUNNING", "STOPPED", "SUSPENDED", "ERROR"].map((s) => html`<option value=${s}>${s.toLowerCase()} (${counts[s] || 0})</option>`)}
      </select>
      <label class="sr-only" for="vm-sort">Sort by</label>
      <select id="vm-sort" class="narrow-only" value=${sort} onChange=${(e) => update({ sort: e.target.value })}>
        ${COLUMNS.map((c) => html`<option value=${c.key}>Sort: ${c.label}</option>`)}
      </select>
    </div>
    ${chosen.length > 0 && html`<div class="bulk" role="group" aria-label="Actions on the selected VMs">
      <strong>${chosen.length} selected</strong>
      ${ACTIONS.filter((a) => a.key !== "clone").map((a) => html`<${Button} key=${a.key}
        why=${chosen.some((vm) => !blocked(a, vm)) ? null : `No selected VM allows ${a.label.toLowerCase()}`}
        onClick=${() => bulk(a)}>${a.label}<//>`)}
      <${Button} kind="ghost" onClick=${() => setSelected(new Set())}>Clear<//>
    </div>`}
    ${load.state === "error" && html`<p class="error" role="alert">Could not read the VM list: ${load.error}.
      Trying again in ${load.retryIn} s.</p>`}
    ${rows.length === 0 ? html`<${Empty}>${all.size ? "No VM matches." : load.state === "ready" ? "No virtual machines yet."
      : "Reading the VM list…"}<//>` : html`
    <table class="vms">
      <caption class="sr-only">Virtual machines, ${rows.length} shown</caption>
      <thead><tr>
        <th class="sel"><input type="checkbox" checked=${allChosen} aria-label="Select all shown VMs"
          onChange=${() => setSelected(allChosen ? new Set() : new Set(rows.map((vm) => vm.id)))} /></th>
        ${COLUMNS.map((c) => html`<th key=${c.key} aria-sort=${sort === c.key ? (dir > 0 ? "ascending" : "descending") : "none"}>
          <button type="button" class="sort" onClick=${() => update({ sort: c.key, dir: sort === c.key ? -dir : 1 })}>${c.label}</button></th>`)}
        <th><span class="sr-only">Actions</span></th>
      </tr></thead>
      <tbody>
        ${rows.slice(0, limit).map((vm) => html`<${Row} key=${vm.id} vm=${vm} group=${g.get(vm.id)} running=${busy.get(vm.id) || NONE} usage=${st.get(vm.id)} me=${me}
          minute=${vm.status?.started_at == null ? 0 : minute}
          selected=${selected.has(vm.id)} toggle=${toggle} ask=${ask} />`)}
      </tbody>
    </table>
    ${limit < rows.length && html`<div ref=${sentinel} class="more muted">Showing ${limit} of ${rows.length}…</div>`}`}
    ${asking && html`<${Confirm} action=${asking.action} vms=${asking.list} onDone=${() => setAsking(null)} />`}
  </section>`;
}
