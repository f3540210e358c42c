// The VM's jobs tab: its running and recent jobs (what Proxmox calls a VM's task history), live from the job
// events the jobs store follows, each as the jobs drawer shows it: progress, state, error, abort.
import { html, useState, useEffect, useRef } from "../lib/html.js";
import { useStore } from "../lib/store.js";
import { jobs, concernsVm } from "../lib/jobs.js";
import { client } from "../lib/session.js";
import { Empty } from "../lib/widgets.js";
import { JobItem } from "./jobsdrawer.js";

const SHOWN = 50;

// Ids of the VM's snapshots, those gone included: deleting or reverting one names only its id.
function useSnapshotIds(vm) {
  const ids = useRef(new Set()).current;
  const [, changed] = useState(0);
  useEffect(() => {
    client.call("vm.snapshot.query", [[["vm", "=", vm.id]]]).then((list) => {
      for (const s of list) ids.add(s.id);
      changed((n) => n + 1);
    }).catch(() => {});
  }, [vm.id, vm.snapshot_count]);
  return ids;
}

export function VmJobs({ vm }) {
  const all = useStore(jobs);
  const snapshots = useSnapshotIds(vm);
  const list = [...all.values()].filter((job) => concernsVm(job, vm, snapshots)).sort((a, b) => b.id - a.id).slice(0, SHOWN);
  return html`<section aria-labelledby="vm-jobs">
    <div class="toolbar"><h2 id="vm-jobs">Jobs</h2><span class="muted small">running and recent, newest first</span></div>
    ${list.length ? html`<ul class="jobs card">${list.map((job) => html`<${JobItem} key=${job.id} job=${job} />`)}</ul>`
      : html`<${Empty}>No jobs about this VM yet.<//>`}
  </section>`;
}
