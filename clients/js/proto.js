// Wire protocol v1 (protocol/proto/gateway.proto) by hand: the protobuf
// encoding of exactly the gateway.v1 messages, with no dependency. Field
// numbers are fixed by the schema; unknown fields are skipped, so a newer
// gateway's additions do not break an older client. uint64 values (push
// ids, ping ids, request ids, times) are BigInt.

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: true });

/** Frame kinds: the field number of each `Frame.kind` variant. */
export const Kind = Object.freeze({
  hello: 1, welcome: 2, ping: 3, pong: 4, subscribe: 5, unsubscribe: 6,
  push: 7, ack: 8, uplink: 9, reply: 10, kick: 11, error: 12, bye: 13,
});

const KIND_NAMES = Object.fromEntries(Object.entries(Kind).map(([k, v]) => [v, k]));

/** Thrown for bytes that are not a v1 frame. */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

class Writer {
  constructor() { this.bytes = []; }
  varint(v) {
    let n = BigInt.asUintN(64, BigInt(v));
    while (n >= 0x80n) {
      this.bytes.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    this.bytes.push(Number(n));
  }
  key(field, wire) { this.varint((field << 3) | wire); }
  uint(field, v) {
    if (v === undefined || v === null || BigInt(v) === 0n) return;
    this.key(field, 0);
    this.varint(v);
  }
  bool(field, v) { if (v) { this.key(field, 0); this.varint(1); } }
  bytes_(field, b) {
    if (!b || b.length === 0) return;
    this.key(field, 2);
    this.varint(b.length);
    for (const x of b) this.bytes.push(x);
  }
  string(field, s) { if (s) this.bytes_(field, te.encode(s)); }
  message(field, body) {
    this.key(field, 2);
    this.varint(body.length);
    for (const x of body) this.bytes.push(x);
  }
  finish() { return Uint8Array.from(this.bytes); }
}

class Reader {
  constructor(buf) { this.buf = buf; this.at = 0; }
  done() { return this.at >= this.buf.length; }
  varint() {
    let n = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.at >= this.buf.length) throw new ProtocolError("truncated varint");
      const b = this.buf[this.at++];
      n |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return BigInt.asUintN(64, n);
    }
    throw new ProtocolError("varint longer than 10 bytes");
  }
  bytes() {
    const len = Number(this.varint());
    if (len > this.buf.length - this.at) throw new ProtocolError("truncated field");
    const out = this.buf.subarray(this.at, this.at + len);
    this.at += len;
    return out;
  }
  /** Every field: [number, wire type, value] with value a BigInt or bytes. */
  *fields() {
    while (!this.done()) {
      const key = Number(this.varint());
      const field = key >>> 3;
      const wire = key & 7;
      if (field === 0) throw new ProtocolError("field number 0");
      if (wire === 0) yield [field, wire, this.varint()];
      else if (wire === 2) yield [field, wire, this.bytes()];
      else if (wire === 1) yield [field, wire, this.skip(8)];
      else if (wire === 5) yield [field, wire, this.skip(4)];
      else throw new ProtocolError(`unsupported wire type ${wire}`);
    }
  }
  skip(n) {
    if (n > this.buf.length - this.at) throw new ProtocolError("truncated field");
    this.at += n;
    return null;
  }
}

const text = (b) => {
  try {
    return td.decode(b);
  } catch {
    throw new ProtocolError("a string field is not UTF-8");
  }
};

/**
 * Encodes one frame: `kind` is a key of {@link Kind}, `msg` its fields
 * (camelCase names of the .proto fields).
 */
export function encodeFrame(kind, msg = {}) {
  const b = new Writer();
  switch (kind) {
    case "hello":
      b.uint(1, msg.version ?? 1); b.string(2, msg.token); b.string(3, msg.device);
      for (const a of msg.apps ?? []) b.bytes_(4, te.encode(a));
      b.uint(5, msg.heartbeatMs); b.bytes_(6, msg.resume);
      break;
    case "ping": case "pong": b.uint(1, msg.id); break;
    case "subscribe": case "unsubscribe":
      for (const t of msg.topics ?? []) b.bytes_(1, te.encode(t));
      break;
    case "ack": {
      const ids = new Writer();
      for (const id of msg.ids ?? []) ids.varint(id);
      if (ids.bytes.length) b.message(1, ids.bytes);
      break;
    }
    case "uplink":
      b.uint(1, msg.requestId); b.string(2, msg.app); b.string(3, msg.route);
      b.bytes_(4, msg.payload);
      break;
    case "bye": break;
    default: throw new TypeError(`a client does not send ${kind} frames`);
  }
  const frame = new Writer();
  frame.message(Kind[kind], b.bytes);
  return frame.finish();
}

