// Numbers and times for people.
export function mib(n) {
  if (n == null) return "—";
  return n >= 1024 ? `${+(n / 1024).toFixed(n % 1024 ? 1 : 0)} GiB` : `${n} MiB`;
}

export function bytes(n) {
  if (n == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${+n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function when(date) {
  if (!date) return "";
  const ms = typeof date === "object" ? date.$date : date;
  return new Date(ms).toLocaleString();
}

export function topology(vm) {
  const total = vm.vcpus * vm.cores * vm.threads;
  return vm.cores === 1 && vm.threads === 1 ? `${total}` : `${total} (${vm.vcpus}×${vm.cores}×${vm.threads})`;
}

// A duration in seconds as Proxmox shows uptimes: "3 d 04:05:06", "04:05:06".
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const days = Math.floor(s / 86400);
  const clock = [Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60, s % 60].map((n) => String(n).padStart(2, "0")).join(":");
  return days ? `${days} d ${clock}` : clock;
}

// The same, coarse, for a table cell that is redrawn once a minute: "3 d 4 h", "4 h 5 min", "< 1 min".
export function roughDuration(seconds) {
  const minutes = Math.floor(Math.max(0, seconds) / 60);
  const [d, h, m] = [Math.floor(minutes / 1440), Math.floor(minutes / 60) % 24, minutes % 60];
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  return m ? `${m} min` : "< 1 min";
}
