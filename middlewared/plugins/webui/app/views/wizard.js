// The create-VM wizard: steps with host limits shown, a summary, one vm.create call (devices included) and
// the server's validation errors placed next to their fields, the wizard going back to the first bad step.
import { html, useState, useEffect } from "../lib/html.js";
import { client, can } from "../lib/session.js";
import { track, waitJob } from "../lib/jobs.js";
import { navigate } from "../lib/router.js";
import { vms } from "../lib/vms.js";
import { toast } from "../lib/toasts.js";
import { Fields, Field, fieldErrors, Button } from "../lib/widgets.js";
import { MediaPicker } from "./media.js";
import { mib, bytes } from "../lib/format.js";

const IMPORTABLE = /\.(qcow2|vmdk|vhdx|vdi|img|raw)$/i;
const volumeOf = (d) => `${d.pool}/${d.disk_name || `${d.name}-disk0`}`;

const INITIAL = {
  name: "", description: "", autostart: false, vcpus: 1, cores: 1, threads: 1, memory: 1024,
  bootloader: "UEFI", enable_secure_boot: false, trusted_platform_module: false, iso: "",
  disk: "new", disk_name: "", disk_gib: 10, disk_path: "", disk_source: "", disk_type: "VIRTIO", pool: "",
  nic: true, nic_attach: "", nic_type: "VIRTIO", display: true, start: false,
};

function steps(host, data) {
  const choices = (map) => Object.entries(map || {}).map(([k, v]) => [k, v]);
  return [
    { title: "Name", fields: [
      { name: "name", label: "Name", required: true, help: "Letters, digits, '_', '.' and '-'." },
      { name: "description", label: "Description", type: "textarea" },
      { name: "autostart", label: "Start when the host starts", type: "checkbox" }] },
    { title: "CPU and memory", fields: [
      { name: "vcpus", label: "Virtual CPU sockets", type: "number", min: 1, max: 16 },
      { name: "cores", label: "Cores per socket", type: "number", min: 1 },
      { name: "threads", label: "Threads per core", type: "number", min: 1,
        help: `${data.vcpus * data.cores * data.threads} vCPUs in total; this host supports up to ${host.maxVcpus ?? "…"}.` },
      { name: "memory", label: "Memory (MiB)", type: "number", min: 20,
        help: `Available on the host now: ${host.available == null ? "…" : bytes(host.available)}.${
          host.available != null && data.memory * 2 ** 20 > host.available ? " More than that: starting it will need overcommit." : ""}` }] },
    { title: "Boot", fields: [
      { name: "bootloader", label: "Firmware", type: "select", options: choices(host.bootloaders) },
      { name: "enable_secure_boot", label: "UEFI secure boot", type: "checkbox", hidden: (d) => d.bootloader !== "UEFI" },
      { name: "trusted_platform_module", label: "Emulated TPM 2.0", type: "checkbox" }] },
    { title: "Install media", media: true, fields: [{ name: "iso" }] },
    { title: "Disk", disk: true, fields: [{ name: "disk_source", hidden: () => true },
      { name: "disk", label: "Disk", type: "select", options: [["new", "Create a new volume"], ["existing", "Use an existing volume"],
        ["import", "Import a disk image (qcow2, VMDK, VHDX, VDI, raw)"], ["none", "No disk"]] },
      { name: "pool", label: "Storage pool", type: "select", options: choices(host.pools), hidden: (d) => !["new", "import"].includes(d.disk) },
      { name: "disk_name", label: "Volume name", hidden: (d) => !["new", "import"].includes(d.disk), help: "Empty: <VM name>-disk0." },
      { name: "disk_gib", label: "Size (GiB)", type: "number", min: 1, hidden: (d) => d.disk !== "new" },
      { name: "disk_path", label: "Volume", type: "select", options: [["", "Choose…"], ...choices(host.disks)], hidden: (d) => d.disk !== "existing" },
      { name: "disk_type", label: "Disk bus", type: "select", options: [["VIRTIO", "VirtIO"], ["AHCI", "AHCI (SATA)"]], hidden: (d) => d.disk === "none" }] },
    { title: "Network", fields: [
      { name: "nic", label: "Network interface", type: "checkbox" },
      { name: "nic_attach", label: "Attach to", type: "select", options: choices(host.nics), hidden: (d) => !d.nic },
      { name: "nic_type", label: "Adapter", type: "select", options: [["VIRTIO", "VirtIO"], ["E1000", "Intel E1000"]], hidden: (d) => !d.nic }] },
    { title: "Display", fields: [
      { name: "display", label: "SPICE display with a web console", type: "checkbox",
        help: "Listens on 127.0.0.1; open it from the VM's console tab." }] },
    { title: "Summary", summary: true, fields: [] },
  ];
}

