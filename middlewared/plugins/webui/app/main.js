// Entry point: connect, then render the shell.
import { html, render } from "./lib/html.js";
import { client } from "./lib/session.js";
import { App } from "./views/shell.js";

render(html`<${App} />`, document.getElementById("app"));
client.connect();
