#!/usr/bin/env python3
"""An independent check of kilntally's canonical JSON, SHA-256 and hash chain, with code nobody here wrote:
the `rfc8785` package (Trail of Bits' RFC 8785 JCS) and `hashlib`.

Usage (run with the project venv's interpreter; input lines are split on b"\\n" only):
  jcs_peer.py jcs IN OUT      each line of IN is a JSON text in hex (so texts may hold raw newlines); OUT gets, per
                              line, the hex of rfc8785.dumps(value),
                              or "error <ExceptionName>" when rfc8785 refuses the value
  jcs_peer.py sha256 IN OUT   each line of IN is hex data; OUT gets its SHA-256 (hex)
  jcs_peer.py chain IN OUT    IN is `kilntally store dump --ledger --json` output (one record per line, the record's
                              JSON text in "body"); OUT gets, per record, "<seq> chained <hash> ok" or
                              "<seq> chained <hash> <what is wrong>" or "<seq> unchained"
  jcs_peer.py seal IN OUT     IN is one line "SEED COUNT"; OUT gets COUNT records (tickets, shift reports, events)
                              sealed into a chain here, one JSON text per line, for the Swift side to store and verify

Exits non-zero on any failure of its own (a missing package, unreadable input), so a test fails rather than skips.
"""
import hashlib
import json
import random
import sys

import rfc8785

GENESIS = "0" * 64
CHAINED_SCHEMAS = ("kilntally.ticket/", "kilntally.shift-report/")


def lines(path):
    with open(path, "rb") as f:
        data = f.read()
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


def record_hash(record):
    content = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(rfc8785.dumps(content)).hexdigest()


def is_chained(record):
    if "hash" in record or "prev_hash" in record:
        return True
    schema = record.get("schema")
    return isinstance(schema, str) and schema.startswith(CHAINED_SCHEMAS)


def jcs(inp, out):
    with open(out, "w") as f:
        for line in lines(inp):
            try:
                f.write(rfc8785.dumps(json.loads(bytes.fromhex(line.decode()))).hex() + "\n")
            except rfc8785.CanonicalizationError as e:
                f.write("error " + type(e).__name__ + "\n")


def sha256(inp, out):
    with open(out, "w") as f:
        for line in lines(inp):
            f.write(hashlib.sha256(bytes.fromhex(line.decode())).hexdigest() + "\n")


def chain(inp, out):
    previous = GENESIS
    with open(out, "w") as f:
        for line in lines(inp):
            entry = json.loads(line)
            record = json.loads(entry["body"])
            if not is_chained(record):
                f.write(f"{entry['seq']} unchained\n")
                continue
            computed = record_hash(record)
            problems = []
            if record.get("hash") != computed:
                problems.append("wrong-hash")
            if record.get("prev_hash") != previous:
                problems.append("broken-link")
            f.write(f"{entry['seq']} chained {computed} {','.join(problems) or 'ok'}\n")
            previous = record.get("hash", computed)


def seal(seed, count, out):
    rng = random.Random(seed)
    previous = GENESIS
    materials = ["MSW", "RDF", "municipal sludge", "Müll", "生活垃圾", "\u2028sep", "emoji \U0001F69B"]
    with open(out, "wb") as f:
        for n in range(count):
            kind = rng.choice(["ticket", "shift-report", "event"])
            if kind == "event":
                record = {"schema": "kilntally.event/1", "id": f"E-{n}", "kind": "device_down",
                          "device": f"bw{rng.randint(1, 3)}", "at": f"2026-11-23T0{rng.randint(0, 9)}:00:00+08:00"}
            elif kind == "ticket":
                gross = rng.randint(20_000_000, 40_000_000)  # grams
                tare = rng.randint(10_000_000, 15_000_000)
                record = {"schema": "kilntally.ticket/1", "id": f"T-{n:05d}", "material": rng.choice(materials),
                          "vehicle": f"浙A·{rng.randint(10000, 99999)}", "gross_kg": f"{gross // 1000}.{gross % 1000:03d}",
                          "tare_kg": f"{tare // 1000}.{tare % 1000:03d}",
                          "net_kg": f"{(gross - tare) // 1000}.{(gross - tare) % 1000:03d}",
                          "flags": ["N"], "revision": 0, "voided": False, "operator": None}
            else:
                record = {"schema": "kilntally.shift-report/1", "id": f"2026-11-23/{'ABC'[n % 3]}#{n}",
                          "revision": rng.randint(0, 2), "crew": "甲",
                          "streams": [{"name": "msw-calciner", "fed_t": f"{rng.randint(0, 400)}.{rng.randint(0, 999999):06d}",
                                       "coverage_ppm": rng.randint(0, 1_000_000), "flag": rng.choice("NBFTDS")}
                                      for _ in range(rng.randint(0, 3))]}
            if kind != "event":
                record["prev_hash"] = previous
                record["hash"] = record_hash(record)
                previous = record["hash"]
            # Not canonical on purpose (Python's own key order, ASCII escapes): the hash is over the canonical form.
            f.write(json.dumps(record).encode() + b"\n")


def main():
    mode = sys.argv[1]
    if mode == "jcs":
        jcs(sys.argv[2], sys.argv[3])
    elif mode == "sha256":
        sha256(sys.argv[2], sys.argv[3])
    elif mode == "chain":
        chain(sys.argv[2], sys.argv[3])
    elif mode == "seal":
        seed, count = lines(sys.argv[2])[0].split()
        seal(int(seed), int(count), sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
