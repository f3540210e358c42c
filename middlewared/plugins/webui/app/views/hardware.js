// A VM's devices: the list, and add / edit / remove dialogs with one form per device type (vm.device.*).
// Types without a form of their own are edited as their JSON attributes, so every type the server knows
// can be managed here.
import { html, useState, useEffect } from "../lib/html.js";
import { client, can } from "../lib/session.js";
import { toast } from "../lib/toasts.js";
import { Button, Dialog, FormDialog, Fields, fieldErrors, Empty } from "../lib/widgets.js";
import { MediaPicker } from "./media.js";
import { bytes } from "../lib/format.js";

const DTYPES = ["DISK", "CDROM", "NIC", "DISPLAY", "RAW", "PCI", "USB", "CLOUD_INIT"];
const pairs = (map) => Object.entries(map || {}).map(([k, v]) => [k, typeof v === "string" ? v : (v.description || k)]);

function specs(dtype, c, adding) {
  switch (dtype) {
    case "DISK": return [
      { name: "create_zvol", label: "Create a new volume", type: "checkbox", hidden: () => !adding },
      { name: "zvol_name", label: "New volume (<pool>/<name>)", hidden: (d) => !d.create_zvol,
        help: `Pools: ${Object.keys(c.pools || {}).join(", ") || "…"}` },
      { name: "zvol_volsize_gib", label: "Size (GiB)", type: "number", min: 1, hidden: (d) => !d.create_zvol },
      { name: "path", label: "Existing volume", type: "select", hidden: (d) => d.create_zvol,
        options: [["", "Choose…"], ...(c.current ? [[c.current, c.current]] : []), ...pairs(c.disks)] },
      { name: "type", label: "Bus", type: "select", options: [["VIRTIO", "VirtIO"], ["AHCI", "AHCI (SATA)"]] }];
    case "NIC": return [
      { name: "type", label: "Adapter", type: "select", options: [["VIRTIO", "VirtIO"], ["E1000", "Intel E1000"]] },
      { name: "nic_attach", label: "Attach to", type: "select", options: pairs(c.nics) },
      { name: "mac", label: "MAC address", placeholder: "generated when empty" },
      { name: "trust_guest_rx_filters", label: "Trust guest receive filters", type: "checkbox" }];
    case "DISPLAY": return [
      { name: "type", label: "Protocol", type: "select", options: ["SPICE", "VNC"] },
      { name: "bind", label: "Listen on", type: "select", options: pairs(c.binds) },
      { name: "resolution", label: "Resolution", type: "select", options: c.resolutions ? pairs(c.resolutions) : ["1024x768"] },
      { name: "password", label: "Password", type: "password", placeholder: "none" },
      { name: "web", label: "Offer the web console", type: "checkbox" }];
    case "RAW": return [
      { name: "path", label: "Image file (under the storage roots)", required: true },
      { name: "size_mib", label: "Size of a new file (MiB)", type: "number", min: 1, hidden: (d) => d.exists },
      { name: "exists", label: "The file exists already", type: "checkbox" },
      { name: "type", label: "Bus", type: "select", options: [["VIRTIO", "VirtIO"], ["AHCI", "AHCI (SATA)"]] },
      { name: "readonly", label: "Read-only", type: "checkbox" }];
    case "PCI": return [{ name: "pptdev", label: "Host PCI device", type: "select", options: [["", "Choose…"], ...pairs(c.pci)] }];
    case "USB": return [{ name: "device", label: "Host USB device", type: "select", options: [["", "Choose…"], ...pairs(c.usb)] }];
    default: return null;
  }
}

// Form values <-> device attributes (sizes shown in GiB/MiB, empty strings as null).
function toForm(a) {
  const f = { ...a };
  if (a.zvol_volsize) f.zvol_volsize_gib = a.zvol_volsize / 2 ** 30;
  if (a.size) f.size_mib = a.size / 2 ** 20;
  return f;
}
function toAttributes(dtype, f, adding) {
  const a = { ...f, dtype };
  delete a.zvol_volsize_gib; delete a.size_mib;
  if (dtype === "DISK") {
    if (f.create_zvol) { a.zvol_volsize = Math.round((f.zvol_volsize_gib || 0) * 2 ** 30); delete a.path; } else if (adding) { delete a.zvol_name; delete a.create_zvol; }
  }
  if (dtype === "RAW" && !f.exists && f.size_mib) a.size = Math.round(f.size_mib * 2 ** 20);
  for (const k of Object.keys(a)) if (a[k] === "") a[k] = null;
  return a;
}

