// Every vm.update field of a VM, saved as the fields that changed; server errors next to their fields.
import { html, useState, useEffect } from "../lib/html.js";
import { client, can } from "../lib/session.js";
import { toast } from "../lib/toasts.js";
import { Fields, fieldErrors, Button } from "../lib/widgets.js";

const NULLABLE = ["min_memory", "cpu_model", "cpuset", "nodeset", "arch_type", "machine_type"];

function specs(c) {
  const pairs = (m) => Object.entries(m || {});
  return [
    ["General", [
      { name: "name", label: "Name", required: true }, { name: "description", label: "Description", type: "textarea" },
      { name: "autostart", label: "Start when the host starts", type: "checkbox" },
      { name: "shutdown_timeout", label: "Shutdown timeout (seconds)", type: "number", min: 5, max: 300 },
      { name: "time", label: "Guest clock", type: "select", options: [["LOCAL", "Local time"], ["UTC", "UTC"]] }]],
    ["CPU", [
      { name: "vcpus", label: "Sockets", type: "number", min: 1, max: 16 }, { name: "cores", label: "Cores per socket", type: "number", min: 1 },
      { name: "threads", label: "Threads per core", type: "number", min: 1 },
      { name: "cpu_mode", label: "CPU mode", type: "select", options: ["CUSTOM", "HOST-MODEL", "HOST-PASSTHROUGH"] },
      { name: "cpu_model", label: "CPU model", type: "select", options: [["", "Default"], ...pairs(c.models)], hidden: (d) => d.cpu_mode !== "CUSTOM" },
      { name: "cpuset", label: "Host CPUs (cpuset)", placeholder: "e.g. 0-3,8" }, { name: "pin_vcpus", label: "Pin vCPUs to the cpuset", type: "checkbox" },
      { name: "nodeset", label: "NUMA nodes (nodeset)", placeholder: "e.g. 0" },
      { name: "enable_cpu_topology_extension", label: "Topology extension (topoext)", type: "checkbox" },
      { name: "hyperv_enlightenments", label: "Hyper-V enlightenments", type: "checkbox" },
      { name: "hide_from_msr", label: "Hide the hypervisor from the guest", type: "checkbox" }]],
    ["Memory", [
      { name: "memory", label: "Memory (MiB)", type: "number", min: 20 },
      { name: "min_memory", label: "Minimum memory (MiB, ballooning)", type: "number", min: 20, help: "Empty: no ballooning." }]],
    ["Boot and platform", [
      { name: "bootloader", label: "Firmware", type: "select", options: pairs(c.bootloaders) },
      { name: "bootloader_ovmf", label: "OVMF code file", type: "select", options: pairs(c.ovmf) },
      { name: "enable_secure_boot", label: "UEFI secure boot", type: "checkbox" },
      { name: "trusted_platform_module", label: "Emulated TPM 2.0", type: "checkbox" },
      { name: "ensure_display_device", label: "Always give the guest a video device", type: "checkbox" },
      { name: "suspend_on_snapshot", label: "Suspend while disks are snapshotted", type: "checkbox" },
      { name: "arch_type", label: "Architecture", placeholder: "the host's" }, { name: "machine_type", label: "Machine type", placeholder: "q35" },
      { name: "uuid", label: "UUID" },
      { name: "command_line_args", label: "Extra QEMU arguments", help: "Shell-quoted; for experts." }]],
  ];
}

// Convert to a template (Proxmox's qm template) and back: vm.update's template flag, with what it means.
function Template({ vm }) {
  const [busy, setBusy] = useState(false);
  const why = !can("VM_WRITE", vm.id) ? "Needs the VM_WRITE role on this VM"
    : vm.status?.state !== "STOPPED" ? "Stop the VM first" : null;
  const set = async (template) => {
    setBusy(true);
    try {
      await client.call("vm.update", [vm.id, { template }]);
      toast(template ? `${vm.name} is a template` : `${vm.name} is a regular VM again`, "ok");
    } catch (err) {
      toast(`${vm.name}: ${err.message}`, "error", 10000);
    } finally {
      setBusy(false);
    }
  };
  return html`<section class="card settings" aria-label="Template"><h2>Template</h2>
    <p class="muted">${vm.template ? "This VM is a template: it cannot be started, and its disks are the read-only bases of its linked clones. Clone it to use it."
      : "A template cannot be started: it is cloned, fully or as linked clones whose disks are overlays on its own (read-only from then on)."}</p>
    <div class="actions">${vm.template ? html`<${Button} why=${why} busy=${busy} onClick=${() => set(false)}>Make a regular VM again<//>`
      : html`<${Button} why=${why} busy=${busy} onClick=${() => set(true)}>Convert to template<//>`}</div></section>`;
}

export function Settings({ vm }) {
  const [data, setData] = useState(() => ({ ...vm }));
  const [errors, setErrors] = useState({});
  const [c, setC] = useState({});
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    const get = (k, m) => client.call(m).then((v) => setC((x) => ({ ...x, [k]: v }))).catch(() => {});
    get("models", "vm.cpu_model_choices"); get("bootloaders", "vm.bootloader_options"); get("ovmf", "vm.bootloader_ovmf_choices");
  }, []);
  const groups = specs(c);
  const names = groups.flatMap(([, f]) => f.map((s) => s.name));
  const changed = names.filter((n) => JSON.stringify(data[n] ?? null) !== JSON.stringify(vm[n] ?? null));
  const why = can("VM_WRITE", vm.id) ? null : "Needs the VM_WRITE role on this VM";
  const save = async (e) => {
    e.preventDefault();
    const update = {};
    for (const n of changed) update[n] = NULLABLE.includes(n) && (data[n] === "" || data[n] == null) ? null : data[n];
    setBusy(true);
    try {
      await client.call("vm.update", [vm.id, update]);
      setErrors({});
      toast(`Saved ${data.name}`, "ok");
    } catch (err) {
      setErrors(fieldErrors(err, names));
    } finally {
      setBusy(false);
    }
  };
  return html`<form onSubmit=${save} aria-label="Settings">
    ${errors[""] && html`<p class="error" role="alert">${errors[""]}</p>`}
    ${vm.status?.state !== "STOPPED" && html`<p class="notice">The VM is ${String(vm.status?.state).toLowerCase()}: most changes take effect at its next start.</p>`}
    <fieldset disabled=${!!why} class="plain">
    ${groups.map(([title, fields]) => html`<section class="card settings"><h2>${title}</h2>
      <div class="grid"><${Fields} specs=${fields} data=${data} setData=${setData} errors=${errors} /></div></section>`)}
    </fieldset>
    <div class="actions sticky">
      <span class="muted small">${changed.length ? `${changed.length} changed: ${changed.join(", ")}` : "No changes"}</span>
      <button type="button" class="btn" disabled=${!changed.length} onClick=${() => { setData({ ...vm }); setErrors({}); }}>Revert</button>
      <${Button} kind="primary" type="submit" why=${why || (changed.length ? null : "Nothing changed")} busy=${busy}>Save<//>
    </div>
  </form>
  <${Template} vm=${vm} />`;
}
