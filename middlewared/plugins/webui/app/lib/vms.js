// The VM collection: one vm.query, then its collection_update events merged by id (no polling). After a
// reconnection the whole list is read again, so nothing missed while disconnected stays stale.
import { client, onLogin, refreshMe, can } from "./session.js";
import { store } from "./store.js";

export const vms = store(new Map());
export const groups = store(new Map()); // vm id -> VM group name (for those who may read VM groups)

async function load() {
  const list = await client.call("vm.query");
  vms.set(new Map(list.map((vm) => [vm.id, vm])));
}

export async function loadGroups() {
  if (!can("ACCOUNT_READ")) return;
  const list = await client.call("vm_group.query");
  const map = new Map();
  for (const g of list) for (const id of g.vms) map.set(id, g.name);
  groups.set(map);
}

onLogin(() => {
  vms.set(new Map());
  loadGroups().catch(() => {});
  return client.subscribe("vm.query", (ev) => {
    vms.set((old) => {
      const map = new Map(old);
      if (ev.msg === "removed") map.delete(ev.id);
      else map.set(ev.id, { ...(map.get(ev.id) || {}), ...(ev.fields || {}), id: ev.id });
      return map;
    });
    // A VM added to a group one holds a grant on is covered from now on.
    if (ev.msg === "added") refreshMe().catch(() => {});
  }, () => load().catch((e) => console.warn(e)));
});
