"""deploy/grafana-dashboard.json: a dashboard Grafana can import as it is.

Checked here: valid JSON with the fields an import needs, a Prometheus datasource
variable that every query uses (so it works whatever the datasource is called), unique
panel ids, a layout with no overlapping panels within the 24-column grid, and PromQL that
names only Switchboard metrics of the four services. That those metrics exist is checked
on the running services by test_native_stack.py.
"""
import json
import re

from deploylib import DASHBOARD

OWNERS = ("sb_gateway_", "sb_auth_", "sb_chat_", "sb_notify_")


def load():
    return json.loads(DASHBOARD.read_text())


def test_importable():
    d = load()
    for key in ("title", "uid", "panels", "schemaVersion", "templating", "time"):
        assert key in d, key
    ds = [v for v in d["templating"]["list"] if v["type"] == "datasource"]
    assert ds and ds[0]["query"] == "prometheus", ds


def test_panels_use_the_datasource_variable_and_do_not_overlap():
    d = load()
    ids, cells = set(), {}
    for p in d["panels"]:
        assert p["id"] not in ids, p["id"]
        ids.add(p["id"])
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, (p["title"], g)
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}" and t["expr"].strip(), p["title"]


def test_queries_name_switchboard_metrics():
    d = load()
    seen = set()
    for p in d["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            assert expr.count("(") == expr.count(")"), expr
            for m in re.findall(r"\b(sb_[a-z0-9_]+)", expr):
                assert m.startswith(OWNERS), m
                seen.add(m.split("_")[1])
    assert seen == {"gateway", "auth", "chat", "notify"}, seen
