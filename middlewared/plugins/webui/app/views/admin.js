// Administration for those allowed: users, account groups, API keys (the key shown once, with a copy
// button), VM groups, scoped grants and the audit log. Role lists come from the server's own schemas.
import { html, useState, useEffect } from "../lib/html.js";
import { client, can, session } from "../lib/session.js";
import { Link } from "../lib/router.js";
import { toast } from "../lib/toasts.js";
import { Button, Dialog, FormDialog, Empty, Fields } from "../lib/widgets.js";
import { when } from "../lib/format.js";

export const ADMIN_ROLES = ["ACCOUNT_READ", "API_KEY_READ", "AUDIT_READ"];
let schemas = null;

// The enums of create schemas (roles), read once per page load from core.get_methods.
async function enumOf(method, path) {
  if (!schemas) schemas = client.call("core.get_methods");
  let node = (await schemas)[method]?.params?.[0];
  for (const key of path) node = node?.[key];
  return node || [];
}

function useRows(method, version) {
  const [rows, setRows] = useState(null);
  useEffect(() => { client.call(method, [[], { order_by: ["id"] }]).then(setRows).catch((e) => setRows(e)); }, [method, version]);
  return rows;
}

function useChoices(method, label = "name") {
  const [choices, setChoices] = useState([]);
  useEffect(() => { client.call(method).then((rows) => setChoices(rows.map((r) => [r.id, r[label] || r.username]))).catch(() => {}); }, [method]);
  return choices;
}

