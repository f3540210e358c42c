// The page frame: header and navigation, the connection banner, the routed view, jobs drawer, toasts.
import { html, useState } from "../lib/html.js";
import { useStore } from "../lib/store.js";
import { client, session, logout, can } from "../lib/session.js";
import { route, Link } from "../lib/router.js";
import { toasts, dismiss } from "../lib/toasts.js";
import { jobs, running } from "../lib/jobs.js";
import { Login } from "./login.js";
import { VmList } from "./vmlist.js";
import { Wizard } from "./wizard.js";
import { VmPage } from "./vmpage.js";
import { Admin, ADMIN_ROLES } from "./admin.js";
import { JobsDrawer } from "./jobsdrawer.js";

function Banner() {
  const status = useStore(client.status);
  if (status !== "closed") return null;
  return html`<div class="banner" role="alert">Connection to the server lost: reconnecting…
    (what changed meanwhile is reloaded once it is back)</div>`;
}

function Toasts() {
  const list = useStore(toasts);
  return html`<div class="toasts" role="status" aria-live="polite">
    ${list.map((t) => html`<div key=${t.id} class=${`toast ${t.kind}`}>
      <span>${t.text}</span><button type="button" class="btn ghost" aria-label="Dismiss" onClick=${() => dismiss(t.id)}>✕</button></div>`)}
  </div>`;
}

function View() {
  const parts = useStore(route);
  const [first, second, third] = parts;
  if (first === "vms" && second === "new") return html`<${Wizard} />`;
  if (first === "vms" && second) return html`<${VmPage} id=${Number(second)} tab=${third || "summary"} />`;
  if (first === "admin") return html`<${Admin} section=${second || "users"} />`;
  return html`<${VmList} />`;
}

function Header({ me, openJobs }) {
  const all = useStore(jobs);
  const active = [...all.values()].filter(running).length;
  const parts = useStore(route);
  const here = (name) => (parts[0] || "vms") === name ? "page" : undefined;
  return html`<header class="top">
    <a class="skip" href="#main">Skip to content</a>
    <span class="brand">Virtual machines</span>
    <nav aria-label="Main">
      <${Link} to="" aria-current=${here("vms")}>VMs<//>
      ${ADMIN_ROLES.some((r) => can(r)) && html`<${Link} to="admin" aria-current=${here("admin")}>Administration<//>`}
    </nav>
    <span class="spacer"></span>
    <button type="button" class="btn ghost" onClick=${openJobs} aria-label=${`Jobs, ${active} running`}>
      Jobs${active ? html` <span class="count">${active}</span>` : ""}</button>
    <span class="user" title="Logged in as">${me.pw_name}</span>
    <button type="button" class="btn ghost" onClick=${logout}>Log out</button>
  </header>`;
}

export function App() {
  const s = useStore(session);
  const [drawer, setDrawer] = useState(false);
  if (s.state === "connecting") return html`<${Banner} /><p class="boot">Connecting…</p>`;
  if (s.state === "out") return html`<${Banner} /><${Login} /><${Toasts} />`;
  return html`<${Header} me=${s.me} openJobs=${() => setDrawer(true)} />
    <${Banner} />
    <main id="main" tabindex="-1"><${View} /></main>
    ${drawer && html`<${JobsDrawer} onClose=${() => setDrawer(false)} />`}
    <${Toasts} />`;
}
