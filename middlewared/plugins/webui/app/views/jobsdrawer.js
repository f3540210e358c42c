// Running and recent jobs: progress, description, error, abort.
import { html } from "../lib/html.js";
import { useStore } from "../lib/store.js";
import { jobs, running, abort, vmIdOf } from "../lib/jobs.js";
import { vms } from "../lib/vms.js";
import { Dialog, Progress, Empty, Button } from "../lib/widgets.js";
import { when } from "../lib/format.js";

// One job: description (and the VM it is about), state, when, progress while it runs, error, abort.
export function JobItem({ job, about }) {
  return html`<li class=${`job ${job.state.toLowerCase()}`} data-job=${job.id}>
    <div class="job-head"><strong>${job.description || job.method}${about ? ` (${about})` : ""}</strong>
      <span class=${`badge ${job.state.toLowerCase()}`}>${job.state}</span></div>
    <div class="muted small">#${job.id} · ${job.method} · ${when(job.time_started)}</div>
    ${running(job) && html`<${Progress} job=${job} />`}
    ${job.error && html`<div class="error">${job.error}</div>`}
    ${running(job) && html`<${Button} why=${job.abortable ? null : "This job cannot be aborted"}
        onClick=${() => abort(job.id)}>Abort<//>`}
  </li>`;
}

export function JobsDrawer({ onClose }) {
  const list = [...useStore(jobs).values()].sort((a, b) => b.id - a.id).slice(0, 50);
  const known = useStore(vms);
  // Which VM a job is about, by name (its description names the id).
  const about = (job) => known.get(vmIdOf(job))?.name || null;
  return html`<${Dialog} title="Jobs" onClose=${onClose} drawer>
    ${!list.length && html`<${Empty}>No jobs yet.<//>`}
    <ul class="jobs">
      ${list.map((job) => html`<${JobItem} key=${job.id} job=${job} about=${about(job)} />`)}
    </ul>
  <//>`;
}
