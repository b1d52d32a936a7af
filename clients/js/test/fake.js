// Test doubles: a WebSocket the client drives like a real one, and the
// gateway's side of the protobuf encoding (frames a server sends), written
// independently of proto.js so the tests check its decoder.

import { decodeFrame } from "../proto.js";

function varint(n) {
  let v = BigInt.asUintN(64, BigInt(n));
  const out = [];
  while (v >= 0x80n) { out.push(Number(v & 0x7fn) | 0x80); v >>= 7n; }
  out.push(Number(v));
  return out;
}
const te = new TextEncoder();
const len = (field, bytes) => [...varint((field << 3) | 2), ...varint(bytes.length), ...bytes];
const num = (field, v) => (BigInt(v) === 0n ? [] : [...varint(field << 3), ...varint(v)]);
const str = (field, s) => (s ? len(field, [...te.encode(s)]) : []);

/** A server frame of `kind` with `msg`, as the gateway encodes it. */
export function serverFrame(kind, msg = {}) {
  let body;
  let field;
  switch (kind) {
    case "welcome":
      field = 2;
      body = [...str(1, msg.session ?? "s-1"), ...str(2, msg.user ?? "u"), ...num(3, msg.heartbeatMs ?? 1000),
        ...(msg.resume ? len(4, [...msg.resume]) : []), ...num(6, msg.resumed ? 1 : 0)];
      break;
    case "push":
      field = 7;
      body = [...num(1, msg.id), ...str(2, msg.app), ...str(3, msg.topic), ...len(4, [...te.encode(msg.payload ?? "")]),
        ...num(5, msg.ack ? 1 : 0), ...num(6, msg.tsUs ?? 0), ...num(7, msg.redelivery ? 1 : 0)];
      break;
    case "reply":
      field = 10;
      body = [...num(1, msg.requestId), ...num(2, msg.status ?? 200), ...len(3, [...te.encode(msg.payload ?? "")])];
      break;
    case "kick":
      field = 11;
      body = [...num(1, msg.code ?? 1), ...str(2, msg.reason), ...(msg.reconnect ?? []).flatMap((r) => str(3, r)),
        ...num(4, msg.retryAfterMs ?? 0)];
      break;
    case "pong": field = 4; body = num(1, msg.id); break;
    case "error": field = 12; body = [...num(1, msg.code), ...str(2, msg.message)]; break;
    default: throw new Error(kind);
  }
  return Uint8Array.from(len(field, body));
}

/** A WebSocket double: records what the client sends, decoded. */
export class FakeWebSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.all.push(this);
  }
  static reset() { FakeWebSocket.all = []; }
  static last() { return FakeWebSocket.all[FakeWebSocket.all.length - 1]; }
  send(bytes) {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(decodeFrame(bytes));
  }
  close(code = 1000, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.closedWith = code;
    this.onclose?.({ code, reason });
  }
  // The server's side.
  open() { this.readyState = 1; this.onopen?.(); }
  receive(kind, msg) { this.onmessage?.({ data: serverFrame(kind, msg).buffer }); }
  sentKinds() { return this.sent.map((f) => f.kind); }
}
