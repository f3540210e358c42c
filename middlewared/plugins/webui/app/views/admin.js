import { html } from "../lib/html.js";
export const ADMIN_ROLES = ["ACCOUNT_READ", "API_KEY_READ", "AUDIT_READ"];
export function Admin() { return html`<h1>Administration</h1>`; }
