"""
Fixtures: one PostgreSQL 15 cluster per test session (`pg`) and a factory
for pgtenant processes (`pgtenant`), each with its own ini, auth_file and
log. At teardown every pgtenant must still be alive (a crash fails the
test), is stopped with SIGTERM (SIGKILL after 10 s), and its log is attached
to the report of a failed test.
"""

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import pgt  # noqa: E402

TEST_TIMEOUT = int(os.environ.get("PGTENANT_TEST_TIMEOUT", "120"))


@pytest.fixture(scope="session")
def pg():
    server = pgt.PgServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pgbench_acme(pg):
    """pgbench tables (scale 1) in database acme, loaded directly as app."""
    return pgt.pgbench_init(pg, "acme")


@pytest.fixture
def pgtenant(pg, tmp_path, request):
    """Factory: pgtenant(globals_={...}, backends={...}, tenants={...},
    users={...}, args=[...], start=True) -> pgt.Pgtenant.

    globals_ are merged over test defaults; backends/tenants are merged over
    `[backend main]` (the session's PostgreSQL, dbname appdb, user app) and
    database-mode tenants acme and globex; a value of None removes one."""
    started = []
    request.node._pgtenants = started

    def factory(globals_=None, backends=None, tenants=None, users=None, args=None, start=True):
        workdir = os.path.join(str(tmp_path), f"pgtenant{len(started)}")
        p = pgt.Pgtenant(pg, workdir, globals_, backends, tenants, users, args)
        started.append(p)
        if start:
            p.start()
        return p

    yield factory

    problems = []
    for p in started:
        if p.proc is None:
            continue
        if not p.expect_exit and not p.alive():
            problems.append(f"pgtenant on port {p.port} died during the test "
                            f"(exit code {p.proc.returncode}).\nlog:\n{p.log()}")
        rc = p.stop()
        if not p.expect_exit and rc is not None and rc not in (0, -signal.SIGTERM):
            problems.append(f"pgtenant on port {p.port} exited with {rc} after SIGTERM.\n"
                            f"log:\n{p.log()}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for i, p in enumerate(getattr(item, "_pgtenants", [])):
            rep.sections.append((f"pgtenant log #{i} (port {p.port})", p.log()))
        server = getattr(item, "funcargs", {}).get("pg")
        if server is not None and server.dir:
            rep.sections.append(("postgresql log (tail)", pgt.read_tail(server.logfile, 3000)))


class PerTestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _per_test_timeout():
    """Fails a hung test instead of hanging the whole run (psycopg waits in
    Python, so the alarm interrupts it)."""

    def on_alarm(signum, frame):
        raise PerTestTimeout(f"test took more than {TEST_TIMEOUT}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
