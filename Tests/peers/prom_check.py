"""Parses a Prometheus text exposition with prometheus_client's own parser (code nobody here wrote) and prints one
line per sample: name{labels} value. Exits 1 with the parser's error when the text is not valid."""
import sys
from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1], encoding="utf-8").read()
try:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            print(f"{s.name}{{{labels}}} {float(s.value)!r}")
except Exception as e:  # the parser raises ValueError and friends on bad input
    print(f"invalid: {e}")
    sys.exit(1)
