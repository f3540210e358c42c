// One VM: its state and actions, and tabs for the summary (uptime, live graphs), hardware, settings,
// snapshots, log, console and its jobs. The record comes from the live VM collection, so the page follows every change.
import { html, useState, useEffect } from "../lib/html.js";
import { useStore } from "../lib/store.js";
import { vms, vmsLoad } from "../lib/vms.js";
import { jobs, running as isRunning, concernsVm } from "../lib/jobs.js";
import { stats } from "../lib/stats.js";
import { client, can } from "../lib/session.js";
import { Link, navigate } from "../lib/router.js";
import { ACTIONS, blocked, runOne, Confirm } from "../lib/vmactions.js";
import { Button, Progress, Empty } from "../lib/widgets.js";
import { Chart } from "../lib/chart.js";
import { mib, bytes, topology, duration } from "../lib/format.js";
import { StateBadge } from "./vmlist.js";
import { Hardware } from "./hardware.js";
import { Settings } from "./settings.js";
import { Snapshots } from "./snapshots.js";
import { LogTab } from "./vmlog.js";
import { ConsoleTab } from "./console.js";
import { VmJobs } from "./vmjobs.js";

const TABS = [["summary", "Summary"], ["hardware", "Hardware"], ["settings", "Settings"], ["snapshots", "Snapshots"],
  ["log", "Log"], ["console", "Console"], ["jobs", "Jobs"]];

function useHistory(id) {
  const [history, setHistory] = useState([]);
  useEffect(() => {
    client.call("vm.get_stats_history", [id, 0]).then((points) => setHistory(points.map((p) => ({
      time: p.time, cpu: p.cpu_percent, rss: p.memory_rss, mem: p.memory_used ?? p.memory_rss, used: p.memory_used ?? null,
      diskR: p.disk_read_bytes_per_s, diskW: p.disk_write_bytes_per_s, netRx: p.net_rx_bytes_per_s, netTx: p.net_tx_bytes_per_s,
    })))).catch(() => setHistory([]));
  }, [id]);
  const live = useStore(stats).get(id) || [];
  const since = history.length ? history[history.length - 1].time : 0;
  return [...history, ...live.filter((p) => p.time > since)].slice(-1800);
}

function Graphs({ vm }) {
  const points = useHistory(vm.id);
  if (!points.length) return html`<p class="muted">Graphs appear while the VM runs (sampled every few seconds, the last hour kept).</p>`;
  const col = (k) => points.map((p) => p[k]);
  const rate = (v) => `${bytes(v)}/s`;
  // Without the guest's balloon driver libvirt knows only the QEMU process's resident memory, which includes
  // QEMU's own and can exceed the guest's size: say which one is drawn, and let the scale grow to it.
  const guestSays = points.some((p) => p.used != null);
  const memLabel = guestSays ? "used by the guest" : "QEMU process (host RSS)";
  const memMax = Math.max(vm.memory * 2 ** 20, ...(guestSays ? [] : col("mem").map((v) => v ?? 0)));
  return html`<div class="cards">
    <${Chart} title="CPU" series=${[{ label: "busy", values: col("cpu") }]} format=${(v) => `${v.toFixed(0)}%`} max=${100} />
    <${Chart} title="Memory" series=${[{ label: memLabel, values: col("mem") }]} format=${bytes} max=${memMax} />
    <${Chart} title="Disk" series=${[{ label: "read", values: col("diskR") }, { label: "write", values: col("diskW") }]} format=${rate} />
    <${Chart} title="Network" series=${[{ label: "in", values: col("netRx") }, { label: "out", values: col("netTx") }]} format=${rate} />
  </div>`;
}

function GuestInfo({ vm }) {
  const [info, setInfo] = useState(null);
  const [version, setVersion] = useState(0);
  const state = vm.status?.state;
  useEffect(() => {
    client.call("vm.get_guest_info", [vm.id]).then(setInfo).catch((e) => setInfo({ agent: false, reason: e.message }));
  }, [vm.id, state, version]);
  if (!info) return null;
  // Loopback addresses say nothing about how to reach the guest: left out, as Proxmox's summary does.
  const loopback = (a) => a.address === "::1" || a.address.startsWith("127.");
  const addresses = (info.interfaces || []).flatMap((i) => (i.addresses || []).filter((a) => !loopback(a))
    .map((a) => `${a.address}/${a.prefix ?? ""} (${i.name})`));
  return html`<section class="card" aria-label="Guest"><div class="toolbar"><h2>Guest</h2><span class="spacer"></span>
      <${Button} onClick=${() => setVersion(version + 1)}>Refresh<//></div>
    ${!info.agent ? html`<p class="muted">${info.reason || "No guest agent answered."}</p>`
      : html`<dl class="facts wide"><dt>OS</dt><dd>${info.os?.pretty_name || info.os?.name || "—"}</dd>
        <dt>Host name</dt><dd>${info.hostname || "—"}</dd><dt>Addresses</dt><dd>${addresses.join(", ") || "—"}</dd>
        <dt>Time zone</dt><dd>${info.timezone || "—"}</dd></dl>`}
  </section>`;
}

