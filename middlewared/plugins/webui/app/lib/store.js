// A value with subscribers; notifications are batched per animation frame, so a burst of events
// (20 VM changes a second, a thousand rows loaded) costs one render.
import { useEffect, useState } from "./html.js";

export function store(initial) {
  let value = initial;
  let scheduled = false;
  const subscribers = new Set();
  const notify = () => { scheduled = false; for (const fn of subscribers) fn(value); };
  return {
    get: () => value,
    set(next) {
      value = typeof next === "function" ? next(value) : next;
      if (!scheduled) {
        scheduled = true;
        // Hidden or occluded pages get no animation frames: a timer makes sure subscribers hear of it.
        const once = () => scheduled && notify();
        requestAnimationFrame(once);
        setTimeout(once, 100);
      }
    },
    subscribe(fn) { subscribers.add(fn); return () => subscribers.delete(fn); },
  };
}

// The store's value in a component, rendered again when it changes (a change between the render and the
// subscription included).
export function useStore(s) {
  const [, force] = useState(0);
  const rendered = s.get();
  useEffect(() => {
    const off = s.subscribe(() => force((n) => n + 1));
    if (s.get() !== rendered) force((n) => n + 1);
    return off;
  }, [s]);
  return rendered;
}
