import { beforeEach, mock, test } from "node:test";
import assert from "node:assert/strict";

import { DEDUP_WINDOW, GatewayClient, SUBPROTOCOL, hintUrl } from "../gateway.js";
import { FakeWebSocket } from "./fake.js";

const URL_ = "ws://gw.example:7102/ws";

beforeEach(() => {
  FakeWebSocket.reset();
  mock.timers.reset();
  mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
});

/** A client connected and welcomed (heartbeat 1 s unless said). */
async function welcomed(options = {}, welcome = {}) {
  const c = new GatewayClient(URL_, { token: "tok", WebSocket: FakeWebSocket, random: () => 0.5, ...options });
  await c.connect();
  const ws = FakeWebSocket.last();
  ws.open();
  ws.receive("welcome", { heartbeatMs: 1000, ...welcome });
  return { c, ws };
}

const flush = () => new Promise((r) => queueMicrotask(r));

test("connects with the subprotocol and says Hello with the token and settings", async () => {
  const c = new GatewayClient(URL_, {
    token: async () => "fresh-token", device: "phone", apps: ["chat"], heartbeatMs: 20000, WebSocket: FakeWebSocket,
  });
  await c.connect();
  const ws = FakeWebSocket.last();
  assert.equal(ws.url, URL_);
  assert.deepEqual(ws.protocols, [SUBPROTOCOL]);
  assert.equal(ws.binaryType, "arraybuffer");
  ws.open();
  const [hello] = ws.sent;
  assert.equal(hello.kind, "hello");
  assert.deepEqual(
    { ...hello.msg, resume: [...hello.msg.resume] },
    { version: 1, token: "fresh-token", device: "phone", apps: ["chat"], heartbeatMs: 20000, resume: [] },
  );
  assert.equal(c.state, "connecting");
  ws.receive("welcome", { user: "alice", heartbeatMs: 20000 });
  assert.equal(c.state, "open");
  assert.equal(c.welcome.user, "alice");
});

test("durable pushes are acked automatically, in one Ack per turn; others are not", async () => {
  const { c, ws } = await welcomed();
  const got = [];
  c.on("push", (p) => got.push([p.id, p.text(), p.durable]));
  ws.receive("push", { id: 11n, payload: "a", ack: true });
  ws.receive("push", { id: 12n, payload: "b", ack: true });
  ws.receive("push", { id: 13n, payload: "c" });
  await flush();
  assert.deepEqual(got, [[11n, "a", true], [12n, "b", true], [13n, "c", false]]);
  const acks = ws.sent.filter((f) => f.kind === "ack");
  assert.equal(acks.length, 1);
  assert.deepEqual(acks[0].msg.ids, [11n, 12n]);
});

test("with autoAck off, a push is acked only when the app says so", async () => {
  const { c, ws } = await welcomed({ autoAck: false });
  let push;
  c.on("push", (p) => { push = p; });
  ws.receive("push", { id: 5n, payload: "x", ack: true });
  await flush();
  assert.equal(ws.sent.filter((f) => f.kind === "ack").length, 0);
  push.ack();
  push.ack();
  await flush();
  const acks = ws.sent.filter((f) => f.kind === "ack");
  assert.deepEqual(acks.map((a) => a.msg.ids), [[5n]], "once");
});

test("a redelivered push is not delivered twice, and an acked one is acked again", async () => {
  const { c, ws } = await welcomed();
  let n = 0;
  c.on("push", () => { n += 1; });
  ws.receive("push", { id: 7n, payload: "x", ack: true });
  await flush();
  ws.receive("push", { id: 7n, payload: "x", ack: true, redelivery: true });
  await flush();
  assert.equal(n, 1);
  assert.deepEqual(ws.sent.filter((f) => f.kind === "ack").map((a) => a.msg.ids), [[7n], [7n]]);
  // The window is bounded: the oldest ids are forgotten.
  for (let i = 0; i < DEDUP_WINDOW; i++) ws.receive("push", { id: BigInt(1000 + i), payload: "" });
  assert.equal(c.dedup.order.length, DEDUP_WINDOW);
  ws.receive("push", { id: 7n, payload: "again" });
  assert.equal(n, 2 + DEDUP_WINDOW, "id 7 fell out of the window and counts anew");
});

test("an uplink resolves with its reply, times out, and is capped", async () => {
  const { c, ws } = await welcomed({ uplinkTimeoutMs: 500, maxPendingUplinks: 2 });
  const answered = c.request("chat", "send", "hi");
  const up = ws.sent.find((f) => f.kind === "uplink");
  assert.deepEqual([up.msg.requestId, up.msg.app, up.msg.route], [1n, "chat", "send"]);
  ws.receive("reply", { requestId: 1n, status: 202, payload: "ok" });
  const reply = await answered;
  assert.equal(reply.status, 202);
  assert.equal(new TextDecoder().decode(reply.payload), "ok");

  const slow = c.request("chat", "send", "slow");
  const other = c.request("chat", "send", "other");
  await assert.rejects(c.request("chat", "send", "third"), /already waiting/);
  mock.timers.tick(501);
  await assert.rejects(slow, /timed out/);
  await assert.rejects(other, /timed out/);
});

test("an uplink waiting when the connection drops is rejected", async () => {
  const { c, ws } = await welcomed();
  const pending = c.request("chat", "send", "x");
  ws.close(1006);
  await assert.rejects(pending, /disconnected/);
});

