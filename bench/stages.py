#!/usr/bin/env python3
"""Where a chat message's time goes, from the services' own /metrics histograms.

  stages.py snap OUT URL...      save the Prometheus text of each URL (one JSON file)
  stages.py delta BEFORE AFTER   per histogram series: count, mean and the p50 / p99 bucket
                                 bounds of what happened between the two snapshots (JSON)

bench/run.sh snaps the gateway's and chat-svc's /metrics around each Switchboard chat-rate
run: the gateway's bus round trip to chat-svc (sb_gateway_bus_request_seconds) and
chat-svc's group commits (sb_chat_commit_seconds) say which stage a message waits in.
"""

import json
import re
import sys
import urllib.request

LINE = re.compile(r'^(\w+)_(bucket|sum|count)(\{[^}]*\})? (\S+)$')


def parse(text):
    """{series: {"buckets": {le: count}, "sum": x, "count": n}} for every histogram."""
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        name, part, labels, value = m.groups()
        labels = labels or ""
        le = re.search(r'le="([^"]*)"', labels)
        key = name + re.sub(r',?le="[^"]*"', "", labels).replace("{}", "")
        h = out.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0})
        if part == "bucket" and le:
            h["buckets"][le.group(1)] = float(value)
        elif part == "sum":
            h["sum"] = float(value)
        elif part == "count":
            h["count"] = float(value)
    return {k: v for k, v in out.items() if v["buckets"]}


def quantile(buckets, q):
    """Upper bound (seconds) of the bucket holding quantile q; None when empty."""
    items = sorted(((float("inf") if le == "+Inf" else float(le)), n) for le, n in buckets.items())
    total = items[-1][1] if items else 0
    if total <= 0:
        return None
    for bound, n in items:
        if n >= q * total:
            return bound
    return None


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "snap":
        snaps = {}
        for url in sys.argv[3:]:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    snaps[url] = r.read().decode()
            except OSError as e:
                snaps[url] = ""
                print(f"stages: {url}: {e}", file=sys.stderr)
        with open(sys.argv[2], "w") as f:
            json.dump(snaps, f)
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "delta":
        before, after = (json.load(open(p)) for p in sys.argv[2:4])
        res = {}
        for url, text in after.items():
            old = parse(before.get(url, ""))
            for key, h in parse(text).items():
                o = old.get(key, {"buckets": {}, "sum": 0.0, "count": 0})
                n = h["count"] - o["count"]
                if n <= 0:
                    continue
                b = {le: c - o["buckets"].get(le, 0) for le, c in h["buckets"].items()}
                res[key] = {"count": int(n), "mean_ms": 1000 * (h["sum"] - o["sum"]) / n,
                            "p50_le_ms": 1000 * (quantile(b, 0.5) or 0),
                            "p99_le_ms": 1000 * (quantile(b, 0.99) or 0)}
        json.dump(res, sys.stdout, indent=1)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
