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

// A vm.* method whose first argument is a VM id (vm.device.* and vm.snapshot.* name a device or a snapshot).
const byVmId = (method) => method.startsWith("vm.") && !method.startsWith("vm.device.") && !method.startsWith("vm.snapshot.");

// The VM a job names in its arguments alone (the VM id first, or the `vm` of vm.snapshot.create's object), or null.
export function vmIdOf(job) {
  const first = (job.arguments || [])[0];
  if (byVmId(job.method) && typeof first === "number") return first;
  if (job.method === "vm.snapshot.create" && typeof first?.vm === "number") return first.vm;
  return null;
}

// The unfinished jobs by the VM they name (core.bulk's items of a vm.* method too): cheap enough for every
// row of the list.
export function jobsByVm(map) {
  const out = new Map();
  const add = (id, job) => { if (!out.has(id)) out.set(id, []); out.get(id).push(job); };
  for (const job of map.values()) {
    if (!running(job)) continue;
    const args = job.arguments || [];
    const id = vmIdOf(job);
    if (id != null) add(id, job);
    else if (job.method === "core.bulk" && byVmId(String(args[0]))) for (const p of args[1] || []) add(p[0], job);
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
  if (result.vm === vm.id || result.vm?.id === vm.id || vmIdOf(job) === vm.id) return true;
  switch (job.method) {
    case "core.bulk":
      return byVmId(String(first)) && (args[1] || []).some((p) => p[0] === vm.id);
    case "vm.snapshot.delete": case "vm.snapshot.revert":
      return snapshotIds.has(first);
    case "vm.device.export_disk":
      return devices.some((d) => d.id === first);
    case "vm.device.import_disk":
      return devices.some((d) => d.attributes.zvol_name && d.attributes.zvol_name === first?.zvol_name);
    default:
      return false;
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
