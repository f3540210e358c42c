// Log in with a username and password, or with an API key.
import { html, useState } from "../lib/html.js";
import { login, session } from "../lib/session.js";
import { useStore } from "../lib/store.js";
import { Fields } from "../lib/widgets.js";

const PASSWORD = [
  { name: "username", label: "Username", required: true, autocomplete: "username" },
  { name: "password", label: "Password", type: "password", required: true, autocomplete: "current-password" },
];
const KEY = [
  { name: "apiKey", label: "API key", type: "password", required: true, autocomplete: "off",
    help: "The key as it was shown when created: <id>-<secret>." },
  { name: "username", label: "Username (optional)", autocomplete: "username" },
];

export function Login() {
  const [mode, setMode] = useState("password");
  const [data, setData] = useState({});
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const { notice } = useStore(session);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setError(await login(mode === "key" ? { apiKey: data.apiKey, username: data.username }
        : { username: data.username, password: data.password }));
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main id="main" class="login">
    <form class="card" onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title">Log in</h1>
      ${notice && html`<p class="notice" role="status">${notice}</p>`}
      <div class="tabs" role="group" aria-label="Log in with">
        <button type="button" class="btn" aria-pressed=${mode === "password"} onClick=${() => setMode("password")}>Password</button>
        <button type="button" class="btn" aria-pressed=${mode === "key"} onClick=${() => setMode("key")}>API key</button>
      </div>
      <${Fields} key=${mode} specs=${mode === "key" ? KEY : PASSWORD} data=${data} setData=${setData} />
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" class="btn primary" disabled=${busy}>Log in</button>
    </form>
  </main>`;
}
