// The one WebSocket to /api/current: JSON-RPC calls (at most 20 in flight, the rest queued), shared
// collection subscriptions, keep-alive, and reconnection with backoff. After a reconnection the owner's
// onOpen hook logs in again (with a token) before queued calls go out, and every subscription is renewed
// and its resync hook run, so views reload what they may have missed while disconnected.
import { store } from "./store.js";

const MAX_IN_FLIGHT = 20;
const PING_EVERY = 20000;

export class RpcError extends Error {
  constructor(error) {
    const data = error.data || {};
    super(data.reason || error.message || "Call failed");
    this.code = error.code;
    this.errno = data.error;
    this.errname = data.errname;
    this.extra = data.extra || null;
    this.validation = error.code === -32602;
  }
}

export class Client {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.queue = [];
    this.inFlight = 0;
    this.subscriptions = new Map(); // collection -> {handlers: Set, resync: Set, ident}
    this.status = store("connecting"); // connecting | open | closed
    this.onOpen = async () => {};
    this.onEnded = () => {}; // the server ended the session on purpose (close code 1008)
    this.backoff = 1000;
    this.ready = false;
    this.everOpened = false;
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => this.opened(ws);
    ws.onmessage = (e) => this.message(JSON.parse(e.data));
    ws.onclose = (e) => this.closed(ws, e.code, e.reason);
  }

  async opened(ws) {
    this.backoff = 1000;
    this.send({ jsonrpc: "2.0", id: this.nextId++, method: "core.ping", params: [] });
    try {
      await this.onOpen(this.everOpened);
    } catch (e) {
      console.warn("login after connecting failed", e);
    }
    if (ws !== this.ws) return;
    this.everOpened = true;
    this.ready = true;
    this.status.set("open");
    this.pump();
    for (const [name, sub] of this.subscriptions) this.resubscribe(name, sub);
    clearInterval(this.pinger);
    this.pinger = setInterval(() => this.call("core.ping").catch(() => {}), PING_EVERY);
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ready = false;
    // 1008: the session was terminated, its key revoked or its user disabled; the page must not log
    // back in with its token, but it reconnects (anonymous) so that one may log in again.
    if (code === 1008) this.onEnded(reason);
    clearInterval(this.pinger);
    this.status.set(this.everOpened ? "closed" : "connecting");
    for (const [, p] of this.pending) p.reject(new RpcError({ message: "Connection lost" }));
    this.pending.clear();
    this.inFlight = 0;
    for (const sub of this.subscriptions.values()) sub.ident = null;
    setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, 10000);
  }

  send(message) {
    this.ws.send(JSON.stringify(message));
  }

  // A call sent at once, before the session is ready (logins and the like).
  callNow(method, params = []) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.send({ jsonrpc: "2.0", id, method, params });
    });
  }

  // A call, queued while disconnected or while 20 others are in flight.
  call(method, params = []) {
    return new Promise((resolve, reject) => {
      this.queue.push({ method, params, resolve, reject });
      this.pump();
    });
  }

  pump() {
    while (this.ready && this.inFlight < MAX_IN_FLIGHT && this.queue.length) {
      const { method, params, resolve, reject } = this.queue.shift();
      const id = this.nextId++;
      this.inFlight++;
      const done = (fn) => (v) => { this.inFlight--; fn(v); this.pump(); };
      this.pending.set(id, { resolve: done(resolve), reject: done(reject) });
      this.send({ jsonrpc: "2.0", id, method, params });
    }
  }

  message(msg) {
    if (msg.id != null && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new RpcError(msg.error)); else p.resolve(msg.result);
      return;
    }
    if (msg.method === "collection_update") {
      const sub = this.subscriptions.get(msg.params.collection);
      if (sub) for (const fn of sub.handlers) fn(msg.params);
    }
  }

  // Follow a collection: handler gets each collection_update; resync runs after every (re)subscription.
  subscribe(name, handler, resync) {
    let sub = this.subscriptions.get(name);
    if (!sub) {
      sub = { handlers: new Set(), resync: new Set(), ident: null };
      this.subscriptions.set(name, sub);
      if (this.ready) this.resubscribe(name, sub);
    } else if (resync && this.ready) {
      resync();
    }
    sub.handlers.add(handler);
    if (resync) sub.resync.add(resync);
    return () => {
      sub.handlers.delete(handler);
      if (resync) sub.resync.delete(resync);
      if (!sub.handlers.size) {
        this.subscriptions.delete(name);
        if (sub.ident && this.ready) this.call("core.unsubscribe", [sub.ident]).catch(() => {});
      }
    };
  }

  async resubscribe(name, sub) {
    try {
      sub.ident = await this.call("core.subscribe", [name]);
    } catch (e) {
      console.warn(`cannot subscribe to ${name}`, e);
    }
    for (const fn of sub.resync) fn();
  }

  // Forget every subscription (logout): the server ends them too.
  reset() {
    this.subscriptions.clear();
    this.queue = [];
  }
}
