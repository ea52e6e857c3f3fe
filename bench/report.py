#!/usr/bin/env python3
"""bench/report.py: gather one bench run's raw results into bench/results/.

Reads the load generator's JSON results listed in <dir>/manifest.tsv (name, kind,
target, offered rate; target "bus" is sb-natsbench --rate, read as a chat-rate row)
plus sqlite.json, nats.json, nats-asap.json and wake.json, and writes:
  latest.json  every result of the run, with the machine and build it ran on
  latest.md    the tables (the README and docs/benchmarks.md quote them)
  latency.dat  end-to-end latency against offered load, for bench/latency.gp
Only the standard library: it runs wherever the bench runs.
"""

import argparse
import json
import os
import platform
import statistics
import time


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ms(us):
    return "–" if us is None else f"{us / 1000:.2f}"


def num(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)


STEAL_BANDS = ((0, 5), (5, 15), (15, 30), (30, None))

# chat-rate rows in this order: the bound, the bus alone, Switchboard
TARGET_ORDER = {"relay": 0, "bus": 1, "switchboard": 2}


def target_key(target):
    return (TARGET_ORDER.get(target, len(TARGET_ORDER)), target)


def bus_as_rate(res):
    """sb-natsbench --rate's result in a chat-rate row's shape: its e2e is request →
    reply through nats-server; requester and responder share one process, whose CPU
    stands in the loadgen column."""
    cpu = dict(res.get("cpu") or {})
    cpu["loadgen_pct"] = cpu.get("self_pct")
    return {**res, "e2e_us": res.get("latency_us") or {},
            "rate": {"delivered_per_s": res.get("per_s")},
            "messages": {"sent": res.get("requests"), "delivered": res.get("replies"),
                         "lost": res.get("lost")},
            "cpu": cpu}


def steal_bands(rate_groups, p99, steal):
    """For rates run many times (`make bench-steal`): the median e2e p99 of the runs in
    each band of steal, relay and Switchboard side by side."""
    md = []
    for offered in sorted({o for o, _ in rate_groups}):
        groups = {t: g for (o, t), g in rate_groups.items() if o == offered}
        if max(len(g) for g in groups.values()) < 6:
            continue
        if not md:
            md.append("**e2e p99 against steal** (rates run six times or more; the median "
                      "p99 of the runs whose steal fell in each band, and how many there were)")
            md.append("")
            md.append("| offered/s | target | runs | "
                      + " | ".join(f"steal {lo}–{hi} %" if hi else f"steal ≥ {lo} %"
                                   for lo, hi in STEAL_BANDS)
                      + " | all runs |")
            md.append("|" + "---|" * (4 + len(STEAL_BANDS)))
        for target in sorted(groups, key=target_key):
            runs = [(p99(r), steal(r)) for r in groups[target]
                    if p99(r) is not None and steal(r) is not None]
            cells = []
            for lo, hi in STEAL_BANDS:
                band = [p for p, st in runs if st >= lo and (hi is None or st < hi)]
                cells.append(f"{ms(statistics.median(band))} ({len(band)})" if band else "–")
            md.append(f"| {offered:,} | {target} | {len(runs)} | " + " | ".join(cells)
                      + f" | {ms(statistics.median(p for p, _ in runs)) if runs else '–'} |")
    if md:
        md.append("")
    return md


def cpu_of(result, names):
    """Summed CPU % over the run window of the watched processes called `names`."""
    total, seen = 0.0, False
    for p in result.get("cpu", {}).get("processes", []):
        if any(p["name"].startswith(n) for n in names) and p.get("cpu_pct") is not None:
            total += p["cpu_pct"]
            seen = True
    return total if seen else None


def server_cpu(result, target):
    if target == "relay":
        return cpu_of(result, ["relay"])
    return cpu_of(result, ["gateway", "chat-svc", "auth-svc", "nats", "notify-svc"])


def halt_poll_note(m):
    if "guest_halt_poll_ns" not in m:
        return ""
    ns = m["guest_halt_poll_ns"]
    return (f"Guest halt polling {ns} ns ({m.get('cpuidle_driver', '?')}"
            f"{': an idle virtual CPU halts at once' if ns == '0' else ''}). ")