// A table of a CRUD namespace with create / edit / delete dialogs built from field specs.
function Crud({ title, noun, ns, role, columns, fields, toPayload = (d) => d, afterCreate, editable = true, blank = {} }) {
  const [version, setVersion] = useState(0);
  const [editing, setEditing] = useState(null);
  const [deleting, setDeleting] = useState(null);
  const rows = useRows(`${ns}.query`, version);
  const why = can(role) ? null : `Needs the ${role} role`;
  const refresh = () => setVersion((v) => v + 1);
  if (rows instanceof Error) return html`<p class="error">${rows.message}</p>`;
  const save = async (data) => {
    const payload = toPayload(data, editing === "new");
    const result = editing === "new" ? await client.call(`${ns}.create`, [payload]) : await client.call(`${ns}.update`, [editing.id, payload]);
    toast(`${title}: saved`, "ok");
    refresh();
    if (editing === "new" && afterCreate) afterCreate(result);
  };
  const remove = async () => {
    const row = deleting;
    setDeleting(null);
    try { await client.call(`${ns}.delete`, [row.id]); toast(`${title}: deleted`, "ok"); refresh(); } catch (e) { toast(e.message, "error", 10000); }
  };
  return html`<section aria-label=${title}>
    <div class="toolbar"><h2>${title}</h2><span class="spacer"></span><${Button} kind="primary" why=${why} onClick=${() => setEditing("new")}>Add<//></div>
    ${!rows ? html`<p class="muted">Loading…</p>` : !rows.length ? html`<${Empty}>None yet.<//>` : html`<table class="plain">
      <thead><tr>${columns.map(([, label]) => html`<th>${label}</th>`)}<th><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${rows.map((r) => html`<tr key=${r.id}>${columns.map(([key, , fmt]) => html`<td>${fmt ? fmt(r[key], r) : String(r[key] ?? "—")}</td>`)}
        <td class="row-actions">${editable && html`<${Button} why=${why || (r.builtin ? "Built in" : null)} onClick=${() => setEditing(r)}>Edit<//>`}
          <${Button} why=${why || (r.builtin ? "Built in" : null)} onClick=${() => setDeleting(r)}>Delete<//></td></tr>`)}</tbody></table>`}
    ${editing && html`<${FormDialog} title=${editing === "new" ? `Add ${noun}` : `Edit ${noun}`}
      specs=${typeof fields === "function" ? fields(editing === "new") : fields} initial=${editing === "new" ? { ...blank } : { ...editing }}
      submit=${save} onClose=${() => setEditing(null)} />`}
    ${deleting && html`<${Dialog} title="Delete?" onClose=${() => setDeleting(null)}><p>Delete ${deleting.name || deleting.username || `#${deleting.id}`}?</p>
      <div class="actions"><button type="button" class="btn" onClick=${() => setDeleting(null)}>Cancel</button>
        <button type="button" class="btn danger" onClick=${remove}>Delete</button></div><//>`}
  </section>`;
}

const list = (v) => (Array.isArray(v) && v.length ? v.join(", ") : "—");

function Users() {
  const [roles, setRoles] = useState([]);
  const groups = useChoices("group.query");
  useEffect(() => { enumOf("user.create", ["properties", "roles", "items", "enum"]).then(setRoles).catch(() => {}); }, []);
  const fields = (adding) => [
    { name: "username", label: "Username", required: true }, { name: "full_name", label: "Full name" },
    { name: "password", label: adding ? "Password" : "New password (empty: unchanged)", type: "password", autocomplete: "new-password" },
    { name: "roles", label: "Roles everywhere", type: "multiselect", options: roles },
    { name: "groups", label: "Groups", type: "multiselect", options: groups, parse: Number },
    { name: "enabled", label: "May log in", type: "checkbox" }, { name: "locked", label: "Locked", type: "checkbox" }];
  const toPayload = (d) => {
    const out = { username: d.username, full_name: d.full_name || "", roles: d.roles || [], groups: d.groups || [],
      enabled: d.enabled ?? true, locked: !!d.locked };
    if (d.password) out.password = d.password;
    return out;
  };
  return html`<${Crud} title="Users" noun="user" ns="user" role="ACCOUNT_WRITE" fields=${fields} toPayload=${toPayload}
    columns=${[["username", "Username"], ["full_name", "Full name"], ["roles", "Roles", list], ["enabled", "Enabled", (v) => (v ? "Yes" : "No")]]} />`;
}

function Groups() {
  const [roles, setRoles] = useState([]);
  const users = useChoices("user.query", "username");
  useEffect(() => { enumOf("group.create", ["properties", "roles", "items", "enum"]).then(setRoles).catch(() => {}); }, []);
  const fields = [{ name: "name", label: "Name", required: true },
    { name: "roles", label: "Roles of every member", type: "multiselect", options: roles },
    { name: "users", label: "Members", type: "multiselect", options: users, parse: Number }];
  const toPayload = (d) => ({ name: d.name, roles: d.roles || [], users: d.users || [] });
  return html`<${Crud} title="Groups" noun="group" ns="group" role="ACCOUNT_WRITE" fields=${fields} toPayload=${toPayload}
    columns=${[["name", "Name"], ["roles", "Roles", list], ["users", "Members", (v) => String((v || []).length)]]} />`;
}

function ApiKeys() {
  const [shown, setShown] = useState(null);
  const [copied, setCopied] = useState(false);
  const [users, setUsers] = useState([]);
  useEffect(() => { client.call("user.query").then((r) => setUsers(r.map((u) => u.username))).catch(() => {}); }, []);
  const me = session.get().me?.pw_name;
  const fields = (adding) => [{ name: "name", label: "Name", required: true },
    ...(adding ? [{ name: "username", label: "User", type: "select", options: users.length ? users : [me], help: "The user the key logs in as." }] : []),
    { name: "expires_at_text", label: "Expires (empty: never)", type: "datetime-local" }];
  const toPayload = (d, adding) => {
    const out = { name: d.name, expires_at: d.expires_at_text ? { $date: new Date(d.expires_at_text).getTime() } : null };
    if (adding && d.username) out.username = d.username;
    return out;
  };
  const copy = async () => {
    try { await navigator.clipboard.writeText(shown); setCopied(true); } catch { toast("Copy failed: select the key and copy it", "warn"); }
  };
  return html`<${Crud} title="API keys" noun="API key" ns="api_key" role="API_KEY_WRITE" fields=${fields} toPayload=${toPayload} blank=${{ username: me }}
      afterCreate=${(r) => { setCopied(false); setShown(r.key); }}
      columns=${[["id", "Id"], ["name", "Name"], ["username", "User"], ["created_at", "Created", (v) => when(v)],
        ["expires_at", "Expires", (v) => (v ? when(v) : "never")], ["expired", "Expired", (v) => (v ? "Yes" : "No")]]} />
    ${shown && html`<${Dialog} title="The new API key" onClose=${() => setShown(null)}>
      <p>Copy it now: it is shown only once.</p>
      <div class="field"><label for="newkey">API key</label><input id="newkey" readonly value=${shown} onFocus=${(e) => e.target.select()} /></div>
      <div class="actions"><span role="status">${copied ? "Copied" : ""}</span>
        <button type="button" class="btn primary" onClick=${copy}>Copy</button>
        <button type="button" class="btn" onClick=${() => setShown(null)}>Done</button></div><//>`}`;
}

function VmGroups() {
  const groups = useChoices("vm_group.query");
  const [vmChoices, setVmChoices] = useState([]);
  useEffect(() => { client.call("vm.query", [[], { select: ["id", "name"] }]).then((r) => setVmChoices(r.map((v) => [v.id, v.name]))).catch(() => {}); }, []);
  const fields = [{ name: "name", label: "Name", required: true }, { name: "description", label: "Description" },
    { name: "parent", label: "Parent group", type: "select", options: [["", "None (top level)"], ...groups], parse: (v) => (v === "" ? null : Number(v)) },
    { name: "vms", label: "VMs", type: "multiselect", options: vmChoices, parse: Number }];
  const toPayload = (d) => ({ name: d.name, description: d.description || "", parent: d.parent ?? null, vms: d.vms || [] });
  const name = (id) => (groups.find(([g]) => g === id) || [null, id == null ? "—" : `#${id}`])[1];
  return html`<${Crud} title="VM groups" noun="VM group" ns="vm_group" role="ACCOUNT_WRITE" fields=${fields} toPayload=${toPayload}
    columns=${[["name", "Name"], ["parent", "Parent", name], ["vms", "VMs", (v) => String((v || []).length)], ["description", "Description"]]} />`;
}

function Grants() {
  const [roles, setRoles] = useState([]);
  const users = useChoices("user.query", "username");
  const groups = useChoices("group.query");
  const vmGroups = useChoices("vm_group.query");
  useEffect(() => { enumOf("acl.create", ["properties", "role", "enum"]).then(setRoles).catch(() => {}); }, []);
  const id = (v) => (v === "" ? null : Number(v));
  const fields = [{ name: "role", label: "Role", type: "select", options: [["", "Choose…"], ...roles], required: true },
    { name: "user", label: "User", type: "select", options: [["", "—"], ...users], parse: id },
    { name: "group", label: "or account group", type: "select", options: [["", "—"], ...groups], parse: id },
    { name: "vm_group", label: "On VM group (and below)", type: "select", options: [["", "—"], ...vmGroups], parse: id },
    { name: "vm", label: "or on one VM (id)", type: "number", min: 1 }];
  const pick = (choices) => (v) => (v == null ? "—" : (choices.find(([k]) => k === v) || [v, `#${v}`])[1]);
  const toPayload = (d) => ({ role: d.role, user: d.user ?? null, group: d.group ?? null, vm_group: d.vm_group ?? null, vm: d.vm ?? null });
  return html`<${Crud} title="Grants" noun="grant" ns="acl" role="ACCOUNT_WRITE" fields=${fields} toPayload=${toPayload}
    columns=${[["role", "Role"], ["user", "User", pick(users)], ["group", "Group", pick(groups)], ["vm_group", "VM group", pick(vmGroups)], ["vm", "VM"]]} />`;
}

const AUDIT_FIELDS = [{ name: "username", label: "User" }, { name: "method", label: "Method or mechanism" },
  { name: "event", label: "Event", type: "select", options: [["", "Any"], "METHOD_CALL", "AUTHENTICATION", "LOGOUT"] },
  { name: "service", label: "API", type: "select", options: [["", "Any"], ["MIDDLEWARE", "JSON-RPC"], ["VELOCITY", "Velocity REST"]] },
  { name: "outcome", label: "Outcome", type: "select", options: [["", "Any"], ["ok", "Succeeded"], ["error", "Failed"]] }];

function Audit() {
  const [f, setF] = useState({});
  const [rows, setRows] = useState(null);
  useEffect(() => {
    const filters = [];
    if (f.username) filters.push(["username", "^", f.username]);
    if (f.method) filters.push(["method", "^", f.method]);
    if (f.event) filters.push(["event", "=", f.event]);
    if (f.service) filters.push(["service", "=", f.service]);
    if (f.outcome) filters.push(["success", "=", f.outcome === "ok"]);
    const t = setTimeout(() => client.call("audit.query", [filters, { order_by: ["-audit_id"], limit: 200 }]).then(setRows).catch((e) => setRows(e)), 250);
    return () => clearTimeout(t);
  }, [f]);
  return html`<section aria-label="Audit log"><h2>Audit log</h2>
    <form class="grid filters" onSubmit=${(e) => e.preventDefault()}><${Fields} specs=${AUDIT_FIELDS} data=${f} setData=${setF} /></form>
    ${rows instanceof Error ? html`<p class="error">${rows.message}</p>` : !rows ? html`<p class="muted">Loading…</p>` : !rows.length ? html`<${Empty}>No records.<//>`
      : html`<table class="plain"><thead><tr><th>Time</th><th>User</th><th>Event</th><th>Method</th><th>API</th><th>Origin</th><th>Result</th></tr></thead>
        <tbody>${rows.map((r) => html`<tr key=${r.audit_id}><td>${when(r.timestamp)}</td><td>${r.username || "—"}</td><td>${r.event}</td>
          <td><code>${r.method || ""}</code></td><td>${r.service === "VELOCITY" ? "REST" : "JSON-RPC"}</td><td class="small">${r.origin}</td><td>${r.success ? "ok" : html`<span class="error">${r.error || "failed"}</span>`}</td></tr>`)}</tbody></table>`}
  </section>`;
}

const SECTIONS = [["users", "Users", "ACCOUNT_READ", Users], ["groups", "Groups", "ACCOUNT_READ", Groups],
  ["api-keys", "API keys", "API_KEY_READ", ApiKeys], ["vm-groups", "VM groups", "ACCOUNT_READ", VmGroups],
  ["grants", "Grants", "ACCOUNT_READ", Grants], ["audit", "Audit log", "AUDIT_READ", Audit]];

export function Admin({ section }) {
  const allowed = SECTIONS.filter(([, , role]) => can(role));
  if (!allowed.length) return html`<h1>Administration</h1><p>Your roles give no access to administration.</p>`;
  const current = allowed.find(([key]) => key === section) || allowed[0];
  const View = current[3];
  return html`<section aria-labelledby="admin-title"><h1 id="admin-title">Administration</h1>
    <nav class="tabbar" aria-label="Administration sections">${allowed.map(([key, label]) => html`<${Link} key=${key} to=${`admin/${key}`}
      aria-current=${key === current[0] ? "page" : undefined}>${label}<//>`)}</nav>
    <${View} key=${current[0]} /></section>`;
}
