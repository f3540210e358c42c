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
