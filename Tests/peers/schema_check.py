#!/usr/bin/env python3
"""Checks kilntally's MQTT payloads against the JSON Schemas in schemas/ and the AsyncAPI document in asyncapi/, with
code nobody here wrote: `jsonschema` (Draft 2020-12, format checking on: `rfc3339-validator` makes "date-time" real)
and PyYAML.

Usage (run with the project venv's interpreter):
  schema_check.py validate NAME FILE        validates FILE — one JSON document, or JSON lines (one document a line) —
                                            against schema NAME (`status`, `readings`, `ticket`, `shift-report`,
                                            `event`, `shift-current`, or `auto`: by each document's "schema" field);
                                            prints "ok N" or the first error, and exits 1 when a document is invalid
  schema_check.py batch IN OUT              IN has one "NAME<TAB>JSON" a line; OUT gets one line for each:
                                            "ok" or "invalid <where>: <why>" (the best-matching error)
  schema_check.py schemas [DIR] OUT         checks every schemas/*.schema.json (or DIR's): a valid 2020-12 schema and strict (every
                                            object schema closed with additionalProperties false and a required list,
                                            every $ref resolving, every $def used, same-named $defs identical in every
                                            file); OUT gets "<file> ok optional=<pointer>,..." (the properties that
                                            are not required) or "<file> problem: ..." lines
  schema_check.py examples ASYNCAPI OUT     validates every example of every message of the AsyncAPI document against
                                            the schema file its payload references, and recomputes the hash of chained
                                            records (rfc8785 + hashlib); OUT gets "<message>/<example> ok" or
                                            "<message>/<example> invalid ..." or "problem: ..." lines
  schema_check.py channels ASYNCAPI OUT     OUT gets one line per channel: "<address>\\tqos=<q>\\tretain=<r>\\tschema=<file>"
                                            (from the send operation's mqtt binding and the message's payload)
  schema_check.py topics ASYNCAPI IN OUT    IN has one concrete topic a line; OUT gets, for each, the address of the
                                            channel it belongs to, or "unmatched"

Exits non-zero on any failure of its own (a missing package, unreadable input), so a test fails rather than skips.
"""
import copy
import hashlib
import json
import os
import re
import sys

import jsonschema
import rfc3339_validator  # noqa: F401  (imported so a missing package fails here: jsonschema would skip date-time)
import rfc8785
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMAS = os.path.join(ROOT, "schemas")
META = "https://json-schema.org/draft/2020-12/schema"
CHAINED = ("kilntally.ticket/", "kilntally.shift-report/")


# --- schemas -------------------------------------------------------------------------------------------------------

def schema_path(name):
    return os.path.join(SCHEMAS, f"kilntally.{name}.schema.json")


def name_of(document):
    """`kilntally.shift-report/1` -> `shift-report`."""
    schema = document.get("schema") if isinstance(document, dict) else None
    m = re.fullmatch(r"kilntally\.([a-z-]+)/[0-9]+", schema or "")
    return m.group(1) if m else None


_validators = {}


def validator(name_or_path):
    path = name_or_path if name_or_path.endswith(".json") else schema_path(name_or_path)
    if path not in _validators:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
        Draft202012Validator.check_schema(schema)
        _validators[path] = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return _validators[path]


def where(error):
    out = "$"
    for p in error.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def first_error(name, document):
    """None when valid, else one line saying where and why."""
    if name == "auto":
        name = name_of(document)
        if name is None or not os.path.exists(schema_path(name)):
            return "$.schema: no schema file for this document"
    error = best_match(validator(name).iter_errors(document))
    if error is None:
        return None
    message = " ".join(error.message.split())
    if len(message) > 300:
        message = message[:300] + "…"
    return f"{where(error)}: {message}"


