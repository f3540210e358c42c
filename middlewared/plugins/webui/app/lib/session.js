// Who is logged in: login (password or API key, the same auth.login_ex mechanisms as any client), a token
// kept in localStorage and renewed every 4 minutes so a reload or a reconnection logs in again, logout,
// and what the session's roles allow (everywhere, or on the VMs of its scoped grants).
import { Client } from "./rpc.js";
import { store } from "./store.js";

const TOKEN_KEY = "middlewared.token";
const TOKEN_TTL = 600;
const RENEW_EVERY = 240000;

const scheme = location.protocol === "https:" ? "wss" : "ws";
export const client = new Client(`${scheme}://${location.host}/api/current`);
export const session = store({ state: "connecting", me: null });
const started = new Set(); // hooks run after each login: (me) => stop function
let stops = [];
let renewer = null;

export function onLogin(fn) { started.add(fn); }

async function tokenLogin() {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) return false;
  const answer = await client.callNow("auth.login_ex", [{ mechanism: "TOKEN_PLAIN", token }]);
  if (answer.response_type !== "SUCCESS") {
    console.warn("token login refused", answer.response_type);
    localStorage.removeItem(TOKEN_KEY);
    return false;
  }
  return true;
}

async function established(reconnected) {
  const me = await client.callNow("auth.me");
  await renewToken(true);
  clearInterval(renewer);
  renewer = setInterval(() => renewToken(false), RENEW_EVERY);
  const wasIn = session.get().state === "in";
  session.set({ state: "in", me });
  if (!(reconnected && wasIn)) {
    for (const stop of stops) stop();
    stops = [...started].map((fn) => fn(me)).filter(Boolean);
  }
}

async function renewToken(now) {
  const call = now ? client.callNow.bind(client) : client.call.bind(client);
  try {
    localStorage.setItem(TOKEN_KEY, await call("auth.generate_token", [TOKEN_TTL, {}, true, false]));
  } catch (e) {
    console.warn("token renewal failed", e);
  }
}

client.onOpen = async (reconnected) => {
  try {
    if (await tokenLogin()) {
      await established(reconnected);
      return;
    }
  } catch (e) {
    console.warn("logging in again failed", e);
  }
  leave(session.get().notice);
};

client.onEnded = (reason) => {
  localStorage.removeItem(TOKEN_KEY);
  leave(reason || "The server ended this session.");
};

function leave(notice = null) {
  clearInterval(renewer);
  for (const stop of stops) stop();
  stops = [];
  client.reset();
  session.set({ state: "out", me: null, notice });
}

// Log in; returns null on success or a message for the form.
export async function login({ username, password, apiKey }) {
  let ok;
  if (apiKey) {
    ok = username
      ? (await client.callNow("auth.login_ex", [{ mechanism: "API_KEY_PLAIN", username, api_key: apiKey }]))
        .response_type === "SUCCESS"
      : await client.callNow("auth.login_with_api_key", [apiKey]);
  } else {
    const answer = await client.callNow("auth.login_ex", [{ mechanism: "PASSWORD_PLAIN", username, password }]);
    ok = answer.response_type === "SUCCESS";
    if (answer.response_type === "EXPIRED") return "This account has expired.";
  }
  if (!ok) return apiKey ? "The API key was not accepted." : "Wrong username or password.";
  await established(false);
  return null;
}

export async function logout() {
  localStorage.removeItem(TOKEN_KEY);
  try { await client.call("auth.logout"); } catch (e) { /* the connection may be gone: nothing to end */ }
  leave();
}

// Whether the session holds role everywhere, or (with vmId) on that VM through a scoped grant.
export function can(role, vmId = null) {
  const me = session.get().me;
  if (!me) return false;
  const roles = me.privilege.roles;
  if (roles.includes("FULL_ADMIN") || roles.includes(role)) return true;
  if (vmId == null) return false;
  return me.privilege.scoped.some((g) => g.roles.includes(role) && g.vms.includes(vmId));
}

// A reason to show on a disabled control, or null when allowed.
export function denied(role, vmId = null) {
  if (can(role, vmId)) return null;
  return vmId == null ? `Needs the ${role} role` : `Needs the ${role} role on this VM`;
}

// Read the session again (grants may now cover new VMs).
export async function refreshMe() {
  const s = session.get();
  if (s.state !== "in") return;
  session.set({ ...s, me: await client.call("auth.me") });
}
