"""Wire protocol v1 by hand (protobuf `gateway.v1.Frame`, see
protocol/proto/gateway.proto) for the Python peers of the e2e tests: just
the frames they send (Hello, Ack) and a field reader for those they get.
"""


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


def hello(token, device="py"):
    body = field(1, 0, 1) + field(2, 2, token.encode()) + field(3, 2, device.encode())
    return field(1, 2, body)


def ack(ids):
    packed = b"".join(varint(i) for i in ids)
    return field(8, 2, field(1, 2, packed))


def prefixed(frame):
    """A frame as raw v1 puts it on TCP: a 4-byte big-endian length first."""
    return len(frame).to_bytes(4, "big") + frame
