import { html } from "../lib/html.js";
export function VmPage({ id }) { return html`<h1>VM ${id}</h1>`; }