const DEFAULTS = { DISK: { create_zvol: true, type: "VIRTIO", zvol_volsize_gib: 10 }, NIC: { type: "VIRTIO" },
  DISPLAY: { type: "SPICE", bind: "127.0.0.1", web: true }, RAW: { type: "VIRTIO" }, CDROM: {}, CLOUD_INIT: {} };

function DeviceDialog({ vm, device, onClose }) {
  const adding = !device;
  const [dtype, setDtype] = useState(device?.attributes.dtype || "DISK");
  const [form, setForm] = useState(() => (device ? toForm(device.attributes) : { ...DEFAULTS.DISK, zvol_name: "" }));
  const [json, setJson] = useState(() => JSON.stringify(device?.attributes || { dtype: "CLOUD_INIT" }, null, 2));
  const [order, setOrder] = useState(device?.order ?? null);
  const [errors, setErrors] = useState({});
  const [c, setC] = useState({ current: device?.attributes.path });
  useEffect(() => {
    const get = (k, m) => client.call(m).then((v) => setC((x) => ({ ...x, [k]: v }))).catch(() => {});
    get("pools", "vm.device.pool_choices"); get("disks", "vm.device.disk_choices"); get("nics", "vm.device.nic_attach_choices");
    get("binds", "vm.device.bind_choices"); get("resolutions", "vm.resolution_choices");
    get("pci", "vm.device.passthrough_device_choices"); get("usb", "vm.device.usb_passthrough_choices");
  }, []);
  useEffect(() => {
    if (adding && dtype === "DISK" && !form.zvol_name && c.pools) {
      setForm((f) => ({ ...f, zvol_name: `${Object.keys(c.pools)[0]}/${vm.name}-disk${(vm.devices || []).length}` }));
    }
  }, [c.pools]);
  useEffect(() => {
    if (dtype === "NIC" && !form.nic_attach && c.nics) setForm((f) => ({ ...f, nic_attach: Object.keys(c.nics)[0] || "" }));
  }, [dtype, c.nics]);
  const fields = specs(dtype, c, adding);
  const choose = (t) => { setDtype(t); setForm({ ...(DEFAULTS[t] || {}) }); setJson(JSON.stringify({ dtype: t }, null, 2)); setErrors({}); };
  const submit = async (e) => {
    e.preventDefault();
    let attributes;
    try {
      attributes = dtype === "CDROM" ? { dtype, path: form.path || null } : fields ? toAttributes(dtype, form, adding) : JSON.parse(json);
    } catch (err) {
      setErrors({ "": `Attributes are not valid JSON: ${err.message}` });
      return;
    }
    try {
      if (adding) await client.call("vm.device.create", [{ vm: vm.id, attributes, order }]);
      else await client.call("vm.device.update", [device.id, { attributes, order }]);
      toast(`${adding ? "Added" : "Saved"} ${dtype} device`, "ok");
      onClose();
    } catch (err) {
      const map = fieldErrors(err);
      if (map.zvol_volsize) map.zvol_volsize_gib = map.zvol_volsize;
      if (map.size) map.size_mib = map.size;
      setErrors(map);
    }
  };
  return html`<${Dialog} title=${adding ? "Add device" : `Edit ${dtype} device ${device.id}`} onClose=${onClose} wide>
    <form onSubmit=${submit}>
      ${adding && html`<div class="field"><label for="dtype">Device type</label>
        <select id="dtype" value=${dtype} onChange=${(e) => choose(e.target.value)}>${DTYPES.map((t) => html`<option value=${t}>${t}</option>`)}</select></div>`}
      ${errors[""] && html`<p class="error" role="alert">${errors[""]}</p>`}
      ${dtype === "CDROM" ? html`<${MediaPicker} label="Image" value=${form.path} error=${errors.path} onPick=${(path) => setForm({ ...form, path })} />`
        : fields ? html`<div class="grid"><${Fields} specs=${fields} data=${form} setData=${setForm} errors=${errors} /></div>`
        : html`<div class="field"><label for="attrs">Attributes (JSON)</label>
            <textarea id="attrs" rows="10" value=${json} onInput=${(e) => setJson(e.target.value)} /></div>
            ${Object.entries(errors).filter(([k]) => k).map(([k, v]) => html`<p class="error">${k}: ${v}</p>`)}`}
      <div class="field"><label for="order">Boot and device order</label>
        <input id="order" type="number" value=${order ?? ""} onInput=${(e) => setOrder(e.target.value === "" ? null : Number(e.target.value))} />
        <div class="help">Lower boots first; empty puts it last.</div></div>
      <div class="actions"><button type="button" class="btn" onClick=${onClose}>Cancel</button>
        <button type="submit" class="btn primary">${adding ? "Add" : "Save"}</button></div>
    </form>
  <//>`;
}

