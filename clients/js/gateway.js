// A client of the gateway's WebSocket listener, for browsers and Node:
// wire protocol v1 in binary messages (subprotocol `gateway.v1`), a Hello
// with a token, heartbeats, topics, pushes with acks and dedup, uplink
// requests, and reconnects with backoff and the resume token. No runtime
// dependency; see README.md.

import { ProtocolError, decodeFrame, encodeFrame } from "./proto.js";

export { ProtocolError } from "./proto.js";

/** The subprotocol the gateway's WebSocket listener speaks. */
export const SUBPROTOCOL = "gateway.v1";

/** Ids remembered for dedup (as the Rust client's session does). */
export const DEDUP_WINDOW = 1024;

const DEFAULTS = {
  device: "js",
  apps: [],
  topics: [],
  heartbeatMs: 25_000,
  autoAck: true,
  reconnect: true,
  minBackoffMs: 500,
  maxBackoffMs: 30_000,
  uplinkTimeoutMs: 10_000,
  maxPendingUplinks: 256,
  random: Math.random,
};

/** A bounded set of push ids, oldest forgotten first. */
class DedupWindow {
  constructor(size) { this.size = size; this.order = []; this.acked = new Map(); }
  /** Whether `id` was seen; remembers it if not. */
  seen(id) {
    if (this.acked.has(id)) return true;
    this.acked.set(id, false);
    this.order.push(id);
    if (this.order.length > this.size) this.acked.delete(this.order.shift());
    return false;
  }
  markAcked(id) { if (this.acked.has(id)) this.acked.set(id, true); }
  wasAcked(id) { return this.acked.get(id) === true; }
}

/**
 * One logical connection to a gateway, kept up across disconnects.
 *
 * Events (`on(type, fn)`): `welcome` (the Welcome: `{session, user,
 * heartbeatMs, resumed, recovered}`; resumed without recovered: refetch
 * what the app shows from its backend), `push` ({@link Push}), `error` (an Error frame
 * `{code, message}`, or a ProtocolError), `kick` (`{code, reason,
 * reconnect, retryAfterMs}`), `state` (`"connecting" | "open" |
 * "reconnecting" | "closed"`), `disconnect` (`{code, reason}` of the
 * WebSocket close).
 */
