// Paths under /ui/ as the page's routes, with history navigation.
import { store } from "./store.js";
import { html } from "./html.js";

const BASE = "/ui/";
const parse = () => location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length).split("/").filter(Boolean) : [];
export const route = store(parse());
addEventListener("popstate", () => route.set(parse()));

export function navigate(path) {
  history.pushState(null, "", BASE + path);
  route.set(parse());
  window.scrollTo(0, 0);
}

export function Link({ to, children, ...rest }) {
  const click = (e) => {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(to);
  };
  return html`<a href=${BASE + to} onClick=${click} ...${rest}>${children}</a>`;
}
