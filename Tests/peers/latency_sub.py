"""A hub subscriber for the replay benchmark: subscribes (QoS 1) to a readings topic, and for every message that
carries a reading of the device named by --live notes how long after that reading's time it arrived. Counts
readings seen in all messages. On SIGTERM writes a JSON summary to --out and exits.

usage: latency_sub.py --port P --topic T --live DEVICE --out FILE
"""
import argparse, json, re, signal, sys, time
import paho.mqtt.client as mqtt

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--live", required=True)
ap.add_argument("--out", required=True)
a = ap.parse_args()

marker = ('"device":"%s"' % a.live).encode()
time_re = re.compile(rb'"device":"' + a.live.encode() + rb'","channel":"[^"]*","time":"([^"]+)"')
latencies = []
messages = 0
readings = 0


def parse_rfc3339(s):
    # 2026-11-23T23:45:09.123Z
    base, frac = s[:19], s[20:-1]
    t = time.mktime(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return t + (int(frac) / 10 ** len(frac) if frac else 0)


def on_message(client, userdata, msg):
    global messages, readings
    now = time.time()
    messages += 1
    readings += msg.payload.count(b'"seq":') - 0
    if marker in msg.payload:
        for m in time_re.finditer(msg.payload):
            latencies.append(now - parse_rfc3339(m.group(1).decode()))


def on_connect(client, userdata, flags, reason, props=None):
    client.subscribe(a.topic, qos=1)
    print("subscribed", flush=True)


def finish(*_):
    with open(a.out, "w") as f:
        json.dump({"messages": messages, "readings": readings, "live": len(latencies),
                   "max_latency_s": max(latencies) if latencies else None,
                   "mean_latency_s": sum(latencies) / len(latencies) if latencies else None}, f)
    sys.exit(0)


signal.signal(signal.SIGTERM, finish)
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-hub")
c.on_connect = on_connect
c.on_message = on_message
c.connect("127.0.0.1", a.port)
c.loop_forever()
