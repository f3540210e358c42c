// Shared controls: buttons that say why they are disabled, fields with their server errors, a modal
// dialog, progress bars. Forms are described by field specs so every page renders errors the same way.
import { html, useEffect, useRef, useState } from "./html.js";

let uid = 0;
export const newId = (prefix = "f") => `${prefix}${++uid}`;

// A button; when `why` is set it is disabled and says why (as its tooltip and to screen readers).
export function Button({ why, busy, kind = "", children, ...rest }) {
  const id = useRef(newId("why")).current;
  const disabled = Boolean(why) || busy || rest.disabled;
  return html`<button type="button" class=${`btn ${kind}`} ...${rest} disabled=${disabled}
      title=${why || rest.title} aria-describedby=${why ? id : undefined}>
    ${children}${why && html`<span id=${id} class="sr-only"> (${why})</span>`}
  </button>`;
}

export function Progress({ job }) {
  const p = job.progress || {};
  const known = job.state === "RUNNING" && p.percent > 0;
  return html`<div class="progress">
    <progress max="100" value=${known ? p.percent : undefined}
      aria-label=${`${job.description || job.method}: ${known ? p.percent + "%" : job.state}`}></progress>
    <span class="muted small">${p.description || (known ? `${p.percent}%` : job.state.toLowerCase())}</span>
  </div>`;
}

function options(spec) {
  return (spec.options || []).map((o) => (Array.isArray(o) ? o : [o, o]));
}

function Input({ spec, value, set, id, invalid, describedby }) {
  const common = { id, name: spec.name, "aria-invalid": invalid ? "true" : undefined,
    "aria-describedby": describedby, required: spec.required, disabled: spec.disabled };
  switch (spec.type) {
    case "checkbox":
      return html`<input type="checkbox" ...${common} checked=${!!value} onChange=${(e) => set(e.target.checked)} />`;
    case "select":
      return html`<select ...${common} value=${value ?? ""} onChange=${(e) => set(spec.parse ? spec.parse(e.target.value) : e.target.value)}>
        ${options(spec).map(([v, l]) => html`<option value=${v}>${l}</option>`)}
      </select>`;
    case "multiselect":
      return html`<select multiple size=${Math.min(6, options(spec).length || 1)} ...${common}
          onChange=${(e) => set([...e.target.selectedOptions].map((o) => spec.parse ? spec.parse(o.value) : o.value))}>
        ${options(spec).map(([v, l]) => html`<option value=${v} selected=${(value || []).includes(v)}>${l}</option>`)}
      </select>`;
    case "textarea":
      return html`<textarea rows="3" ...${common} value=${value ?? ""} onInput=${(e) => set(e.target.value)} />`;
    case "number":
      return html`<input type="number" inputmode="numeric" min=${spec.min} max=${spec.max} step=${spec.step || 1} ...${common}
        value=${value ?? ""} onInput=${(e) => set(e.target.value === "" ? null : Number(e.target.value))} />`;
    default:
      return html`<input type=${spec.type || "text"} autocomplete=${spec.autocomplete || "off"} ...${common}
        placeholder=${spec.placeholder} value=${value ?? ""} onInput=${(e) => set(e.target.value)} />`;
  }
}

// One labelled field with its help text and its error (from the server's ValidationErrors).
export function Field({ spec, value, set, error }) {
  const id = useRef(newId()).current;
  const helpId = spec.help ? `${id}-help` : null;
  const errId = error ? `${id}-err` : null;
  const describedby = [helpId, errId].filter(Boolean).join(" ") || undefined;
  const input = html`<${Input} spec=${spec} value=${value} set=${set} id=${id} invalid=${!!error} describedby=${describedby} />`;
  return html`<div class=${`field ${spec.type === "checkbox" ? "check" : ""} ${error ? "has-error" : ""}`} data-field=${spec.name}>
    ${spec.type === "checkbox" ? html`${input}<label for=${id}>${spec.label}</label>` : html`<label for=${id}>${spec.label}</label>${input}`}
    ${spec.help && html`<div id=${helpId} class="help">${spec.help}</div>`}
    ${error && html`<div id=${errId} class="error" role="alert">${error}</div>`}
  </div>`;
}

// Fields of a spec list bound to an object; errors maps field names to messages.
export function Fields({ specs, data, setData, errors = {} }) {
  return specs.filter((s) => !s.hidden || !s.hidden(data)).map((spec) => html`<${Field} key=${spec.name} spec=${spec}
    value=${data[spec.name]} error=${errors[spec.name]} set=${(v) => setData({ ...data, [spec.name]: v })} />`);
}

// Errors of a failed call by field name: the last non-numeric segment of each `extra` attribute path
// (vm_create.devices.0.attributes.path -> path), the rest under "" for a message above the form.
export function fieldErrors(err, names = null) {
  const out = {};
  if (!err) return out;
  for (const [attribute, message] of err.extra && err.validation ? err.extra : []) {
    const parts = String(attribute || "").split(".").filter((p) => !/^\d+$/.test(p));
    const name = parts[parts.length - 1];
    const key = name && (!names || names.includes(name)) ? name : "";
    out[key] = out[key] ? `${out[key]}; ${message}` : message;
  }
  if (!Object.keys(out).length) out[""] = err.message;
  return out;
}

// A modal dialog (the native <dialog>: focus kept inside, Escape closes).
export function Dialog({ title, onClose, children, wide, drawer }) {
  const ref = useRef(null);
  const titleId = useRef(newId("dlg")).current;
  useEffect(() => {
    const d = ref.current;
    if (!d.open) d.showModal();
    return () => d.open && d.close();
  }, []);
  return html`<dialog ref=${ref} class=${drawer ? "drawer" : wide ? "wide" : ""} aria-labelledby=${titleId}
      onCancel=${(e) => { e.preventDefault(); onClose(); }}>
    <div class="dialog-head"><h2 id=${titleId}>${title}</h2>
      <button type="button" class="btn ghost" aria-label="Close" onClick=${onClose}>✕</button></div>
    ${children}
  </dialog>`;
}

// A form dialog over field specs: submit(data) may throw an RpcError whose field errors are shown in place.
export function FormDialog({ title, specs, initial, submit, onClose, submitLabel = "Save", children }) {
  const [data, setData] = useState(initial);
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const onSubmit = async (e) => {
    e.preventDefault();
    setBusy(true);
    try {
      await submit(data);
      onClose();
    } catch (err) {
      setErrors(fieldErrors(err, specs.map((s) => s.name)));
    } finally {
      setBusy(false);
    }
  };
  return html`<${Dialog} title=${title} onClose=${onClose}>
    <form onSubmit=${onSubmit}>
      ${errors[""] && html`<p class="error" role="alert">${errors[""]}</p>`}
      <${Fields} specs=${specs} data=${data} setData=${setData} errors=${errors} />
      ${children}
      <div class="actions"><button type="button" class="btn" onClick=${onClose}>Cancel</button>
        <button type="submit" class="btn primary" disabled=${busy}>${submitLabel}</button></div>
    </form>
  <//>`;
}

export function Empty({ children }) {
  return html`<p class="empty">${children}</p>`;
}
