"""pytest wiring for the browser test: the e2e harness (tests/e2e/sb.py) on sys.path,
service logs attached to a failing test's report, and measurements (timings, the
screenshot's path) in the terminal summary."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import sb  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for c in list(sb.Cluster.running):
            c.failed = True
            rep.sections.append((f"service logs of cluster {c.name} ({c.dir})",
                                 c.log_tails()))


def pytest_terminal_summary(terminalreporter):
    if sb.NOTES:
        terminalreporter.section("switchboard measurements")
        for line in sb.NOTES:
            terminalreporter.write_line(line)