def machine():
    info = {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/loadavg") as f:
            info["loadavg_at_report"] = f.read().split()[:3]
    except OSError:
        pass
    # how an idle virtual CPU waits: on a KVM guest with cpuidle-haltpoll, 0 ns of
    # polling means every wake-up of an idle CPU goes through the host
    for key, path in (("cpuidle_driver", "/sys/devices/system/cpu/cpuidle/current_driver"),
                      ("guest_halt_poll_ns", "/sys/module/haltpoll/parameters/guest_halt_poll_ns")):
        try:
            with open(path) as f:
                info[key] = f.read().strip()
        except OSError:
            pass
    return info


def soak_table(result, tsv):
    """RSS of every server over the soak: the second minute (after warm-up) against the
    last (medians of the 10 s samples), and the largest sample."""
    with open(tsv) as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    head, rows = rows[0], [[int(x) for x in r] for r in rows[1:] if len(r) == len(rows[0])]
    m = result.get("messages", {})
    secs = (result.get("rate") or {}).get("seconds")
    length = f"{secs:.0f} s of " if secs else ""
    out = [f"**soak** ({length}chat-rate at "
           f"{result.get('params', {}).get('rate')}/s plus a broadcast a second: "
           f"{num(m.get('sent'))} sent, {num(m.get('delivered'))} delivered, "
           f"{m.get('lost')} lost; RSS sampled every 10 s)", "",
           "| process | second minute (MiB) | last minute (MiB) | largest (MiB) | growth |",
           "|---|---|---|---|---|"]
    if len(rows) < 18:
        return out[:1] + ["", "(too few samples for a soak table)", ""]
    for i, name in enumerate(head[1:], start=1):
        first = statistics.median(r[i] for r in rows[6:12])
        last = statistics.median(r[i] for r in rows[-6:])
        if not first:
            continue
        out.append(f"| {name} | {first / 1024:.1f} | {last / 1024:.1f} | "
                   f"{max(r[i] for r in rows) / 1024:.1f} | {100 * (last - first) / first:+.1f} % |")
    out.append("")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--git", default="unknown")
    ap.add_argument("--quick", default="0")
    ap.add_argument("--build-type", default="")
    ap.add_argument("--gateways", default="1")
    ap.add_argument("--pairs", default="")
    ap.add_argument("--reuse-port", default="1")
    ap.add_argument("--busy-before", default="")
    ap.add_argument("--soak-rss", default="")
    ap.add_argument("--nats-gomaxprocs", default="default")
    a = ap.parse_args()

    runs = []
    with open(os.path.join(a.dir, "manifest.tsv")) as f:
        for line in f:
            name, kind, target, rate = line.rstrip("\n").split("\t")
            res = load(os.path.join(a.dir, name + ".json"))
            if res is not None and target == "bus":
                res = bus_as_rate(res)
            if res is not None:
                runs.append({"name": name, "kind": kind, "target": target,
                             "offered": int(rate), "result": res})

    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": a.git,
        "quick": a.quick == "1",
        "build_type": a.build_type,
        "gateways": int(a.gateways),
        "reuse_port_shared": a.reuse_port == "1",
        "machine_busy_before_pct": int(a.busy_before) if a.busy_before.isdigit() else None,
        "nats_gomaxprocs": a.nats_gomaxprocs,
        "machine": machine(),
        "sqlite": load(os.path.join(a.dir, "sqlite.json")),
        "nats": load(os.path.join(a.dir, "nats.json")),
        "nats_send_asap": load(os.path.join(a.dir, "nats-asap.json")),
        "wake": load(os.path.join(a.dir, "wake.json")),
        "runs": runs,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump(doc, f, indent=1)

    md = []
    m = doc["machine"]
    md.append(f"Run {doc['when']} at `{a.git}` ({a.build_type} build"
              f"{', quick' if doc['quick'] else ''}) on {m.get('cpus')} × "
              f"{m.get('cpu_model', '?')}; load generator on the same machine; nats-server "
              f"with GOMAXPROCS={a.nats_gomaxprocs}. "
              f"{halt_poll_note(m)}"
              f"{a.pairs} sender/receiver pairs. Latencies in ms. Machine busy before the "
              f"run: {a.busy_before or '?'} % of one core; \"machine CPU %\" is every process "
              f"on the machine during each run (100 % = one core).")
    md.append("")

    # chat-rate: relay and Switchboard side by side at each offered rate
    rate_runs = [r for r in runs if r["kind"] == "chat-rate"]
    # repeated runs of one (rate, target): the row shows the run of median e2e p99
    rate_groups = {}
    for r in rate_runs:
        rate_groups.setdefault((r["offered"], r["target"]), []).append(r)

    def p99(r):
        return (r["result"].get("e2e_us") or {}).get("p99")

    def steal(r):
        return (r["result"].get("cpu") or {}).get("machine_steal_pct")

    rate_shown = {}
    for key, group in rate_groups.items():
        ranked = sorted(group, key=lambda r: (p99(r) is None, p99(r) or 0))
        rate_shown[key] = ranked[(len(ranked) - 1) // 2]
    if rate_runs:
        md.append("**chat-rate** (open loop; e2e = send → chat_message, ack = send → "
                  "message_sent, timed from when each message was due)")
        md.append("")
        md.append("| offered/s | target | delivered/s | e2e p50 | e2e p99 | e2e p99.9 | "
                  "ack p50 | ack p99 | ack p99.9 | lost | unans. | dup | ooo | "
                  "server CPU % | loadgen CPU % | machine CPU % | steal % | "
                  "runs: e2e p99 (steal %) |")
        md.append("|" + "---|" * 18)
        for r in sorted(rate_shown.values(), key=lambda r: (r["offered"], target_key(r["target"]))):
            x = r["result"]
            e, k, msgs = x.get("e2e_us", {}), x.get("ack_us", {}), x.get("messages", {})
            group = rate_groups[(r["offered"], r["target"])]
            lost = sum((g["result"].get("messages") or {}).get("lost") or 0 for g in group)
            md.append(
                f"| {r['offered']:,} | {r['target']} | "
                f"{num(x.get('rate', {}).get('delivered_per_s'))} | "
                f"{ms(e.get('p50'))} | {ms(e.get('p99'))} | {ms(e.get('p999'))} | "
                f"{ms(k.get('p50'))} | {ms(k.get('p99'))} | {ms(k.get('p999'))} | "
                f"{msgs.get('lost', '–')} | {msgs.get('unanswered', '–')} | "
                f"{msgs.get('duplicated', '–')} | {msgs.get('out_of_order', '–')} | "
                f"{num(server_cpu(x, r['target']))} | "
                f"{num(x.get('cpu', {}).get('loadgen_pct'))} | "
                f"{num(x.get('cpu', {}).get('machine_busy_pct'))} | {num(steal(r))} | "
                f"{' / '.join(f'{ms(p99(g))} ({num(steal(g))})' for g in group)}"
                f"{f' (lost in all: {lost})' if len(group) > 1 else ''} |")
        md.append("")
        if any(len(g) > 1 for g in rate_groups.values()):
            md.append("Rates run more than once: the row is the run of median e2e p99; the "
                      "last column gives every run's p99, in the order run, with the "
                      "machine's steal time during it.")
        if any(t == "bus" for _, t in rate_groups):
            md.append("\"bus\": the services' bus alone (`sb-natsbench --rate`): one "
                      "request/reply through nats-server per message, through the services' "
                      "own bus I/O, with nothing stored, parsed or sent to a WebSocket; its "
                      "e2e is request → reply, and its loadgen CPU is that process's, "
                      "requester and echo responder together. Every chat message makes this "
                      "round trip: gateway → chat-svc, then chat-svc → gateway with its ack "
                      "and its delivery.")
        md.append("\"steal %\": time the hypervisor ran something else on this virtual "
                  "machine's CPUs while the run wanted them (100 % = one core); the latency "
                  "tail rises with it.")
        md.append("")
        md += steal_bands(rate_groups, p99, steal)

    max_runs = [r for r in runs if r["kind"] == "chat-max"]
    if max_runs:
        # repeated runs (same target, idle sockets and processes) are one row: the run
        # with the median delivered rate, and every run's rate beside it
        groups = {}
        for r in max_runs:
            key = (r["target"], r["offered"], r["result"].get("workers"))
            groups.setdefault(key, []).append(r)

        def delivered(r):
            return r["result"].get("rate", {}).get("delivered_per_s") or 0

        rows = []
        for key, rs in groups.items():
            rs = sorted(rs, key=delivered)
            rows.append((key, rs[(len(rs) - 1) // 2], statistics.median(delivered(r) for r in rs),
                         [delivered(r) for r in rs]))
        relay_best = max((med for key, _, med, _ in rows if key[0] == "relay"), default=0) or None
        md.append("**chat-max** (closed loop, 16 messages in flight per sender; "
                  "\"idle sockets\" = other sockets held open on the same server meanwhile; "
                  "delivered/s is the median of the runs, the other columns are that run's)")
        md.append("")
        md.append("| target | idle sockets | loadgen procs | delivered/s | runs | median of 1 s | "
                  "% of relay | e2e p50 | e2e p99 | ack p50 | ack p99 | lost | server CPU % | "
                  "loadgen CPU % | steal % |")
        md.append("|" + "---|" * 15)
        for (target, idle, workers), r, d, all_rates in rows:
            x = r["result"]
            rate = x.get("rate", {})
            pct = f"{100 * d / relay_best:.0f}" if d and relay_best else "–"
            md.append(
                f"| {target} | {idle:,} | {workers} | {num(d)} | "
                f"{', '.join(num(v) for v in all_rates)} | "
                f"{num(rate.get('delivered_per_s_median'))} | {pct} | "
                f"{ms(x.get('e2e_us', {}).get('p50'))} | {ms(x.get('e2e_us', {}).get('p99'))} | "
                f"{ms(x.get('ack_us', {}).get('p50'))} | {ms(x.get('ack_us', {}).get('p99'))} | "
                f"{sum(rr['result'].get('messages', {}).get('lost', 0) for rr in groups[(target, idle, workers)])} | "
                f"{num(server_cpu(x, target))} | "
                f"{num(x.get('cpu', {}).get('loadgen_pct'))} | "
                f"{num(x.get('cpu', {}).get('machine_steal_pct'))} |")
        md.append("")

    raw = []
    if doc["sqlite"]:
        for s in doc["sqlite"].get("runs", []):
            raw.append(f"| SQLite insert, {s['rows_per_txn']} row(s)/txn (WAL, synchronous=FULL) | "
                       f"{num(s['rows_per_s'])} rows/s | {num(s['commits_per_s'])} commits/s, "
                       f"txn p50 {ms(s['txn_us']['p50'])} ms, p99 {ms(s['txn_us']['p99'])} ms |")
    for label, n in (("", doc["nats"]), (", send-asap", doc["nats_send_asap"])):
        if not n:
            continue
        if n.get("sync"):
            s = n["sync"]
            raw.append(f"| NATS request/reply, one at a time{label} | {num(s['per_s'])} req/s | "
                       f"RTT p50 {ms(s['latency_us']['p50'])} ms, "
                       f"p99 {ms(s['latency_us']['p99'])} ms |")
        if n.get("async"):
            s = n["async"]
            raw.append(f"| NATS request/reply, {s.get('window')} in flight{label} | "
                       f"{num(s['per_s'])} req/s | "
                       f"p50 {ms(s['latency_us']['p50'])} ms, p99 {ms(s['latency_us']['p99'])} ms |")
    for w in (doc["wake"] or {}).get("runs", []):
        where = ("on two CPUs" if w.get("mode") == "across" else "on one CPU")
        lat = w.get("round_trip_ns") or {}

        def us(v):
            return "–" if v is None else f"{v / 1000:.1f}"
        raw.append(f"| hand-off between two processes (one byte there and back over a "
                   f"socketpair), {where} | {num(w.get('per_s'))} round trips/s | "
                   f"p50 {us(lat.get('p50'))} µs, p99 {us(lat.get('p99'))} µs, steal "
                   f"{num(w.get('machine_steal_pct'))} % |")
    if raw:
        md.append("**raw stages**")
        md.append("")
        md.append("| stage | rate | detail |")
        md.append("|---|---|---|")
        md += raw
        md.append("")

    idle = [r for r in runs if r["kind"] == "idle"]
    if idle:
        how = ("sharing one port with --reuse-port" if a.reuse_port == "1" else
               "on one port each (--reuse-port could not share the port)")
        md.append(f"**idle** (users × (chat + notification) sockets, {a.gateways} gateway "
                  f"process(es) {how})")
        md.append("")
        md.append("| run | sockets | connected | failed | dropped while held | connects/s | "
                  "connect p50 | connect p99 | gateway RSS before → loaded (MiB) | RSS per socket |")
        md.append("|---|---|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(idle, 1):
            x = r["result"]
            c, mem = x.get("connections", {}), x.get("memory", {})
            per = mem.get("rss_bytes_per_socket")
            before, loaded = mem.get("rss_kb_before"), mem.get("rss_kb_loaded")
            rss = (f"{before / 1024:.1f} → {loaded / 1024:.1f}"
                   if before is not None and loaded is not None else "–")
            md.append(f"| {i} | {c.get('planned')} | {c.get('connected')} | {c.get('failed')} | "
                      f"{c.get('dropped')} | {num(c.get('per_s'))} | {ms(c.get('connect_us', {}).get('p50'))} | "
                      f"{ms(c.get('connect_us', {}).get('p99'))} | {rss} | "
                      f"{'–' if per is None else f'{per / 1024:.1f} KiB'} |")
        md.append("")
        rates = sorted(r["result"].get("connections", {}).get("per_s") or 0 for r in idle)
        pers = sorted(r["result"].get("memory", {}).get("rss_bytes_per_socket") or 0 for r in idle)
        if len(idle) > 1:
            md.append(f"Median of the {len(idle)} runs (each on freshly started gateways): "
                      f"**{num(statistics.median(rates))} connects/s**, "
                      f"**{statistics.median(pers) / 1024:.1f} KiB** of gateway RSS per socket.")
            md.append("")

    fan = [r for r in runs if r["kind"] == "fanout"]
    if fan:
        md.append("**fanout** (one broadcast published on notify.send.json; time until that "
                  "share of the notification sockets had it; median of the rounds, worst in "
                  "brackets)")
        md.append("")
        md.append("| sockets | gateways | rounds | 50 % (ms) | 99 % (ms) | 100 % (ms) |")
        md.append("|---|---|---|---|---|---|")
        for r in fan:
            rounds = r["result"].get("rounds", [])

            def col(key):
                v = [x[key] for x in rounds if x.get(key) is not None]
                if len(v) < len(rounds) or not v:
                    missing = len(rounds) - len(v)
                    return f"not reached in {missing} round(s)" if missing else "–"
                return f"{statistics.median(v):.1f} ({max(v):.1f})"
            gws = sum(1 for p in r["result"].get("cpu", {}).get("processes", [])
                      if p.get("name") == "gateway")
            md.append(f"| {r['result'].get('connections', {}).get('connected')} | {gws or '–'} | "
                      f"{len(rounds)} | "
                      f"{col('t50_ms')} | {col('t99_ms')} | {col('t100_ms')} |")
        md.append("")

    stages = []
    for r in rate_runs:
        path = os.path.join(a.dir, f"stages-{r['offered']}.json")
        # the histograms were taken around the first run of each rate
        if r["target"] != "switchboard" or r is not rate_groups[(r["offered"], r["target"])][0] \
                or not os.path.exists(path):
            continue
        st = load(path) or {}
        bus = st.get('sb_gateway_bus_request_seconds{kind="chat_send"}')
        commit = st.get("sb_chat_commit_seconds")
        secs = (r["result"].get("rate") or {}).get("seconds") or 0
        e2e = r["result"].get("e2e_us", {})
        if not bus or not commit:
            continue
        stages.append(
            f"| {num(int(r['offered']))} | {ms(e2e.get('p50'))} / {ms(e2e.get('p99'))} | "
            f"{bus['mean_ms']:.2f} / ≤ {bus['p50_le_ms']:g} / ≤ {bus['p99_le_ms']:g} | "
            f"{num(commit['count'] / secs if secs else None)} | "
            f"{commit['mean_ms']:.2f} / ≤ {commit['p99_le_ms']:g} |")
    if stages:
        md.append("**where a message waits** (Switchboard's chat-rate runs; the services' own "
                  "histograms: the gateway's bus round trip to chat-svc and back, which holds "
                  "chat-svc's queue and group commit; chat-svc's commits, each one fsync; "
                  "\"≤ x\" is the upper bound of the histogram bucket)")
        md.append("")
        md.append("| offered/s | e2e p50 / p99 | bus round trip mean / p50 / p99 (ms) | "
                  "commits/s | commit mean / p99 (ms) |")
        md.append("|---|---|---|---|---|")
        md += stages
        md.append("")

    soak = [r for r in runs if r["kind"] == "soak"]
    if soak and a.soak_rss and os.path.exists(a.soak_rss):
        md += soak_table(soak[0]["result"], a.soak_rss)

    failed = [r["name"] for r in runs if r["result"].get("ok") is False]
    if failed:
        md.append("**Runs that did not end normally** (a failure, or cut short by the load "
                  "generator's --max-seconds; see its log): " + ", ".join(failed))
        md.append("")

    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write("\n".join(md))

    # latency against offered load, one line per rate
    by_rate = {}
    for r in rate_shown.values():
        e = r["result"].get("e2e_us", {})
        by_rate.setdefault(r["offered"], {})[r["target"]] = e
    with open(os.path.join(a.out, "latency.dat"), "w") as f:
        f.write("# offered  relay_p50_ms relay_p99_ms  sb_p50_ms sb_p99_ms  "
                "relay_p999_ms sb_p999_ms  bus_p50_ms bus_p99_ms\n")
        for rate in sorted(by_rate):
            rel, sb = by_rate[rate].get("relay", {}), by_rate[rate].get("switchboard", {})
            bus = by_rate[rate].get("bus", {})

            def v(d, k):
                return "NaN" if d.get(k) is None else f"{d[k] / 1000:.3f}"
            f.write(f"{rate} {v(rel, 'p50')} {v(rel, 'p99')} {v(sb, 'p50')} {v(sb, 'p99')} "
                    f"{v(rel, 'p999')} {v(sb, 'p999')} {v(bus, 'p50')} {v(bus, 'p99')}\n")


if __name__ == "__main__":
    main()