// vm.create's payload, and which wizard field each device's attributes belong to (for error placement).
function payload(d) {
  const devices = [];
  const owners = [];
  if (d.iso) { devices.push({ attributes: { dtype: "CDROM", path: d.iso }, order: 1000 }); owners.push({ path: "iso" }); }
  if (d.disk === "new") {
    devices.push({ attributes: { dtype: "DISK", create_zvol: true, type: d.disk_type,
      zvol_name: volumeOf(d), zvol_volsize: Math.round((d.disk_gib || 0) * 2 ** 30) }, order: 1001 });
    owners.push({ zvol_name: "disk_name", zvol_volsize: "disk_gib", type: "disk_type", "": "disk" });
  } else if (d.disk === "existing") {
    devices.push({ attributes: { dtype: "DISK", path: d.disk_path || null, type: d.disk_type }, order: 1001 });
    owners.push({ path: "disk_path", type: "disk_type", "": "disk" });
  }
  if (d.nic) {
    devices.push({ attributes: { dtype: "NIC", type: d.nic_type, nic_attach: d.nic_attach || null } });
    owners.push({ nic_attach: "nic_attach", type: "nic_type", "": "nic" });
  }
  if (d.display) { devices.push({ attributes: { dtype: "DISPLAY", type: "SPICE", web: true } }); owners.push({ "": "display" }); }
  const vm = { name: d.name, description: d.description, autostart: d.autostart, vcpus: d.vcpus, cores: d.cores,
    threads: d.threads, memory: d.memory, bootloader: d.bootloader, trusted_platform_module: d.trusted_platform_module,
    enable_secure_boot: d.bootloader === "UEFI" && d.enable_secure_boot, devices };
  return { vm, owners };
}

// The server's errors by wizard field: devices.N.attributes.X goes to the field that device's X came from.
function place(err, owners) {
  const out = {};
  const add = (k, m) => { out[k] = out[k] ? `${out[k]}; ${m}` : m; };
  for (const [attribute, message] of err.validation && err.extra ? err.extra : []) {
    const m = /devices\.(\d+)\.(?:attributes\.)?(\w+)?/.exec(attribute || "");
    if (m) {
      const owner = owners[Number(m[1])] || {};
      add(owner[m[2]] || owner[""] || "", message);
    } else {
      const rest = fieldErrors({ validation: true, extra: [[attribute, message]] });
      for (const [k, v] of Object.entries(rest)) add(k, v);
    }
  }
  if (!Object.keys(out).length) out[""] = err.message;
  return out;
}

// An imported disk: the image becomes a pool volume (a job with progress), then the VM's DISK.
async function importDisk(d, vm) {
  try {
    const jobId = await client.call("vm.device.import_disk", [{ source: d.disk_source, zvol_name: volumeOf(d) }]);
    track(jobId, `Import ${d.disk_source.split("/").pop()}`);
    await waitJob(jobId);
    await client.call("vm.device.create", [{ vm: vm.id, attributes: { dtype: "DISK", zvol_name: volumeOf(d), type: d.disk_type }, order: 1001 }]);
  } catch (e) {
    toast(`Disk of ${vm.name}: ${e.message}`, "error", 10000);
    throw e;
  }
}

function Summary({ d }) {
  const rows = [["Name", d.name], ["Description", d.description || "—"], ["Start with the host", d.autostart ? "Yes" : "No"],
    ["vCPUs", `${d.vcpus * d.cores * d.threads} (${d.vcpus} sockets × ${d.cores} cores × ${d.threads} threads)`],
    ["Memory", mib(d.memory)], ["Firmware", `${d.bootloader}${d.enable_secure_boot ? ", secure boot" : ""}${d.trusted_platform_module ? ", TPM" : ""}`],
    ["Install media", d.iso || "None"],
    ["Disk", d.disk === "new" ? `New ${d.disk_gib} GiB volume ${volumeOf(d)} (${d.disk_type})`
      : d.disk === "import" ? `${d.disk_source} imported as ${volumeOf(d)} (${d.disk_type})`
      : d.disk === "existing" ? `${d.disk_path} (${d.disk_type})` : "None"],
    ["Network", d.nic ? `${d.nic_type} on ${d.nic_attach || "—"}` : "None"], ["Display", d.display ? "SPICE with web console" : "None"]];
  return html`<dl class="facts">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>`;
}