function decodeBody(kind, body) {
  const m = {};
  const r = new Reader(body);
  const list = (name, v) => (m[name] ??= []).push(v);
  for (const [f, wire, v] of r.fields()) {
    const s = () => text(v);
    switch (kind) {
      case "welcome":
        if (f === 1) m.session = s(); else if (f === 2) m.user = s();
        else if (f === 3) m.heartbeatMs = Number(v); else if (f === 4) m.resume = Uint8Array.from(v);
        else if (f === 5) m.serverTimeMs = v; else if (f === 6) m.resumed = v !== 0n;
        else if (f === 7) m.recovered = v !== 0n;
        break;
      case "ping": case "pong": if (f === 1) m.id = v; break;
      case "push":
        if (f === 1) m.id = v; else if (f === 2) m.app = s(); else if (f === 3) m.topic = s();
        else if (f === 4) m.payload = Uint8Array.from(v); else if (f === 5) m.ack = v !== 0n;
        else if (f === 6) m.tsUs = v; else if (f === 7) m.redelivery = v !== 0n;
        break;
      case "reply":
        if (f === 1) m.requestId = v; else if (f === 2) m.status = Number(v);
        else if (f === 3) m.payload = Uint8Array.from(v);
        break;
      case "kick":
        if (f === 1) m.code = Number(v); else if (f === 2) m.reason = s();
        else if (f === 3) list("reconnect", s()); else if (f === 4) m.retryAfterMs = Number(v);
        break;
      case "error":
        if (f === 1) m.code = Number(v); else if (f === 2) m.message = s();
        break;
      case "subscribe": case "unsubscribe":
        if (f === 1) list("topics", s());
        break;
      case "uplink":
        if (f === 1) m.requestId = v; else if (f === 2) m.app = s(); else if (f === 3) m.route = s();
        else if (f === 4) m.payload = Uint8Array.from(v);
        break;
      case "hello":
        if (f === 1) m.version = Number(v); else if (f === 2) m.token = s(); else if (f === 3) m.device = s();
        else if (f === 4) list("apps", s()); else if (f === 5) m.heartbeatMs = Number(v);
        else if (f === 6) m.resume = Uint8Array.from(v);
        break;
      case "ack":
        if (f === 1 && wire === 2) {
          const ids = new Reader(v);
          while (!ids.done()) list("ids", ids.varint());
        } else if (f === 1) list("ids", v);
        break;
      default: break;
    }
  }
  return m;
}

const DEFAULTS = {
  welcome: () => ({ session: "", user: "", heartbeatMs: 0, resume: new Uint8Array(), serverTimeMs: 0n, resumed: false, recovered: false }),
  push: () => ({ id: 0n, app: "", topic: "", payload: new Uint8Array(), ack: false, tsUs: 0n, redelivery: false }),
  reply: () => ({ requestId: 0n, status: 0, payload: new Uint8Array() }),
  kick: () => ({ code: 0, reason: "", reconnect: [], retryAfterMs: 0 }),
  error: () => ({ code: 0, message: "" }),
  ping: () => ({ id: 0n }),
  pong: () => ({ id: 0n }),
  ack: () => ({ ids: [] }),
  subscribe: () => ({ topics: [] }),
  unsubscribe: () => ({ topics: [] }),
  uplink: () => ({ requestId: 0n, app: "", route: "", payload: new Uint8Array() }),
  hello: () => ({ version: 0, token: "", device: "", apps: [], heartbeatMs: 0, resume: new Uint8Array() }),
};

/**
 * Decodes one frame (a WebSocket message's bytes, either direction) into
 * `{ kind, msg }`;
 * `kind` is `null` for a kind this client does not know (skip it).
 * Throws {@link ProtocolError} for bytes that are not a frame.
 */
export function decodeFrame(bytes) {
  const r = new Reader(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  let kind = null;
  let msg = null;
  for (const [f, wire, v] of r.fields()) {
    const name = KIND_NAMES[f];
    if (!name || wire !== 2) continue;
    kind = name;
    msg = { ...(DEFAULTS[name]?.() ?? {}), ...decodeBody(name, v) };
  }
  return { kind, msg };
}
