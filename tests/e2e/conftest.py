"""pytest wiring for the end-to-end suites.

`cluster` is module-scoped: each test module gets its own nats-server and binaries on
free ports (options from the module's CLUSTER_OPTIONS dict), seeded with the seed guide's
users 1 "Alice", 2 "Bob" and 3 "Carol". Tests that need a clean inbox take fresh users
from `cluster.new_users()`. Whatever happens, every process is stopped at module end;
when a test fails, the tail of every service log is attached to its report.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sb  # noqa: E402

SEED_USERS = [(1, "Alice"), (2, "Bob"), (3, "Carol")]


@pytest.fixture(scope="module")
def cluster(request):
    opts = getattr(request.module, "CLUSTER_OPTIONS", {})
    c = sb.Cluster(request.module.__name__, **opts)
    try:
        try:
            c.start()
            for uid, name in SEED_USERS:
                c.add_user(uid, name)
        except Exception as e:
            c.failed = True
            # one clear report instead of the same setup error repeated for every test
            pytest.exit(f"cluster for {c.name} failed to start: {e}\n"
                        f"logs kept in {c.dir}\n{c.log_tails()}", returncode=1)
        yield c
    finally:
        reports = c.stop()
    # A sanitizer report in any service log fails the module (at teardown), even when
    # every assertion passed: `make test-asan` runs these suites.
    assert not reports, f"sanitizer reports (logs kept in {c.dir}):\n" + "\n\n".join(
        f"[{name}]\n{text}" for name, text in reports)


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
