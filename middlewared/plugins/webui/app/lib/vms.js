// The VM collection: one vm.query, then its collection_update events merged by id (no polling). After a
// reconnection the whole list is read again, so nothing missed while disconnected stays stale.
import { client, onLogin, refreshMe, can } from "./session.js";
import { store } from "./store.js";

export const vms = store(new Map());
export const groups = store(new Map()); // vm id -> VM group name (for those who may read VM groups)

// Whether the list has been read since the last login or reconnection: "loading", "ready", or an error the page
// shows while the read is tried again (1 s, doubling up to 30 s).
export const vmsLoad = store({ state: "loading", error: null, retryIn: 0 });

let generation = 0;

function merge(map, ev) {
  if (ev.msg === "removed") map.delete(ev.id);
  else map.set(ev.id, { ...(map.get(ev.id) || {}), ...(ev.fields || {}), id: ev.id });
}

// Events that arrive while vm.query is under way are kept and applied on top of its answer, which may have been
// computed before them.
let pending = null;

async function load(gen, delay = 1000) {
  pending = [];
  vmsLoad.set((old) => (old.state === "ready" ? old : { ...old, state: "loading" }));
  try {
    const list = await client.call("vm.query");
    if (gen !== generation) return;
    const map = new Map(list.map((vm) => [vm.id, vm]));
    for (const ev of pending) merge(map, ev);
    pending = null;
    vms.set(map);
    vmsLoad.set({ state: "ready", error: null, retryIn: 0 });
  } catch (e) {
    if (gen !== generation) return;
    pending = null;
    vmsLoad.set({ state: "error", error: e.message || String(e), retryIn: delay / 1000 });
    setTimeout(() => gen === generation && load(gen, Math.min(delay * 2, 30000)), delay);
  }
}

export async function loadGroups() {
  if (!can("ACCOUNT_READ")) return;
  const list = await client.call("vm_group.query");
  const map = new Map();
  for (const g of list) for (const id of g.vms) map.set(id, g.name);
  groups.set(map);
}

onLogin(() => {
  const gen = ++generation;
  vms.set(new Map());
  vmsLoad.set({ state: "loading", error: null, retryIn: 0 });
  loadGroups().catch(() => {});
  return client.subscribe("vm.query", (ev) => {
    if (pending) pending.push(ev);
    vms.set((old) => {
      const map = new Map(old);
      merge(map, ev);
      return map;
    });
    // A VM added to a group one holds a grant on is covered from now on.
    if (ev.msg === "added") refreshMe().catch(() => {});
  }, () => load(gen));
});
