"""A gateway client built on Python's `websockets` (PyPI), nobody here wrote
the WebSocket side: upgrade with the subprotocol gateway.v1, a Hello with a
token, then pushes in, acks out, WebSocket pings. Driven by the e2e test
`websocket_python`, line by line on stdin/stdout.

Usage: ws_peer.py URL TOKEN [CAFILE]   (CAFILE: trust it for a wss:// URL)
Prints `welcome USER`, then for each push `push ID ACK PAYLOAD`, acking the
durable ones; on the line `ping` sends a WebSocket ping and prints `pong`
once it is answered; on `bye` closes and prints `closed CODE`.
"""

import os
import ssl
import sys
import threading

from websockets.sync.client import connect

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from v1 import ack, fields, hello  # noqa: E402


def main():
    url, token = sys.argv[1], sys.argv[2]
    context = None
    if len(sys.argv) > 3:
        context = ssl.create_default_context(cafile=sys.argv[3])
    with connect(url, subprotocols=["gateway.v1"], open_timeout=5, ssl=context) as ws:
        assert ws.subprotocol == "gateway.v1", ws.subprotocol
        ws.send(hello(token, "py-websockets"))
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
