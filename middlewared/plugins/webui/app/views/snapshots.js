// A VM's snapshot tree: take (with or without RAM), revert, delete; each a job with its progress.
import { html, useState, useEffect } from "../lib/html.js";
import { client, can } from "../lib/session.js";
import { track } from "../lib/jobs.js";
import { toast } from "../lib/toasts.js";
import { Button, FormDialog, Dialog, Empty } from "../lib/widgets.js";
import { when, bytes } from "../lib/format.js";

const TAKE = [
  { name: "name", label: "Name", required: true },
  { name: "description", label: "Description" },
  { name: "memory", label: "Include the RAM of the running guest (a revert resumes it)", type: "checkbox" },
];

export function Snapshots({ vm }) {
  const [list, setList] = useState(null);
  const [taking, setTaking] = useState(false);
  const [confirm, setConfirm] = useState(null); // {kind, snap}
  const [version, setVersion] = useState(0);
  useEffect(() => {
    client.call("vm.snapshot.query", [[["vm", "=", vm.id]], { order_by: ["id"] }]).then(setList).catch((e) => setList(e));
  }, [vm.id, version]);
  // Jobs of this VM ending (a snapshot taken, reverted or deleted, here or elsewhere) reload the tree.
  useEffect(() => client.subscribe("core.get_jobs", (ev) => {
    const f = ev.fields || {};
    if (String(f.method).startsWith("vm.snapshot.") && ["SUCCESS", "FAILED"].includes(f.state)) setVersion((v) => v + 1);
  }), [vm.id]);
  const why = can("VM_WRITE", vm.id) ? null : "Needs the VM_WRITE role on this VM";
  if (list instanceof Error) return html`<p class="error">${list.message}</p>`;
  if (!list) return html`<p class="muted">Loading…</p>`;
  const run = async (method, params, label) => {
    try { track(await client.call(method, params), label); } catch (e) { toast(`${label}: ${e.message}`, "error", 10000); }
  };
  const byId = new Map(list.map((s) => [s.id, s]));
  const rows = [];
  const walk = (s, depth) => { rows.push([s, depth]); for (const c of s.children) if (byId.has(c)) walk(byId.get(c), depth + 1); };
  for (const s of list) if (s.parent == null || !byId.has(s.parent)) walk(s, 0);
  return html`<section aria-label="Snapshots">
    <div class="toolbar"><${Button} kind="primary" why=${why} onClick=${() => setTaking(true)}>Take snapshot<//></div>
    ${!rows.length ? html`<${Empty}>No snapshots.<//>` : html`<ul class="tree">
      ${rows.map(([s, depth]) => html`<li key=${s.id} style=${`margin-left:${depth * 1.25}rem`} class="card">
        <strong>${s.name}</strong> ${s.current && html`<span class="badge running">current</span>`}
        <span class="muted small"> ${when(s.created)} · ${s.vm_state.toLowerCase()} · ${s.memory ? "with RAM" : "disks only"} · ${bytes(s.size)}</span>
        ${s.description && html`<div>${s.description}</div>`}
        <div class="row-actions left"><${Button} why=${why} onClick=${() => setConfirm({ kind: "revert", snap: s })}>Revert<//>
          <${Button} why=${why} onClick=${() => setConfirm({ kind: "delete", snap: s })}>Delete<//></div>
      </li>`)}
      <li class="muted small">Now${vm.status?.state ? ` (${vm.status.state.toLowerCase()})` : ""}: you are here</li></ul>`}
    ${taking && html`<${FormDialog} title="Take snapshot" specs=${TAKE} initial=${{ name: `snap-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}`, memory: false }}
      submitLabel="Take" onClose=${() => setTaking(false)}
      submit=${async (d) => track(await client.call("vm.snapshot.create", [{ vm: vm.id, ...d }]), `Snapshot ${vm.name}`)} />`}
    ${confirm && html`<${Dialog} title=${`${confirm.kind === "revert" ? "Revert to" : "Delete"} ${confirm.snap.name}?`} onClose=${() => setConfirm(null)}>
      <p>${confirm.kind === "revert" ? "The VM's disks (and RAM, if saved) go back to this snapshot: everything since is lost." : "The snapshot is removed; the VM is not changed."}</p>
      <div class="actions"><button type="button" class="btn" onClick=${() => setConfirm(null)}>Cancel</button>
        <button type="button" class="btn danger" onClick=${() => { const { kind, snap } = confirm; setConfirm(null);
          if (kind === "revert") run("vm.snapshot.revert", [snap.id, { force: true }], `Revert ${vm.name}`);
          else run("vm.snapshot.delete", [snap.id], `Delete snapshot ${snap.name}`); }}>${confirm.kind === "revert" ? "Revert" : "Delete"}</button></div>
    <//>`}
  </section>`;
}