def read_documents(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def validate(name, path):
    documents = read_documents(path)
    for n, document in enumerate(documents, 1):
        error = first_error(name, document)
        if error:
            print(f"document {n}: {error}")
            sys.exit(1)
    print(f"ok {len(documents)}")


def batch(inp, out):
    with open(inp, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    with open(out, "w", encoding="utf-8") as f:
        for line in lines:
            name, text = line.split("\t", 1)
            try:
                document = json.loads(text)
            except json.JSONDecodeError as e:
                f.write(f"invalid JSON: {e}\n")
                continue
            error = first_error(name, document)
            f.write("ok\n" if error is None else f"invalid {error}\n")


# --- strictness ----------------------------------------------------------------------------------------------------

APPLICATORS_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")
APPLICATORS_ONE = ("items", "contains", "not", "if", "then", "else", "propertyNames", "unevaluatedItems")


def is_object_schema(s):
    t = s.get("type")
    return t == "object" or (isinstance(t, list) and "object" in t)


def strictness(schema):
    """(problems, optional property pointers) of one schema document."""
    problems, optional, refs = [], [], set()
    defs = schema.get("$defs", {})

    def walk(s, pointer, declared):
        # `declared`: the property names of the object schema a conditional (if/then/allOf/...) constrains.
        if not isinstance(s, dict):
            if s is True:  # `false` is a legitimate "nothing"; `true` would accept anything
                problems.append(f"{pointer or '/'}: `true` accepts anything")
            return
        if "$ref" in s:
            ref = s["$ref"]
            if not ref.startswith("#/$defs/") or ref[len("#/$defs/"):] not in defs:
                problems.append(f"{pointer}: $ref {ref} does not resolve to a $def of this file")
            refs.add(ref[len("#/$defs/"):])
        if s.get("type") == "array" or (isinstance(s.get("type"), list) and "array" in s["type"]):
            if "items" not in s:
                problems.append(f"{pointer}: an array without items")
        properties = s.get("properties")
        if is_object_schema(s):
            if "patternProperties" in s or "unevaluatedProperties" in s:
                problems.append(f"{pointer}: patternProperties/unevaluatedProperties (use properties)")
            if properties is not None:
                if s.get("additionalProperties") is not False:
                    problems.append(f"{pointer or '/'}: an object with properties but without additionalProperties: false")
                required = s.get("required")
                if not required:
                    problems.append(f"{pointer or '/'}: an object without a required list")
                else:
                    for r in required:
                        if r not in properties:
                            problems.append(f"{pointer}: required {r} is not a declared property")
                for p in properties:
                    if p not in (required or []):
                        optional.append(f"{pointer}/properties/{p}")
                declared = set(properties)
            else:
                # A map (e.g. event attributes): every value and every key constrained.
                if not isinstance(s.get("additionalProperties"), dict) or "propertyNames" not in s:
                    problems.append(f"{pointer}: an object without properties must be a map "
                                    "(additionalProperties a schema, and propertyNames)")
        elif properties is not None:
            # Properties in a conditional must be ones the enclosing object declares.
            for p in properties:
                if declared is None or p not in declared:
                    problems.append(f"{pointer}: conditional names {p}, which the enclosing object does not declare")
        for k in ("required",):
            if k in s and not is_object_schema(s) and declared is not None:
                for r in s[k]:
                    if r not in declared:
                        problems.append(f"{pointer}: requires undeclared {r}")
        for k, v in (properties or {}).items():
            walk(v, f"{pointer}/properties/{k}", None)
        if isinstance(s.get("additionalProperties"), dict):
            walk(s["additionalProperties"], f"{pointer}/additionalProperties", None)
        for k in APPLICATORS_LIST:
            for n, sub in enumerate(s.get(k, [])):
                walk(sub, f"{pointer}/{k}/{n}", declared)
        for k in APPLICATORS_ONE:
            if k in s:
                walk(s[k], f"{pointer}/{k}", declared if k in ("not", "if", "then", "else") else None)
        for k, sub in s.get("dependentSchemas", {}).items():
            walk(sub, f"{pointer}/dependentSchemas/{k}", declared)
        for k, names in s.get("dependentRequired", {}).items():
            for n in [k] + names:
                if declared is None or n not in declared:
                    problems.append(f"{pointer}: dependentRequired names undeclared {n}")

    walk({k: v for k, v in schema.items() if k != "$defs"}, "", None)
    for name, sub in defs.items():
        walk(sub, f"/$defs/{name}", None)
    # A $def used only by other $defs counts as used.
    for name in defs:
        if name not in refs:
            problems.append(f"/$defs/{name} is never used")
    return problems, optional


def schemas(directory, out):
    files = sorted(f for f in os.listdir(directory) if f.endswith(".schema.json"))
    variants = {}  # $def name -> {canonical JSON of one version -> [files]}
    problems_of = {}
    for file in files:
        with open(os.path.join(directory, file), encoding="utf-8") as f:
            schema = json.load(f)
        problems = []
        try:
            Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            problems.append(f"not a valid 2020-12 schema: {' '.join(e.message.split())}")
        if schema.get("$schema") != META:
            problems.append(f"$schema is {schema.get('$schema')!r}, not {META}")
        title = schema.get("title", "")
        m = re.fullmatch(r"kilntally\.([a-z-]+)/([0-9]+)", title)
        if not m or file != f"kilntally.{m.group(1)}.schema.json":
            problems.append(f"title {title!r} does not name the file's payload")
        elif schema.get("properties", {}).get("schema") != {"const": title}:
            problems.append("the schema property is not a const of the title")
        if not is_object_schema(schema):
            problems.append("the payload is not an object schema")
        found, optional = strictness(schema)
        problems += found
        for name, sub in schema.get("$defs", {}).items():
            variants.setdefault(name, {}).setdefault(json.dumps(sub, sort_keys=True), []).append(file)
        problems_of[file] = (problems, optional)
    # A $def shared by several files must be the same everywhere: the files that differ from the most common
    # version (all of them, on a tie) are reported.
    for name, versions in variants.items():
        if len(versions) < 2:
            continue
        ranked = sorted(versions.values(), key=len, reverse=True)
        tie = len(ranked[0]) == len(ranked[1])
        for holders in ranked if tie else ranked[1:]:
            others = sorted(f for v in ranked if v is not holders for f in v)
            for file in holders:
                problems_of[file][0].append(f"$defs/{name} differs from the one in {', '.join(others)}")
    lines = []
    for file in files:
        problems, optional = problems_of[file]
        if problems:
            lines += [f"{file} problem: {p}" for p in problems]
        else:
            lines.append(f"{file} ok optional={','.join(sorted(optional))}")
    with open(out, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


# --- AsyncAPI ------------------------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: an example's "2026-11-23" stays the string the payload has."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}


def load_asyncapi(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)


def local_ref(doc, ref):
    if not ref.startswith("#/"):
        raise ValueError(f"not a local $ref: {ref}")
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def resolve(doc, node):
    while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/"):
        node = local_ref(doc, node["$ref"])
    return node


def payload_file(asyncapi_path, message):
    """The schema file a message's payload references (AsyncAPI 3 multi-format schema, or a bare $ref)."""
    payload = message.get("payload", {})
    ref = payload.get("schema", {}).get("$ref") if "schema" in payload else payload.get("$ref")
    if not ref or ref.startswith("#"):
        raise ValueError(f"message {message.get('name')} does not reference a schema file")
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(asyncapi_path)), ref))


