// The log tab: the serial console log and the QEMU log download.
import { html, useState, useEffect } from "../lib/html.js";
import { client } from "../lib/session.js";
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
