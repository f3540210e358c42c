// The lifecycle actions on VMs: when each applies, the role it needs, how it is confirmed, and running it
// on one VM or (through core.bulk, one job) on a selection.
import { html, useState } from "./html.js";
import { client, can } from "./session.js";
import { track } from "./jobs.js";
import { toast } from "./toasts.js";
import { Dialog, Field, fieldErrors } from "./widgets.js";

const RUNNING = ["RUNNING"];
const LIVE = ["RUNNING", "SUSPENDED"];

export const ACTIONS = [
  { key: "start", label: "Start", method: "vm.start", states: ["STOPPED", "ERROR"], args: (id) => [id, {}] },
  { key: "resume", label: "Resume", method: "vm.resume", states: ["SUSPENDED"] },
  { key: "stop", label: "Stop", method: "vm.stop", states: RUNNING, confirm: "stop", job: true,
    args: (id, o) => [id, { force_after_timeout: !!o.force }] },
  { key: "restart", label: "Restart", method: "vm.restart", states: RUNNING, job: true },
  { key: "suspend", label: "Suspend", method: "vm.suspend", states: RUNNING },
  { key: "poweroff", label: "Power off", method: "vm.poweroff", states: LIVE, confirm: "poweroff" },
  // vm.clone(id, name) as TrueNAS clients send it; a template's linked clone adds the options argument.
  { key: "clone", label: "Clone", method: "vm.clone", states: null, confirm: "clone",
    args: (id, o) => (o.linked ? [id, o.name || null, { linked: true }] : [id, o.name || null]) },
  { key: "delete", label: "Delete", method: "vm.delete", states: null, confirm: "delete",
    args: (id, o) => [id, { zvols: !!o.zvols, force: !!o.force }] },
];
export const byKey = Object.fromEntries(ACTIONS.map((a) => [a.key, a]));

// Why an action cannot be used on a VM now (a role or its state), or null.
export function blocked(action, vm) {
  if (!can("VM_WRITE", vm.id)) return "Needs the VM_WRITE role on this VM";
  const state = vm.status?.state;
  if (action.key === "start" && vm.template) return "A template cannot be started: clone it";
  if (action.states && !action.states.includes(state)) return `Not while ${String(state).toLowerCase()}`;
  return null;
}

const argsOf = (action, id, options) => (action.args ? action.args(id, options) : [id]);

export async function runOne(action, vm, options = {}) {
  try {
    const result = await client.call(action.method, argsOf(action, vm.id, options));
    if (action.job) track(result, `${action.label} ${vm.name}`);
    else toast(`${action.label} ${vm.name}: done`, "ok");
    return result;
  } catch (e) {
    // As TrueNAS does: a start refused for lack of free memory may be retried with overcommit.
    if (action.key === "start" && e.errname === "ENOMEM" && !options.overcommit
        && window.confirm(`${e.message}\n\nStart ${vm.name} anyway, overcommitting the host's memory?`)) {
      return runOne({ ...action, args: (id) => [id, { overcommit: true }] }, vm, { overcommit: true });
    }
    toast(`${action.label} ${vm.name}: ${e.message}`, "error", 10000);
    return undefined;
  }
}

export async function runBulk(action, list, options = {}) {
  const targets = list.filter((vm) => !blocked(action, vm));
  if (!targets.length) return;
  try {
    const id = await client.call("core.bulk", [action.method, targets.map((vm) => argsOf(action, vm.id, options)),
      `${action.label} {index} of {total}`]);
    track(id, `${action.label} ${targets.length} VMs`);
  } catch (e) {
    toast(`${action.label}: ${e.message}`, "error", 10000);
  }
}

// A failed clone's errors by field: the schema's (an invalid name) by their attribute path, and a name
// another VM has (the server's EEXIST, its "[EEXIST] " prefix left to the toasts) beside the name too.
function cloneErrors(err) {
  if (err.errname === "EEXIST") return { name: err.message.replace(/^\[[A-Z0-9_]+\]\s*/, "") };
  return fieldErrors(err, ["name", "linked"]);
}

// The confirmation dialog of an action (null when it needs none): gathers its options, then runs it.
// A clone's dialog stays open until the server answers, so its errors (a taken or invalid name) appear
// next to the name; the other actions close it at once and report through their job or a toast.
export function Confirm({ action, vms, onDone }) {
  const [o, setO] = useState({});
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const names = vms.map((vm) => vm.name).join(", ");
  const single = vms.length === 1;
  const ok = !busy && (action.confirm !== "delete" || !single || o.typed === vms[0].name);
  const clone = async () => {
    setBusy(true);
    setErrors({});
    try {
      await client.call(action.method, argsOf(action, vms[0].id, o));
      toast(`${action.label} ${vms[0].name}: done`, "ok");
      onDone();
    } catch (err) {
      setErrors(cloneErrors(err));
      setBusy(false);
    }
  };
  const go = async (e) => {
    e.preventDefault();
    if (action.key === "clone" && single) { await clone(); return; }
    onDone();
    if (single) await runOne(action, vms[0], o); else await runBulk(action, vms, o);
  };
  const set = (k) => (v) => setO({ ...o, [k]: v });
  return html`<${Dialog} title=${`${action.label} ${single ? vms[0].name : `${vms.length} VMs`}?`} onClose=${onDone}>
    <form onSubmit=${go}>
      ${action.confirm === "stop" && html`<p>An ACPI shutdown is sent; the guest has its shutdown timeout to stop.</p>
        <${Field} spec=${{ name: "force", type: "checkbox", label: "Power off if it has not stopped after the timeout" }} value=${o.force} set=${set("force")} />`}
      ${action.confirm === "poweroff" && html`<p>The guest is stopped at once, like pulling its power cord: unsaved data is lost.</p>`}
      ${errors[""] && html`<p class="error" role="alert">${errors[""]}</p>`}
      ${action.confirm === "clone" && html`<${Field} spec=${{ name: "name", label: "Name of the clone", help: "Empty: the name with _clone and a number." }} value=${o.name} set=${set("name")} error=${errors.name} />
        ${single && vms[0].template && html`<${Field} spec=${{ name: "linked", type: "checkbox", label: "Linked clone",
          help: "Its disks are overlays on the template's (made at once, holding only what the clone writes); the template cannot be deleted while it has linked clones." }} value=${o.linked} set=${set("linked")} />`}`}
      ${action.confirm === "delete" && html`<p>Deleting <strong>${names}</strong> cannot be undone.</p>
        <${Field} spec=${{ name: "zvols", type: "checkbox", label: "Also delete their disk volumes" }} value=${o.zvols} set=${set("zvols")} />
        <${Field} spec=${{ name: "force", type: "checkbox", label: "Power off running VMs first" }} value=${o.force} set=${set("force")} />
        ${single && html`<${Field} spec=${{ name: "typed", label: `Type ${vms[0].name} to confirm` }} value=${o.typed} set=${set("typed")} />`}`}
      <div class="actions"><button type="button" class="btn" onClick=${onDone}>Cancel</button>
        <button type="submit" class=${`btn ${action.key === "delete" || action.key === "poweroff" ? "danger" : "primary"}`} disabled=${!ok}>${busy ? `${action.label}…` : action.label}</button></div>
    </form>
  <//>`;
}
