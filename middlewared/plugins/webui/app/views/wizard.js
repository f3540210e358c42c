import { html } from "../lib/html.js";
export function Wizard() { return html`<h1>Create VM</h1>`; }