export class GatewayClient {
  /**
   * @param {string} url `ws://` or `wss://` URL of the WebSocket listener.
   * @param {object} options `token` (a string, or a function returning
   *   one or a promise of one, asked before every connect), `device`,
   *   `apps`, `topics`, `heartbeatMs`, `autoAck` (default true),
   *   `reconnect` (default true), `minBackoffMs`, `maxBackoffMs`,
   *   `uplinkTimeoutMs`, `maxPendingUplinks`, `WebSocket` (a constructor;
   *   default the global one), `random` (for tests).
   */
  constructor(url, options = {}) {
    this.url = url;
    this.opts = { ...DEFAULTS, ...options };
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket !== "function") {
      throw new TypeError("no WebSocket: pass options.WebSocket (Node < 22: the `ws` package)");
    }
    this.topics = new Set(this.opts.topics);
    this.listeners = new Map();
    this.dedup = new DedupWindow(DEDUP_WINDOW);
    this.pendingAcks = [];
    this.uplinks = new Map();
    this.nextRequest = 1n;
    this.nextPing = 1n;
    this.resume = null;
    this.attempt = 0;
    this.hint = null;
    this.ws = null;
    this.state = "idle";
    this.timers = new Set();
    this.welcome = null;
  }

  /** Adds a listener for `type`; returns a function that removes it. */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type)?.delete(fn);
  }

  emit(type, value) {
    for (const fn of this.listeners.get(type) ?? []) fn(value);
  }

  setState(state) {
    if (this.state !== state) {
      this.state = state;
      this.emit("state", state);
    }
  }

  timer(ms, fn) {
    const t = setTimeout(() => { this.timers.delete(t); fn(); }, ms);
    this.timers.add(t);
    return t;
  }

  clearTimers() {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /** Connects (and keeps reconnecting until {@link GatewayClient.close}). */
  async connect() {
    if (this.state === "closed") throw new Error("closed: make a new client");
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    const token = typeof this.opts.token === "function" ? await this.opts.token() : this.opts.token;
    if (this.state === "closed") return;
    const url = this.hint ?? this.url;
    this.hint = null;
    const ws = new this.WebSocket(url, [SUBPROTOCOL]);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.lastInput = Date.now();
    ws.onopen = () => {
      this.send("hello", {
        version: 1, token: token ?? "", device: this.opts.device, apps: this.opts.apps,
        heartbeatMs: this.opts.heartbeatMs, resume: this.resume ?? undefined,
      });
    };
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = (ev) => this.onClose(ws, ev);
    ws.onerror = () => {};
  }

  send(kind, msg) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(encodeFrame(kind, msg));
  }

  onMessage(data) {
    this.lastInput = Date.now();
    let frame;
    try {
      frame = decodeFrame(new Uint8Array(data));
    } catch (e) {
      this.emit("error", e instanceof ProtocolError ? e : new ProtocolError(String(e)));
      this.ws?.close(1002);
      return;
    }
    const { kind, msg } = frame;
    switch (kind) {
      case "welcome": return this.onWelcome(msg);
      case "push": return this.onPush(msg);
      case "reply": return this.onReply(msg);
      case "kick":
        if (msg.reconnect.length) this.hint = hintUrl(this.url, msg.reconnect[0]);
        this.retryAfterMs = msg.retryAfterMs;
        return this.emit("kick", msg);
      case "error": return this.emit("error", msg);
      case "ping": return this.send("pong", { id: msg.id });
      default: return undefined;
    }
  }

  onWelcome(w) {
    this.welcome = w;
    if (w.resume.length) this.resume = w.resume;
    this.attempt = 0;
    this.setState("open");
    if (this.topics.size) this.send("subscribe", { topics: [...this.topics] });
    this.flushAcks();
    this.heartbeat(w.heartbeatMs || this.opts.heartbeatMs);
    this.emit("welcome", w);
  }

  /** Pings every heartbeat; closes (and reconnects) after 3 silent ones. */
  heartbeat(ms) {
    const ws = this.ws;
    const beat = () => {
      if (this.ws !== ws || ws.readyState !== 1) return;
      if (Date.now() - this.lastInput > 3 * ms) {
        ws.close(4000, "no answer for three heartbeats");
        return;
      }
      this.send("ping", { id: this.nextPing++ });
      this.timer(ms, beat);
    };
    this.timer(ms, beat);
  }

  onPush(p) {
    if (this.dedup.seen(p.id)) {
      // A redelivery of a push handled already: ack again if it was
      // acked (the ack may have been lost), never deliver it twice.
      if (p.ack && this.dedup.wasAcked(p.id)) this.queueAck(p.id);
      return;
    }
    let acked = false;
    const push = {
      id: p.id, app: p.app, topic: p.topic, payload: p.payload, durable: p.ack,
      tsUs: p.tsUs, redelivery: p.redelivery,
      text: () => new TextDecoder().decode(p.payload),
      ack: () => {
        if (!p.ack || acked) return;
        acked = true;
        this.queueAck(p.id);
      },
    };
    this.emit("push", push);
    if (this.opts.autoAck) push.ack();
  }

  queueAck(id) {
    this.dedup.markAcked(id);
    this.pendingAcks.push(id);
    if (this.pendingAcks.length === 1) queueMicrotask(() => this.flushAcks());
  }

  flushAcks() {
    if (!this.pendingAcks.length || !this.ws || this.ws.readyState !== 1 || !this.welcome) return;
    this.send("ack", { ids: this.pendingAcks.splice(0) });
  }

  onReply(r) {
    const pending = this.uplinks.get(r.requestId);
    if (!pending) return;
    this.uplinks.delete(r.requestId);
    clearTimeout(pending.timer);
    this.timers.delete(pending.timer);
    pending.resolve({ status: r.status, payload: r.payload });
  }

  /**
   * Sends an uplink to the backend route `route` of `app`; resolves with
   * the backend's `{status, payload}`, rejects on timeout, on disconnect,
   * or when `maxPendingUplinks` are already waiting.
   */
  request(app, route, payload, { timeoutMs = this.opts.uplinkTimeoutMs } = {}) {
    if (this.state !== "open") return Promise.reject(new Error("not connected"));
    if (this.uplinks.size >= this.opts.maxPendingUplinks) {
      return Promise.reject(new Error(`${this.uplinks.size} uplinks already waiting`));
    }
    const requestId = this.nextRequest++;
    const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    return new Promise((resolve, reject) => {
      const timer = this.timer(timeoutMs, () => {
        this.uplinks.delete(requestId);
        reject(new Error(`uplink ${requestId} timed out after ${timeoutMs} ms`));
      });
      this.uplinks.set(requestId, { resolve, reject, timer });
      this.send("uplink", { requestId, app, route, payload: bytes });
    });
  }

  /** Subscribes to `topics` (again after every reconnect). */
  subscribe(...topics) {
    for (const t of topics) this.topics.add(t);
    if (this.state === "open") this.send("subscribe", { topics });
  }

  /** Unsubscribes from `topics`. */
  unsubscribe(...topics) {
    for (const t of topics) this.topics.delete(t);
    if (this.state === "open") this.send("unsubscribe", { topics });
  }

  onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.welcome = null;
    this.clearTimers();
    for (const [, p] of this.uplinks) p.reject(new Error("disconnected before the reply"));
    this.uplinks.clear();
    this.emit("disconnect", { code: ev?.code ?? 1006, reason: ev?.reason ?? "" });
    if (this.state === "closed" || !this.opts.reconnect) {
      this.setState("closed");
      return;
    }
    this.setState("reconnecting");
    const delay = this.retryAfterMs > 0 ? this.retryAfterMs : this.backoff();
    this.retryAfterMs = 0;
    this.attempt += 1;
    this.timer(delay, () => { this.connect().catch((e) => this.emit("error", e)); });
  }

  /** Full jitter: a uniform wait in [0, min(max, min·2^attempt)). */
  backoff() {
    const cap = Math.min(this.opts.maxBackoffMs, this.opts.minBackoffMs * 2 ** Math.min(this.attempt, 30));
    return Math.floor(this.opts.random() * cap);
  }

  /** Says Bye and closes for good; waiting uplinks are rejected. */
  close() {
    const ws = this.ws;
    this.setState("closed");
    this.clearTimers();
    if (ws && ws.readyState === 1) {
      this.flushAcks();
      this.send("bye", {});
      ws.close(1000);
    } else if (ws) {
      ws.close(1000);
    }
  }
}

/** A Kick's reconnect hint (`host:port`, or a whole URL) as a URL. */
export function hintUrl(current, hint) {
  if (/^wss?:\/\//.test(hint)) return hint;
  const u = new URL(current);
  u.host = hint;
  return u.toString();
}

/**
 * @typedef {object} Push
 * @property {bigint} id Stable for a durable push across redeliveries.
 * @property {string} app
 * @property {string} topic Empty for a push to a user or to everyone.
 * @property {Uint8Array} payload
 * @property {boolean} durable Whether it wants an ack (`"ack": true`).
 * @property {boolean} redelivery Whether the gateway sent it before.
 * @property {bigint} tsUs When the gateway accepted it, µs since the epoch.
 * @property {() => string} text The payload as UTF-8.
 * @property {() => void} ack Acks a durable push (automatic unless
 *   `autoAck: false`); nothing for others.
 */
