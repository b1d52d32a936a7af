import { test } from "node:test";
import assert from "node:assert/strict";

import { ProtocolError, decodeFrame, encodeFrame } from "../proto.js";
import { serverFrame } from "./fake.js";

test("a Ping encodes as the schema says: Frame.ping (3) holding Ping.id (1)", () => {
  // 0x1a = field 3, wire type 2; then a 2-byte Ping with 0x08 = field 1, varint.
  assert.deepEqual([...encodeFrame("ping", { id: 7n })], [0x1a, 0x02, 0x08, 0x07]);
  // An empty Push is field 7 with no body, the frame the Rust tests use.
  assert.deepEqual(decodeFrame(Uint8Array.from([0x3a, 0x00])).kind, "push");
});

test("a Hello carries version, token, device, apps, heartbeat and resume", () => {
  const bytes = encodeFrame("hello", {
    token: "tok", device: "dev", apps: ["a", "b"], heartbeatMs: 25000, resume: Uint8Array.from([9, 9]),
  });
  // Hand-decoded: Frame.hello = field 1.
  assert.equal(bytes[0], 0x0a);
  const body = [...bytes.subarray(2)];
  assert.deepEqual(body, [
    0x08, 0x01, // version 1
    0x12, 0x03, ...new TextEncoder().encode("tok"),
    0x1a, 0x03, ...new TextEncoder().encode("dev"),
    0x22, 0x01, 0x61, 0x22, 0x01, 0x62, // apps
    0x28, 0xa8, 0xc3, 0x01, // 25000
    0x32, 0x02, 0x09, 0x09,
  ]);
});

test("server frames decode, 64-bit ids survive, unknown fields are skipped", () => {
  const id = (1n << 63n) + 5n;
  const { kind, msg } = decodeFrame(serverFrame("push", { id, app: "chat", topic: "t", payload: "hé", ack: true, redelivery: true }));
  assert.equal(kind, "push");
  assert.equal(msg.id, id);
  assert.equal(msg.app, "chat");
  assert.equal(new TextDecoder().decode(msg.payload), "hé");
  assert.equal(msg.ack, true);
  assert.equal(msg.redelivery, true);
  // A field 15 (varint) and a field 16 (bytes) inside a Welcome, and an
  // unknown frame kind 20 after it: skipped.
  const welcome = serverFrame("welcome", { user: "u" });
  const extra = [0x78, 0x01, 0x82, 0x01, 0x01, 0xff];
  const inner = [...welcome.subarray(2), ...extra];
  const bytes = Uint8Array.from([0x12, inner.length, ...inner, 0xa2, 0x01, 0x00]);
  const got = decodeFrame(bytes);
  assert.equal(got.kind, "welcome");
  assert.equal(got.msg.user, "u");
  assert.equal(decodeFrame(Uint8Array.from([0xa2, 0x01, 0x00])).kind, null);
});

test("truncated or malformed input throws a ProtocolError, never loops", () => {
  const push = serverFrame("push", { id: 1n, payload: "hello" });
  for (let cut = 1; cut < push.length; cut++) {
    assert.throws(() => decodeFrame(push.subarray(0, cut)), ProtocolError, `cut at ${cut}`);
  }
  assert.throws(() => decodeFrame(Uint8Array.from(new Array(11).fill(0xff))), ProtocolError);
  assert.throws(() => decodeFrame(Uint8Array.from([0x0b])), ProtocolError); // wire type 3
  // A string that is not UTF-8.
  assert.throws(() => decodeFrame(Uint8Array.from([0x62, 0x04, 0x12, 0x02, 0xff, 0xfe])), ProtocolError);
});

test("a client refuses to encode frames only a server sends", () => {
  assert.throws(() => encodeFrame("welcome", {}), TypeError);
});
