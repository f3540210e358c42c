// Live statistics from the vm.stats event (one message every few seconds for every running VM the session
// may read): the last minutes per VM for sparklines and graphs, no polling.
import { client, onLogin } from "./session.js";
import { store } from "./store.js";

const KEEP = 60;
export const stats = store(new Map()); // vm id -> [{time, cpu, mem, rss, diskR, diskW, netRx, netTx}]

export function point(entry) {
  const sum = (list, key) => (list || []).reduce((n, x) => n + (x[key] || 0), 0);
  return {
    time: entry.time, cpu: entry.cpu?.percent ?? null, rss: entry.memory?.rss ?? null,
    mem: entry.memory?.used ?? entry.memory?.rss ?? null, used: entry.memory?.used ?? null, max: entry.memory?.maximum ?? null,
    diskR: sum(entry.disks, "read_bytes_per_s"), diskW: sum(entry.disks, "write_bytes_per_s"),
    netRx: sum(entry.nics, "rx_bytes_per_s"), netTx: sum(entry.nics, "tx_bytes_per_s"),
  };
}

onLogin(() => {
  stats.set(new Map());
  return client.subscribe("vm.stats", (ev) => {
    const vms = ev.fields?.vms || [];
    stats.set((old) => {
      const map = new Map(old);
      for (const entry of vms) map.set(entry.id, [...(map.get(entry.id) || []), point(entry)].slice(-KEEP));
      return map;
    });
  });
});
