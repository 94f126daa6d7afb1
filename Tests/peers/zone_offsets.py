#!/usr/bin/env python3
"""UTC offsets by Python's zoneinfo, an implementation of TZif and POSIX TZ rules nobody here wrote, for the
shift calendar's time-zone test. Reads "ZONE SECONDS" lines from IN and writes "ZONE SECONDS OFFSET" lines to OUT,
OFFSET being the zone's UTC offset in seconds at that UTC second, from the system's /usr/share/zoneinfo."""
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

zones = {}
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
    for line in src:
        name, seconds = line.split()
        zone = zones.get(name) or zones.setdefault(name, ZoneInfo(name))
        offset = datetime.fromtimestamp(int(seconds), timezone.utc).astimezone(zone).utcoffset()
        out.write(f"{name} {seconds} {int(offset.total_seconds())}\n")
