// Jobs from core.get_jobs and its events: recent and running ones, which VM each concerns, and a toast
// when a job this page started ends.
import { client, onLogin } from "./session.js";
import { store } from "./store.js";
import { toast } from "./toasts.js";

export const jobs = store(new Map());
const mine = new Map(); // job id -> label
const KEEP = 200;

function merge(list) {
  jobs.set((old) => {
    const map = new Map(old);
    for (const job of list) map.set(job.id, { ...(map.get(job.id) || {}), ...job });
    const ids = [...map.keys()].sort((a, b) => b - a);
    for (const id of ids.slice(KEEP)) map.delete(id);
    return map;
  });
  for (const job of list) ended(job);
}

function ended(job) {
  if (!mine.has(job.id) || !["SUCCESS", "FAILED", "ABORTED"].includes(job.state)) return;
  const label = mine.get(job.id);
  mine.delete(job.id);
  if (job.state === "SUCCESS") toast(`${label}: done`, "ok");
  else if (job.state === "ABORTED") toast(`${label}: aborted`, "warn");
  else toast(`${label}: ${job.error || "failed"}`, "error", 10000);
}

async function load() {
  merge(await client.call("core.get_jobs", [[], { order_by: ["-id"], limit: 100 }]));
}

onLogin(() => {
  jobs.set(new Map());
  return client.subscribe("core.get_jobs", (ev) => {
    if (ev.msg !== "removed" && ev.fields) merge([{ id: ev.id, ...ev.fields }]);
  }, () => load().catch((e) => console.warn(e)));
});

// Follow a job this page started: a toast when it ends.
export function track(jobId, label) {
  mine.set(jobId, label);
  const job = jobs.get().get(jobId);
  if (job) ended(job);
}

export const running = (job) => job.state === "RUNNING" || job.state === "WAITING";

// The unfinished jobs by the VM they concern (its id is the first argument of a vm.* job or of a bulk item).
export function jobsByVm(map) {
  const out = new Map();
  const add = (id, job) => { if (!out.has(id)) out.set(id, []); out.get(id).push(job); };
  for (const job of map.values()) {
    if (!running(job)) continue;
    const args = job.arguments || [];
    if (job.method.startsWith("vm.") && typeof args[0] === "number") add(args[0], job);
    else if (job.method === "core.bulk") for (const p of args[1] || []) add(p[0], job);
  }
  return out;
}

// Whether a job (running or ended) concerns a VM, by what each job method's arguments carry: the VM id
// first (vm.stop, vm.restart, vm.log_file_download, and core.bulk's items of a vm.* method), a {vm} object
// (vm.snapshot.create), one of its devices' ids (vm.device.export_disk), the volume of one of its disks
// (vm.device.import_disk), one of its snapshots' ids (vm.snapshot.delete and revert; ids the caller has seen),
// or a result naming it (vm.import_ova's new VM, a revert's snapshot).
export function concernsVm(job, vm, snapshotIds = new Set()) {
  const args = job.arguments || [];
  const first = args[0];
  const devices = vm.devices || [];
  const result = job.result && typeof job.result === "object" ? job.result : {};
  if (result.vm === vm.id || result.vm?.id === vm.id) return true;
  switch (job.method) {
    case "core.bulk":
      return String(first).startsWith("vm.") && (args[1] || []).some((p) => p[0] === vm.id);
    case "vm.snapshot.create":
      return first?.vm === vm.id;
    case "vm.snapshot.delete": case "vm.snapshot.revert":
      return snapshotIds.has(first);
    case "vm.device.export_disk":
      return devices.some((d) => d.id === first);
    case "vm.device.import_disk":
      return devices.some((d) => d.attributes.zvol_name && d.attributes.zvol_name === first?.zvol_name);
    default:
      return job.method.startsWith("vm.") && !job.method.startsWith("vm.device.") && first === vm.id;
  }
}

export async function abort(jobId) {
  try {
    await client.call("core.job_abort", [jobId]);
  } catch (e) {
    toast(`Abort failed: ${e.message}`, "error");
  }
}

// The job's end: its result, or an error carrying its message (from core.get_jobs events, no polling).
export function waitJob(jobId) {
  return new Promise((resolve, reject) => {
    const check = (map) => {
      const job = map.get(jobId);
      if (!job || running(job)) return false;
      off();
      if (job.state === "SUCCESS") resolve(job.result); else reject(new Error(job.error || job.state));
      return true;
    };
    const off = jobs.subscribe(check);
    check(jobs.get());
  });
}
