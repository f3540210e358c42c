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