function describe(a) {
  switch (a.dtype) {
    case "DISK": return `${a.zvol_name || a.path} · ${a.type}`;
    case "CDROM": return a.path || "(no media)";
    case "NIC": return `${a.type} on ${a.nic_attach || "—"} · ${a.mac || ""}`;
    case "DISPLAY": return `${a.type} ${a.bind}:${a.port ?? "auto"}${a.web ? " · web" : ""}`;
    case "RAW": return `${a.path}${a.size ? ` · ${bytes(a.size)}` : ""}`;
    case "PCI": return a.pptdev;
    case "USB": return a.device || JSON.stringify(a.usb || {});
    default: return "";
  }
}

const GROW = [{ name: "gib", label: "New size (GiB)", type: "number", min: 1, step: "any", help: "Larger than now; a running guest sees it at once." }];

export function Hardware({ vm }) {
  const [editing, setEditing] = useState(null); // "new" or a device
  const [removing, setRemoving] = useState(null);
  const [growing, setGrowing] = useState(null);
  const why = can("VM_DEVICE_WRITE", vm.id) ? null : "Needs the VM_DEVICE_WRITE role on this VM";
  const devices = vm.devices || [];
  const remove = async (device, zvol) => {
    setRemoving(null);
    try {
      await client.call("vm.device.delete", [device.id, { zvol, raw_file: false }]);
      toast(`Removed ${device.attributes.dtype} device`, "ok");
    } catch (e) {
      toast(`Remove failed: ${e.message}`, "error", 10000);
    }
  };
  // The drive stays attached, empty (a running guest sees no media), ready for other media.
  const eject = async (device) => {
    try {
      await client.call("vm.device.update", [device.id, { attributes: { path: null } }]);
      toast("Media ejected", "ok");
    } catch (e) {
      toast(`Eject failed: ${e.message}`, "error", 10000);
    }
  };
  return html`<section aria-label="Hardware">
    <div class="toolbar"><${Button} kind="primary" why=${why} onClick=${() => setEditing("new")}>Add device<//></div>
    ${!devices.length ? html`<${Empty}>No devices.<//>` : html`<table class="plain">
      <thead><tr><th>Type</th><th>Details</th><th>Order</th><th><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${devices.map((d) => html`<tr key=${d.id} data-device=${d.attributes.dtype}>
        <td>${d.attributes.dtype}</td><td class="clip-wide">${describe(d.attributes)}</td><td>${d.order ?? "—"}</td>
        <td class="row-actions"><${Button} why=${why} onClick=${() => setEditing(d)}>${d.attributes.dtype === "CDROM" ? "Change media" : "Edit"}<//>
          ${d.attributes.dtype === "CDROM" && d.attributes.path && html`<${Button} why=${why} onClick=${() => eject(d)}>Eject<//>`}
          ${["DISK", "RAW"].includes(d.attributes.dtype) && html`<${Button} why=${why} onClick=${() => setGrowing(d)}>Grow<//>`}
          <${Button} why=${why} onClick=${() => setRemoving(d)}>Remove<//></td></tr>`)}</tbody></table>`}
    ${growing && html`<${FormDialog} title=${`Grow ${describe(growing.attributes)}`} specs=${GROW} initial=${{}} submitLabel="Grow"
      onClose=${() => setGrowing(null)} submit=${async ({ gib }) => {
        await client.call("vm.device.resize", [growing.id, { size: Math.ceil((gib || 0) * 2 ** 30 / 512) * 512 }]);
        toast("Disk grown", "ok");
      }} />`}
    ${editing && html`<${DeviceDialog} vm=${vm} device=${editing === "new" ? null : editing} onClose=${() => setEditing(null)} />`}
    ${removing && html`<${Dialog} title=${`Remove ${removing.attributes.dtype} device?`} onClose=${() => setRemoving(null)}>
      <p>${describe(removing.attributes)}</p>
      <div class="actions"><button type="button" class="btn" onClick=${() => setRemoving(null)}>Cancel</button>
        ${removing.attributes.dtype === "DISK" && html`<button type="button" class="btn danger" onClick=${() => remove(removing, true)}>Remove and delete the volume</button>`}
        <button type="button" class="btn primary" onClick=${() => remove(removing, false)}>Remove</button></div>
    <//>`}
  </section>`;
}