export function Wizard() {
  const [d, setD] = useState(INITIAL);
  const [host, setHost] = useState({});
  const [step, setStep] = useState(0);
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    const get = (key, method, params = []) => client.call(method, params).then((v) => setHost((h) => ({ ...h, [key]: v }))).catch(() => {});
    get("maxVcpus", "vm.maximum_supported_vcpus");
    get("available", "vm.get_available_memory");
    get("bootloaders", "vm.bootloader_options");
    get("disks", "vm.device.disk_choices");
    client.call("vm.device.pool_choices").then((p) => { setHost((h) => ({ ...h, pools: p })); setD((x) => ({ ...x, pool: x.pool || Object.keys(p)[0] || "" })); }).catch(() => {});
    client.call("vm.device.nic_attach_choices").then((n) => { setHost((h) => ({ ...h, nics: n })); setD((x) => ({ ...x, nic_attach: x.nic_attach || Object.keys(n)[0] || "" })); }).catch(() => {});
  }, []);
  if (!can("VM_WRITE")) return html`<h1>Create VM</h1><p>Creating VMs needs the VM_WRITE role.</p>`;
  const all = steps(host, d);
  const current = all[step];
  const bad = (s) => s.fields.some((f) => errors[f.name]);
  const next = (e) => {
    e.preventDefault();
    if (step === 0 && !d.name.trim()) { setErrors({ name: "A name is required." }); return; }
    if (step === 0 && [...vms.get().values()].some((vm) => vm.name === d.name)) {
      setErrors({ name: "A VM with this name already exists." });
      return;
    }
    if (step === 0) setErrors(({ name, ...rest }) => rest);
    if (current.disk && d.disk === "import" && !d.disk_source) { setErrors({ disk_source: "Choose the image to import." }); return; }
    setStep(step + 1);
  };
  const create = async () => {
    setBusy(true);
    const { vm, owners } = payload(d);
    try {
      const created = await client.call("vm.create", [vm]);
      toast(`Created ${created.name}`, "ok");
      const start = () => client.call("vm.start", [created.id, {}]).catch((err) => toast(`Start ${created.name}: ${err.message}`, "error", 10000));
      if (d.disk === "import") importDisk(d, created).then(() => d.start && start()).catch(() => {});
      else if (d.start) start();
      navigate(`vms/${created.id}`);
    } catch (err) {
      const placed = place(err, owners);
      setErrors(placed);
      const first = all.findIndex((s) => s.fields.some((f) => placed[f.name]));
      if (first >= 0) setStep(first);
    } finally {
      setBusy(false);
    }
  };
  return html`<section aria-labelledby="wiz-title">
    <h1 id="wiz-title">Create VM</h1>
    <ol class="steps">${all.map((s, i) => html`<li key=${s.title} aria-current=${i === step ? "step" : undefined} class=${bad(s) ? "bad" : ""}>
      ${i + 1}. ${s.title}${bad(s) ? html`<span class="sr-only"> (has errors)</span>` : ""}</li>`)}</ol>
    <form class="card" onSubmit=${current.summary ? (e) => { e.preventDefault(); create(); } : next}>
      <h2>${current.title}</h2>
      ${errors[""] && html`<p class="error" role="alert">${errors[""]}</p>`}
      ${current.media ? html`<${MediaPicker} value=${d.iso} error=${errors.iso} onPick=${(iso) => setD({ ...d, iso })} />`
        : current.summary ? html`<${Summary} d=${d} /><${Field} spec=${{ name: "start", label: "Start the VM once it is created", type: "checkbox" }}
            value=${d.start} set=${(start) => setD({ ...d, start })} />`
        : html`<div class="grid"><${Fields} specs=${current.fields} data=${d} setData=${setD} errors=${errors} /></div>
          ${current.disk && d.disk === "import" && html`<${MediaPicker} label="Image to import" field="disk_source" pattern=${IMPORTABLE}
            value=${d.disk_source} error=${errors.disk_source} onPick=${(disk_source) => setD({ ...d, disk_source })} />`}`}
      <div class="actions">
        <button type="button" class="btn" onClick=${() => navigate("")}>Cancel</button>
        ${step > 0 && html`<button type="button" class="btn" onClick=${() => setStep(step - 1)}>Back</button>`}
        ${current.summary ? html`<${Button} kind="primary" type="submit" busy=${busy}>Create VM<//>`
          : html`<button type="submit" class="btn primary">Next</button>`}
      </div>
    </form>
  </section>`;
}
