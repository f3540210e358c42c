// Pick an image file under the storage roots (browsing directories), or upload one there first.
import { html, useState, useEffect } from "../lib/html.js";
import { client, can } from "../lib/session.js";
import { upload } from "../lib/upload.js";
import { Button } from "../lib/widgets.js";
import { bytes } from "../lib/format.js";

const MEDIA = /\.(iso|img|raw|qcow2)$/i;

export function MediaPicker({ value, onPick, error, label = "Installation media (ISO)", pattern = MEDIA, field = "iso" }) {
  const [roots, setRoots] = useState([]);
  const [dir, setDir] = useState(null);
  const [entries, setEntries] = useState([]);
  const [failure, setFailure] = useState(null);
  const [sending, setSending] = useState(null); // {name, fraction, abort}
  const [version, setVersion] = useState(0);

  useEffect(() => {
    client.call("filesystem.roots").then((r) => { setRoots(r); setDir(value ? value.replace(/\/[^/]*$/, "") : r[0]); })
      .catch((e) => setFailure(e.message));
  }, []);
  useEffect(() => {
    if (!dir) return;
    client.call("filesystem.listdir", [dir, [], { order_by: ["name"] }])
      .then((list) => { setEntries(list); setFailure(null); })
      .catch((e) => setFailure(e.message));
  }, [dir, version]);

  const start = async (file) => {
    const target = `${dir}/${file.name}`;
    setSending({ name: file.name, fraction: 0, abort: null });
    try {
      const task = await upload(file, target, (fraction) => setSending((s) => s && { ...s, fraction }));
      setSending((s) => s && { ...s, abort: task.abort });
      await task.done;
      setVersion((v) => v + 1);
      onPick(target);
    } catch (e) {
      setFailure(e.message);
    } finally {
      setSending(null);
    }
  };
  const atRoot = roots.includes(dir);
  const dirs = entries.filter((e) => e.type === "DIRECTORY");
  const files = entries.filter((e) => e.type === "FILE" && pattern.test(e.name));
  return html`<fieldset class="media" data-field=${field}>
    <legend>${label}</legend>
    <p class="muted small">Folder: <code>${dir || "…"}</code>${value && html` · chosen: <code>${value}</code>`}</p>
    <div class="picker" role="group" aria-label="Files">
      ${!atRoot && dir && html`<button type="button" class="btn ghost" onClick=${() => setDir(dir.replace(/\/[^/]*$/, ""))}>↑ Up</button>`}
      ${dirs.map((e) => html`<button type="button" key=${e.path} class="btn ghost" onClick=${() => setDir(e.path)}>▸ ${e.name}/</button>`)}
      ${files.map((e) => html`<button type="button" key=${e.path} class="btn ghost" aria-pressed=${value === e.path}
          onClick=${() => onPick(value === e.path ? "" : e.path)}>${e.name} <span class="muted small">${bytes(e.size)}</span></button>`)}
      ${!dirs.length && !files.length && html`<p class="muted small">No image files here.</p>`}
    </div>
    ${sending ? html`<div class="progress"><progress max="1" value=${sending.fraction ?? undefined} aria-label=${`Uploading ${sending.name}`}></progress>
        <span class="small">${sending.name}: ${Math.round((sending.fraction || 0) * 100)}%</span>
        <${Button} why=${sending.abort ? null : "Starting"} onClick=${() => sending.abort()}>Abort upload<//></div>`
      : html`<div class="upload"><label for="iso-upload">Upload an image to this folder</label>
        <input id="iso-upload" type="file" accept=".iso,.img,.raw,.qcow2" disabled=${!can("VM_DEVICE_WRITE") && !can("FILESYSTEM_DATA_WRITE")}
          onChange=${(e) => e.target.files[0] && start(e.target.files[0])} /></div>`}
    ${(error || failure) && html`<div class="error" role="alert">${error || failure}</div>`}
  </fieldset>`;
}