def channels_of(doc, asyncapi_path):
    """[(address, qos, retain, schema file)] from the channels and their send operations."""
    out = []
    operations = doc.get("operations", {})
    for channel_id, channel in doc.get("channels", {}).items():
        channel = resolve(doc, channel)
        ops = [o for o in operations.values() if o.get("channel", {}).get("$ref") == f"#/channels/{channel_id}"]
        if len(ops) != 1:
            raise ValueError(f"channel {channel_id}: {len(ops)} operations (expected one send)")
        op = ops[0]
        if op.get("action") != "send":
            raise ValueError(f"channel {channel_id}: the operation is not a send")
        mqtt = op.get("bindings", {}).get("mqtt", {})
        if "qos" not in mqtt or "retain" not in mqtt:
            raise ValueError(f"channel {channel_id}: no mqtt qos/retain binding")
        messages = [resolve(doc, m) for m in channel.get("messages", {}).values()]
        if len(messages) != 1:
            raise ValueError(f"channel {channel_id}: {len(messages)} messages (expected one)")
        file = os.path.relpath(payload_file(asyncapi_path, messages[0]), ROOT)
        out.append((channel["address"], mqtt["qos"], mqtt["retain"], file))
    return out


def channels(asyncapi_path, out):
    doc = load_asyncapi(asyncapi_path)
    with open(out, "w", encoding="utf-8") as f:
        for address, qos, retain, file in channels_of(doc, asyncapi_path):
            f.write(f"{address}\tqos={qos}\tretain={str(retain).lower()}\tschema={file}\n")


