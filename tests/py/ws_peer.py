"""A gateway client built on Python's `websockets` (PyPI), nobody here wrote
the WebSocket side: upgrade with the subprotocol gateway.v1, a Hello with a
token, then pushes in, acks out, WebSocket pings. Driven by the e2e test
`websocket_python`, line by line on stdin/stdout.

Usage: ws_peer.py URL TOKEN
Prints `welcome USER`, then for each push `push ID ACK PAYLOAD`, acking the
durable ones; on the line `ping` sends a WebSocket ping and prints `pong`
once it is answered; on `bye` closes and prints `closed CODE`.
"""

import sys
import threading

from websockets.sync.client import connect


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(buf):
    """(number, value) for each field; length-delimited values as bytes."""
    i, out = 0, []
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = read_varint(buf, i)
        elif wire == 2:
            n, i = read_varint(buf, i)
            v, i = bytes(buf[i:i + n]), i + n
        else:
            raise ValueError(f"wire type {wire} not expected")
        out.append((num, v))
    return out


def hello(token):
    body = field(1, 0, 1) + field(2, 2, token.encode()) + field(3, 2, b"py-websockets")
    return field(1, 2, body)


def ack(ids):
    packed = b"".join(varint(i) for i in ids)
    return field(8, 2, field(1, 2, packed))


def main():
    url, token = sys.argv[1], sys.argv[2]
    with connect(url, subprotocols=["gateway.v1"], open_timeout=5) as ws:
        assert ws.subprotocol == "gateway.v1", ws.subprotocol
        ws.send(hello(token))
        (kind, body), = fields(ws.recv(timeout=5))
        assert kind == 2, f"expected a Welcome, got frame kind {kind}"
        user = dict(fields(body)).get(2, b"").decode()
        print(f"welcome {user}", flush=True)

        def reader():
            try:
                for message in ws:
                    for kind, body in fields(message):
                        if kind != 7:
                            continue
                        push = dict(fields(body))
                        pid, durable = push.get(1, 0), bool(push.get(5, 0))
                        if durable:
                            ws.send(ack([pid]))
                        payload = push.get(4, b"").decode()
                        print(f"push {pid} {int(durable)} {payload}", flush=True)
            except Exception as e:  # the close ends the loop
                print(f"reader-ended {type(e).__name__}", flush=True)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "ping":
                ws.ping(b"py").wait(timeout=5)
                print("pong", flush=True)
            elif cmd == "bye":
                ws.close(code=1000)
                t.join(timeout=5)
                print(f"closed {ws.close_code}", flush=True)
                return


if __name__ == "__main__":
    main()
