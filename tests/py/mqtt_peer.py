"""An MQTT 3.1.1 client nobody here wrote (paho-mqtt, PyPI), for the
gateway's MQTT listener tests (tests/tests/mqtt_paho.rs).

Usage: mqtt_peer.py HOST PORT CLIENT_ID USERNAME PASSWORD CLEAN(0|1)

Prints one JSON object per line: {"connack": rc, "session_present": b}
once connected, {"suback": [granted QoS or 128, ...]} per SUBSCRIBE,
{"topic", "payload", "qos", "dup"} per PUBLISH received, {"puback": mid}
when a QoS 1 PUBLISH of its own was acknowledged, and {"disconnected": rc}.
Commands on stdin, one per line: `sub FILTER QOS [FILTER QOS ...]`,
`pub TOPIC QOS PAYLOAD`, `quit` (DISCONNECT and exit), `drop` (close the
socket without DISCONNECT and exit).
"""

import json
import sys

import paho.mqtt.client as mqtt


def say(obj):
    print(json.dumps(obj), flush=True)


def main():
    host, port, client_id, username, password, clean = sys.argv[1:7]
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean == "1",
        protocol=mqtt.MQTTv311,
    )
    # MQTT 3.1.1 sends a password only with a user name (possibly empty).
    client.username_pw_set(username, password)

    def on_connect(_c, _u, flags, rc, _p):
        say({"connack": rc.value, "session_present": bool(flags.session_present)})

    def on_subscribe(_c, _u, _mid, codes, _p):
        say({"suback": [c.value for c in codes]})

    def on_message(_c, _u, msg):
        say({"topic": msg.topic, "payload": msg.payload.decode("utf-8", "replace"),
             "qos": msg.qos, "dup": bool(msg.dup)})

    def on_publish(_c, _u, mid, _rc, _p):
        say({"puback": mid})

    def on_disconnect(_c, _u, _flags, rc, _p):
        say({"disconnected": rc.value})

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_publish = on_publish
    client.on_disconnect = on_disconnect
    client.reconnect_delay_set(60, 60)
    client.connect(host, int(port), keepalive=30)
    client.loop_start()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "sub":
            pairs = [(words[i], int(words[i + 1])) for i in range(1, len(words) - 1, 2)]
            client.subscribe(pairs)
        elif words[0] == "pub":
            client.publish(words[1], " ".join(words[3:]), qos=int(words[2]))
        elif words[0] == "quit":
            client.disconnect()
            break
        elif words[0] == "drop":
            client.socket().close()
            break
    client.loop_stop()


if __name__ == "__main__":
    main()
