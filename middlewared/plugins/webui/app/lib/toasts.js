// Short notices at the corner of the screen (announced to screen readers), dismissed after a while.
import { store } from "./store.js";

export const toasts = store([]);
let next = 1;

export function toast(text, kind = "info", ms = 6000) {
  const id = next++;
  toasts.set((list) => [...list.slice(-4), { id, text, kind }]);
  setTimeout(() => dismiss(id), ms);
}

export function dismiss(id) {
  toasts.set((list) => list.filter((t) => t.id !== id));
}
