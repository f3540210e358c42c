// The log tab (the serial console log, the QEMU log download) and the console tab (the serial console in
// xterm.js, loaded only here; the SPICE web console opened in its own tab).
import { html, useState, useEffect, useRef } from "../lib/html.js";
import { client, can } from "../lib/session.js";
import { toast } from "../lib/toasts.js";
import { Button } from "../lib/widgets.js";

export function LogTab({ vm }) {
  const [text, setText] = useState(null);
  const [version, setVersion] = useState(0);
  useEffect(() => {
    client.call("vm.console_log", [vm.id, { tail: 500 }]).then(setText).catch((e) => setText(`(${e.message})`));
  }, [vm.id, version]);
  const download = async () => {
    try {
      const [, url] = await client.call("core.download", ["vm.log_file_download", [vm.id], `${vm.name}-qemu.log`, false]);
      const a = document.createElement("a");
      a.href = url;
      a.download = `${vm.name}-qemu.log`;
      a.click();
    } catch (e) {
      toast(`Download failed: ${e.message}`, "error");
    }
  };
  // Escape sequences of firmware and terminals are noise in a plain text view.
  const clean = (text || "").replace(/\x1b\[[0-9;?=]*[A-Za-z]/g, "").replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "");
  return html`<section aria-label="Log">
    <div class="toolbar"><h2>Serial console log</h2><span class="muted small">(last 500 lines, every boot)</span>
      <span class="spacer"></span><${Button} onClick=${() => setVersion(version + 1)}>Refresh<//>
      <${Button} onClick=${download}>Download QEMU log<//></div>
    <pre class="log" tabindex="0" aria-label="Serial console log">${text == null ? "Loading…" : clean || "(empty)"}</pre>
  </section>`;
}

function Serial({ vm, readOnly }) {
  const box = useRef(null);
  const [status, setStatus] = useState("connecting");
  useEffect(() => {
    let ws = null;
    let term = null;
    let closed = false;
    (async () => {
      const base = document.querySelector('link[rel="stylesheet"]').href.replace(/app\.css$/, "");
      if (!document.querySelector("link[data-xterm]")) {
        const link = Object.assign(document.createElement("link"), { rel: "stylesheet", href: `${base}vendor/xterm.css` });
        link.dataset.xterm = "1";
        document.head.append(link);
      }
      const { Terminal } = await import("../vendor/xterm.js");
      if (closed) return;
      term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 5000 });
      term.open(box.current);
      const uri = await client.call("vm.get_console_web_uri", [vm.id, location.host,
        { protocol: location.protocol === "https:" ? "HTTPS" : "HTTP", read_only: readOnly }]);
      if (closed) return;
      ws = new WebSocket(uri);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => { setStatus("connected"); term.focus(); };
      ws.onmessage = (e) => term.write(typeof e.data === "string" ? e.data : new Uint8Array(e.data));
      ws.onclose = () => setStatus("closed");
      const encoder = new TextEncoder();
      term.onData((data) => ws.readyState === 1 && ws.send(encoder.encode(data)));
    })().catch((e) => setStatus(`failed: ${e.message}`));
    return () => { closed = true; if (ws) ws.close(); if (term) term.dispose(); };
  }, [vm.id, readOnly]);
  return html`<div><p class="muted small" role="status">Serial console: ${status}${readOnly ? " (watching only)" : ""}</p>
    <div class="term" ref=${box} data-testid="serial"></div></div>`;
}

export function ConsoleTab({ vm }) {
  const [open, setOpen] = useState(false);
  const displays = (vm.devices || []).filter((d) => d.attributes.dtype === "DISPLAY");
  const running = vm.status?.state === "RUNNING";
  const openDisplay = async () => {
    try {
      const { uri, error } = await client.call("vm.get_display_web_uri", [vm.id, location.host,
        { protocol: location.protocol === "https:" ? "HTTPS" : "HTTP" }]);
      if (uri) window.open(uri, "_blank", "noopener"); else toast(error || "No web display", "error");
    } catch (e) {
      toast(`Console: ${e.message}`, "error");
    }
  };
  const consoleWhy = can("VM_CONSOLE", vm.id) ? null : "Needs the VM_CONSOLE role on this VM";
  return html`<section aria-label="Console">
    <div class="toolbar">
      <${Button} why=${!displays.length ? "The VM has no DISPLAY device (add one under Hardware)" : !running ? "The VM is not running" : null}
        onClick=${openDisplay}>Open graphical console (SPICE)<//>
      <${Button} why=${consoleWhy} onClick=${() => setOpen(!open)}>${open ? "Close serial console" : "Open serial console"}<//>
    </div>
    ${open && html`<${Serial} vm=${vm} readOnly=${!can("VM_WRITE", vm.id)} />`}
  </section>`;
}
