// The console tab: a VNC display drawn in the page by noVNC's RFB module (served by the daemon beside the
// display, behind its ticket), a SPICE display opened in its own tab (spice-html5), and the serial console in
// xterm.js. Each client's code is loaded only here.
import { html, useState, useEffect, useRef } from "../lib/html.js";
import { client, can } from "../lib/session.js";
import { toast } from "../lib/toasts.js";
import { Button } from "../lib/widgets.js";

const scheme = () => (location.protocol === "https:" ? "HTTPS" : "HTTP");

// The display's web page URI, with a fresh single-use ticket.
async function displayUri(vmId) {
  const { uri, error } = await client.call("vm.get_display_web_uri", [vmId, location.host, { protocol: scheme() }]);
  if (!uri) throw new Error(error || "No web display");
  return new URL(uri, location.href);
}

async function openWindow(vmId) {
  try {
    window.open(String(await displayUri(vmId)), "_blank", "noopener");
  } catch (e) {
    toast(`Console: ${e.message}`, "error");
  }
}

// noVNC's RFB client on the display's bridge. Loading the ticketed page once exchanges the ticket for the
// display's session cookie (scoped to its path), which noVNC's modules and its WebSocket then present.
async function connectVnc(vmId, target) {
  const url = await displayUri(vmId);
  const page = await fetch(url.pathname + url.search, { credentials: "same-origin", cache: "no-store" });
  if (!page.ok) throw new Error(`the console answered ${page.status}`);
  const base = url.pathname.replace(/[^/]*$/, "");
  const { default: RFB } = await import(`${base}core/rfb.js`);
  const password = url.searchParams.get("password");
  const ws = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${base}websockify`;
  return new RFB(target, ws, { credentials: password ? { password } : {}, wsProtocols: ["binary"] });
}

function Vnc({ vm }) {
  const box = useRef(null);
  const rfb = useRef(null);
  const [status, setStatus] = useState("connecting");
  const [attempt, setAttempt] = useState(0);
  const [asking, setAsking] = useState(false);
  const viewOnly = !can("VM_WRITE", vm.id);
  useEffect(() => {
    let closed = false;
    setStatus("connecting");
    connectVnc(vm.id, box.current).then((vnc) => {
      if (closed) { vnc.disconnect(); return; }
      rfb.current = vnc;
      vnc.scaleViewport = true;
      vnc.viewOnly = viewOnly;
      vnc.addEventListener("connect", () => { setStatus("connected"); setAsking(false); });
      vnc.addEventListener("disconnect", (e) => { rfb.current = null; setStatus(e.detail.clean ? "closed" : "connection lost"); });
      vnc.addEventListener("credentialsrequired", () => { setStatus("password needed"); setAsking(true); });
      vnc.addEventListener("securityfailure", (e) => setStatus(`refused: ${e.detail.reason || "wrong password"}`));
    }).catch((e) => setStatus(`failed: ${e.message}`));
    return () => { closed = true; if (rfb.current) rfb.current.disconnect(); rfb.current = null; };
  }, [vm.id, attempt, viewOnly]);
  const sendPassword = (e) => {
    e.preventDefault();
    rfb.current?.sendCredentials({ password: new FormData(e.target).get("password") });
  };
  const live = status === "connected";
  return html`<section class="vnc" aria-label="VNC console">
    <div class="toolbar">
      <span class="muted small" role="status">VNC console: ${status}${viewOnly ? " (watching only)" : ""}</span>
      <span class="spacer"></span>
      ${!viewOnly && html`<${Button} why=${live ? null : "Not connected"} onClick=${() => rfb.current?.sendCtrlAltDel()}>Send Ctrl+Alt+Del<//>`}
      <${Button} why=${live ? null : "Not connected"} onClick=${() => box.current?.requestFullscreen?.()}>Full screen<//>
      ${!live && !asking && status !== "connecting" && html`<${Button} onClick=${() => setAttempt(attempt + 1)}>Reconnect<//>`}
      <${Button} onClick=${() => openWindow(vm.id)}>Open in new window<//>
    </div>
    ${asking && html`<form class="toolbar" onSubmit=${sendPassword}>
      <label for="vnc-password">Display password</label>
      <input id="vnc-password" name="password" type="password" autocomplete="off" />
      <button type="submit" class="btn primary">Connect</button></form>`}
    <div class="screen" ref=${box} data-testid="vnc"></div>
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
        { protocol: scheme(), read_only: readOnly }]);
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
  // The display the web console shows: the first one offering it (as vm.get_display_web_uri picks).
  const web = displays.find((d) => d.attributes.web !== false);
  const kind = web?.attributes.type || "SPICE";
  const running = vm.status?.state === "RUNNING";
  const displayWhy = !displays.length ? "The VM has no DISPLAY device (add one under Hardware)"
    : !web ? "The VM's display does not offer the web console (its Web setting is off)" : !running ? "The VM is not running" : null;
  const consoleWhy = can("VM_CONSOLE", vm.id) ? null : "Needs the VM_CONSOLE role on this VM";
  return html`<section aria-label="Console">
    <div class="toolbar">
      ${kind !== "VNC" && html`<${Button} why=${displayWhy} onClick=${() => openWindow(vm.id)}>Open graphical console (SPICE)<//>`}
      ${kind === "VNC" && displayWhy && html`<${Button} why=${displayWhy}>VNC console<//>`}
      <${Button} why=${consoleWhy} onClick=${() => setOpen(!open)}>${open ? "Close serial console" : "Open serial console"}<//>
    </div>
    ${open && html`<${Serial} vm=${vm} readOnly=${!can("VM_WRITE", vm.id)} />`}
    ${kind === "VNC" && !displayWhy && html`<${Vnc} key=${vm.status?.pid} vm=${vm} />`}
  </section>`;
}