test("reconnects with full-jitter backoff and subscribes again", async () => {
  const { c, ws } = await welcomed({ minBackoffMs: 100, maxBackoffMs: 1000, random: () => 0.999 });
  c.subscribe("news");
  assert.deepEqual(ws.sent.at(-1).msg.topics, ["news"]);
  for (let attempt = 0; attempt < 6; attempt++) {
    const before = FakeWebSocket.all.length;
    FakeWebSocket.last().close(1006);
    // The wait is just under min·2^attempt (random 0.999), capped by max.
    const cap = Math.min(1000, 100 * 2 ** attempt);
    mock.timers.tick(Math.floor(cap * 0.999) - 1);
    await flush();
    assert.equal(FakeWebSocket.all.length, before, `attempt ${attempt} waits`);
    mock.timers.tick(1);
    await flush();
    await flush();
    assert.equal(FakeWebSocket.all.length, before + 1, `attempt ${attempt} reconnects`);
    FakeWebSocket.last().open();
  }
  const again = FakeWebSocket.last();
  again.receive("welcome", { heartbeatMs: 1000 });
  assert.equal(c.attempt, 0, "a Welcome resets the backoff");
  assert.deepEqual(again.sent.find((f) => f.kind === "subscribe").msg.topics, ["news"]);
});

test("backoff jitter spans [0, cap)", () => {
  const c = new GatewayClient(URL_, { WebSocket: FakeWebSocket, minBackoffMs: 100, maxBackoffMs: 1000 });
  c.opts.random = () => 0;
  assert.equal(c.backoff(), 0);
  c.opts.random = () => 0.5;
  c.attempt = 3;
  assert.equal(c.backoff(), 400);
  c.attempt = 40;
  c.opts.random = () => 0.999;
  assert.equal(c.backoff(), 999);
});

test("the resume token from the Welcome is sent in the next Hello", async () => {
  const sent = [];
  class Recording extends FakeWebSocket {
    send(bytes) { sent.push(Uint8Array.from(bytes)); super.send(bytes); }
  }
  const c = new GatewayClient(URL_, { token: "t", WebSocket: Recording, random: () => 0 });
  await c.connect();
  FakeWebSocket.last().open();
  FakeWebSocket.last().receive("welcome", { heartbeatMs: 1000, resume: Uint8Array.from([0xaa, 0xbb]) });
  FakeWebSocket.last().close(1006);
  mock.timers.tick(1);
  await flush();
  await flush();
  FakeWebSocket.last().open();
  const hello = [...sent.at(-1)];
  // Hello.resume is field 6 (0x32), length 2.
  const at = hello.indexOf(0x32);
  assert.deepEqual(hello.slice(at, at + 4), [0x32, 0x02, 0xaa, 0xbb]);
});

test("a Kick's reconnect hint and retry-after are honoured", async () => {
  const { c, ws } = await welcomed({ minBackoffMs: 10 });
  const kicks = [];
  c.on("kick", (k) => kicks.push(k));
  ws.receive("kick", { code: 1, reason: "going away", reconnect: ["gw2.example:7102"], retryAfterMs: 3000 });
  ws.close(1001);
  assert.equal(kicks[0].retryAfterMs, 3000);
  mock.timers.tick(2999);
  await flush();
  assert.equal(FakeWebSocket.all.length, 1, "waits the hint");
  mock.timers.tick(1);
  await flush();
  await flush();
  assert.equal(FakeWebSocket.last().url, "ws://gw2.example:7102/ws");
  assert.equal(hintUrl("wss://a:1/x", "wss://b:2/y"), "wss://b:2/y");
});

test("three silent heartbeats close the connection and it reconnects", async () => {
  const { c, ws } = await welcomed({ minBackoffMs: 10 });
  mock.timers.tick(1000);
  assert.equal(ws.sent.at(-1).kind, "ping");
  ws.receive("pong", { id: 1n });
  mock.timers.tick(3000);
  assert.equal(ws.readyState, 1, "an answer keeps it open");
  mock.timers.tick(2000);
  assert.equal(ws.closedWith, 4000);
  assert.equal(c.state, "reconnecting");
  mock.timers.tick(20);
  await flush();
  await flush();
  assert.equal(FakeWebSocket.all.length, 2);
});

test("close() says Bye and stops reconnecting", async () => {
  const { c, ws } = await welcomed();
  const states = [];
  c.on("state", (s) => states.push(s));
  c.close();
  assert.equal(ws.sent.at(-1).kind, "bye");
  assert.equal(ws.closedWith, 1000);
  mock.timers.tick(60_000);
  await flush();
  assert.equal(FakeWebSocket.all.length, 1);
  assert.deepEqual(states, ["closed"]);
  await assert.rejects(c.connect(), /closed/);
});

test("an Error frame and bad bytes surface as error events", async () => {
  const { c, ws } = await welcomed();
  const errors = [];
  c.on("error", (e) => errors.push(e));
  ws.receive("error", { code: 17, message: "limit exceeded" });
  ws.onmessage({ data: Uint8Array.from([0x3a, 0x05, 0x08]).buffer });
  assert.equal(errors[0].code, 17);
  assert.equal(errors[1].name, "ProtocolError");
  assert.equal(ws.closedWith, 1002);
});