def examples(asyncapi_path, out):
    doc = load_asyncapi(asyncapi_path)
    lines = []
    messages = doc.get("components", {}).get("messages", {})
    if not messages:
        lines.append("problem: no messages in components")
    for key, message in messages.items():
        try:
            file = payload_file(asyncapi_path, message)
        except ValueError as e:
            lines.append(f"problem: {e}")
            continue
        if not os.path.exists(file):
            lines.append(f"problem: message {key}: {file} does not exist")
            continue
        cases = message.get("examples", [])
        if not cases:
            lines.append(f"problem: message {key} has no example")
        for n, example in enumerate(cases):
            label = f"{key}/{example.get('name', n)}"
            if "payload" not in example:
                lines.append(f"{label} invalid: no payload")
                continue
            payload = example["payload"]
            error = first_error(file, payload)
            if error is None and isinstance(payload, dict) and str(payload.get("schema", "")).startswith(CHAINED):
                content = {k: v for k, v in payload.items() if k != "hash"}
                computed = hashlib.sha256(rfc8785.dumps(content)).hexdigest()
                if computed != payload.get("hash"):
                    error = f"$.hash: the record hashes to {computed}"
            lines.append(f"{label} ok" if error is None else f"{label} invalid {error}")
    try:
        channels_of(doc, asyncapi_path)
    except (ValueError, KeyError) as e:
        lines.append(f"problem: {e}")
    with open(out, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def topics(asyncapi_path, inp, out):
    doc = load_asyncapi(asyncapi_path)
    patterns = []
    for address, *_ in channels_of(doc, asyncapi_path):
        rx = "".join("[^/+#]+" if part.startswith("{") else re.escape(part)
                     for part in re.split(r"(\{[^}]+\})", address))
        patterns.append((address, re.compile(rx)))
    with open(inp, encoding="utf-8") as f:
        concrete = [line.rstrip("\n") for line in f if line.strip()]
    with open(out, "w", encoding="utf-8") as f:
        for topic in concrete:
            matches = [a for a, rx in patterns if rx.fullmatch(topic)]
            f.write((matches[0] if len(matches) == 1 else "unmatched" if not matches else "ambiguous") + "\n")


def main():
    args = sys.argv[1:]
    mode = args[0] if args else ""
    if mode == "validate" and len(args) == 3:
        validate(args[1], args[2])
    elif mode == "batch" and len(args) == 3:
        batch(args[1], args[2])
    elif mode == "schemas" and len(args) in (2, 3):
        schemas(args[1] if len(args) == 3 else SCHEMAS, args[-1])
    elif mode == "examples" and len(args) == 3:
        examples(args[1], args[2])
    elif mode == "channels" and len(args) == 3:
        channels(args[1], args[2])
    elif mode == "topics" and len(args) == 4:
        topics(args[1], args[2], args[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
