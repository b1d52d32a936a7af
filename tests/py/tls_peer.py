"""A raw v1 client over TLS built on Python's `ssl` module, for the e2e
test `tls`: it verifies the gateway's certificate against CAFILE (or the
system's roots when CAFILE is `-`), says Hello, and waits for one push.

Usage: tls_peer.py HOST PORT CAFILE TOKEN
Prints `refused REASON` if the handshake fails, else `cert CN VERSION`,
`welcome USER`, then `push ID ACK PAYLOAD` for the first push (acking a
durable one), and exits.
"""

import os
import socket
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from v1 import ack, fields, hello, prefixed  # noqa: E402


def read_frame(sock):
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("closed")
            buf += chunk
        return buf

    n = int.from_bytes(exactly(4), "big")
    (kind, body), = fields(exactly(n))
    return kind, body


def main():
    host, port, cafile, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    context = ssl.create_default_context(cafile=None if cafile == "-" else cafile)
    raw = socket.create_connection((host, port), timeout=10)
    try:
        sock = context.wrap_socket(raw, server_hostname="localhost")
    except ssl.SSLError as e:
        print(f"refused {e.reason}", flush=True)
        return
    cert = dict(x[0] for x in sock.getpeercert()["subject"])
    print(f"cert {cert.get('commonName')} {sock.version()}", flush=True)
    sock.sendall(prefixed(hello(token, "py-ssl")))
    kind, body = read_frame(sock)
    assert kind == 2, f"expected a Welcome, got frame kind {kind}"
    print(f"welcome {dict(fields(body)).get(2, b'').decode()}", flush=True)
    while True:
        kind, body = read_frame(sock)
        if kind != 7:
            continue
        push = dict(fields(body))
        pid, durable = push.get(1, 0), bool(push.get(5, 0))
        if durable:
            sock.sendall(prefixed(ack([pid])))
        print(f"push {pid} {int(durable)} {push.get(4, b'').decode()}", flush=True)
        break
    sock.close()


if __name__ == "__main__":
    main()