// Time since the QEMU process started (vm.query's status.started_at), ticking every second.
function Uptime({ since }) {
  const [, tick] = useState(0);
  useEffect(() => {
    if (since == null) return undefined;
    const timer = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(timer);
  }, [since]);
  if (since == null) return "—";
  return html`<time datetime=${new Date(since * 1000).toISOString()} title=${`Since ${new Date(since * 1000).toLocaleString()}`}
    data-testid="uptime">${duration(Date.now() / 1000 - since)}</time>`;
}

function Summary({ vm }) {
  const facts = [["State", html`<${StateBadge} state=${vm.status?.state} />`], ["Uptime", html`<${Uptime} since=${vm.status?.started_at} />`],
    ["vCPUs", topology(vm)], ["Memory", mib(vm.memory)],
    ["Firmware", `${vm.bootloader}${vm.enable_secure_boot ? ", secure boot" : ""}${vm.trusted_platform_module ? ", TPM" : ""}`],
    ["Start with the host", vm.autostart ? "Yes" : "No"], ["Devices", (vm.devices || []).map((d) => d.attributes.dtype).join(", ") || "None"],
    ["Description", vm.description || "—"], ["UUID", vm.uuid]];
  return html`<section class="card" aria-label="Facts"><dl class="facts wide">${facts.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl></section>
    <${GuestInfo} vm=${vm} />
    <h2 class="section">Usage</h2><${Graphs} vm=${vm} />`;
}

export function VmPage({ id, tab }) {
  const vm = useStore(vms).get(id);
  const load = useStore(vmsLoad);
  const allJobs = useStore(jobs);
  const [asking, setAsking] = useState(null);
  const running = vm ? [...allJobs.values()].filter((job) => isRunning(job) && concernsVm(job, vm)) : [];
  if (!vm && load.state !== "ready") {
    return html`<${Empty}>${load.state === "error" ? `Could not read the VMs: ${load.error}. Trying again in ${load.retryIn} s.`
      : "Reading the VM…"}<//>`;
  }
  if (!vm) return html`<${Empty}>No VM with id ${id} (or not visible to you). <${Link} to="">Back to the list<//><//>`;
  const act = (a) => (a.confirm ? setAsking(a) : runOne(a, vm));
  const done = () => { setAsking(null); if (asking?.key === "delete") setTimeout(() => !vms.get().has(id) && navigate(""), 500); };
  const Tab = { summary: Summary, hardware: Hardware, settings: Settings, snapshots: Snapshots, log: LogTab, console: ConsoleTab, jobs: VmJobs }[tab] || Summary;
  return html`<section aria-labelledby="vm-title">
    <p class="muted small"><${Link} to="">Virtual machines<//> /</p>
    <div class="page-head">
      <h1 id="vm-title">${vm.name}</h1><${StateBadge} state=${vm.status?.state} />
      ${running.map((job) => html`<${Progress} key=${job.id} job=${job} />`)}
      <span class="spacer"></span>
      ${can("VM_WRITE", id) && html`<div class="row-actions wrap">${ACTIONS.map((a) => html`<${Button} key=${a.key} why=${blocked(a, vm)}
        kind=${a.key === "delete" ? "danger-outline" : ""} onClick=${() => act(a)}>${a.label}<//>`)}</div>`}
    </div>
    <nav class="tabbar" aria-label="VM sections">
      ${TABS.map(([key, label]) => html`<${Link} key=${key} to=${`vms/${id}/${key}`} aria-current=${key === tab ? "page" : undefined}>${label}<//>`)}
    </nav>
    <${Tab} vm=${vm} />
    ${asking && html`<${Confirm} action=${asking} vms=${[vm]} onDone=${done} />`}
  </section>`;
}
