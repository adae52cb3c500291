"""`make install` (SPEC §1): the binary, the man pages, the systemd unit with
the installed paths, the sysusers.d entry of its user, and the example
configuration, which a second install never overwrites. The installed binary
validates the installed example and serves clients."""

import os
import shutil
import subprocess

import psycopg
import pytest

import pgt

EXPECTED = [
    "etc/pgtenant/pgtenant.ini",
    "usr/bin/pgtenant",
    "usr/lib/systemd/system/pgtenant.service",
    "usr/lib/sysusers.d/pgtenant.conf",
    "usr/share/man/man1/pgtenant.1",
    "usr/share/man/man5/pgtenant.ini.5",
    "usr/share/man/man7/pgtenant-admin.7",
]


def make_install(destdir, *extra):
    res = pgt.run(["make", "-C", pgt.REPO, "install", f"DESTDIR={destdir}", "prefix=/usr",
                   "sysconfdir=/etc", *extra], timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def installed_files(destdir):
    return sorted(os.path.relpath(os.path.join(d, f), destdir)
                  for d, _, files in os.walk(destdir) for f in files)


def unit_settings(path):
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")):
                key, _, value = line.partition("=")
                settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture(scope="module")
def destdir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("destdir"))
    make_install(d)
    return d


def test_make_install_places_binary_man_pages_unit_and_example_config(destdir):
    assert installed_files(destdir) == EXPECTED
    assert os.access(os.path.join(destdir, "usr/bin/pgtenant"), os.X_OK)
    unit = unit_settings(os.path.join(destdir, "usr/lib/systemd/system/pgtenant.service"))
    assert unit["Type"] == ["simple"]
    assert unit["ExecStart"] == ["/usr/bin/pgtenant /etc/pgtenant/pgtenant.ini"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["User"] == ["pgtenant"] and unit["NoNewPrivileges"] == ["yes"]
    with open(os.path.join(destdir, "usr/lib/sysusers.d/pgtenant.conf")) as f:
        assert any(line.split()[:2] == ["u", "pgtenant"] for line in f)
    with open(os.path.join(pgt.REPO, "etc/pgtenant.ini")) as a, \
            open(os.path.join(destdir, "etc/pgtenant/pgtenant.ini")) as b:
        assert a.read() == b.read()


def test_make_install_keeps_an_existing_configuration(tmp_path):
    d = str(tmp_path / "root")
    make_install(d)
    ini = os.path.join(d, "etc/pgtenant/pgtenant.ini")
    with open(ini, "a") as f:
        f.write("; edited by the operator\n")
    with open(ini) as f:
        edited = f.read()
    res = make_install(d)
    assert "kept" in res.stdout
    with open(ini) as f:
        assert f.read() == edited
    assert installed_files(d) == sorted(EXPECTED + ["etc/pgtenant/pgtenant.ini.example"])


def test_unitdir_and_prefix_are_configurable(tmp_path):
    d = str(tmp_path / "root")
    res = pgt.run(["make", "-C", pgt.REPO, "install", f"DESTDIR={d}", "prefix=/opt/pgt",
                   "unitdir=/etc/systemd/system"], timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    files = installed_files(d)
    assert "etc/systemd/system/pgtenant.service" in files
    assert "opt/pgt/etc/pgtenant/pgtenant.ini" in files and "opt/pgt/bin/pgtenant" in files
    unit = unit_settings(os.path.join(d, "etc/systemd/system/pgtenant.service"))
    assert unit["ExecStart"] == ["/opt/pgt/bin/pgtenant /opt/pgt/etc/pgtenant/pgtenant.ini"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_installed_unit_passes_systemd_analyze_verify(destdir, tmp_path):
    # verify wants ExecStart's binary at its path: aim a copy at the installed one
    src = os.path.join(destdir, "usr/lib/systemd/system/pgtenant.service")
    unit = str(tmp_path / "pgtenant.service")
    with open(src) as f, open(unit, "w") as out:
        out.write(f.read().replace("/usr/bin/pgtenant",
                                   os.path.join(destdir, "usr/bin/pgtenant")))
    res = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                         timeout=60)
    # the man pages are not installed on this machine, and verify says so
    problems = [line for line in (res.stdout + res.stderr).splitlines()
                if line.strip() and "Command 'man " not in line]
    assert not problems, res.stdout + res.stderr


def example_ini_for(p, auth_file=None):
    """etc/pgtenant.ini as shipped, aimed at the test's PostgreSQL and port."""
    with open(os.path.join(pgt.REPO, "etc/pgtenant.ini")) as f:
        text = f.read()
    subs = [(";listen_port = 6432\n", f"listen_port = {p.port}\n"),
            ("\nport = 5432\n", f"\nport = {p.pg.port}\n"),
            ("\ndbname = app\n", "\ndbname = appdb\n")]
    if auth_file:
        subs.append((";auth_file = /etc/pgtenant/userlist.txt\n", f"auth_file = {auth_file}\n"))
    for old, new in subs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    with open(p.ini, "w") as f:
        f.write(text)


def test_shipped_example_starts_locked_down_and_opens_with_an_auth_file(pgtenant):
    p = pgtenant(start=False)
    example_ini_for(p)
    p.start()
    # no auth_file yet: nobody gets in, not even with the right password
    err = pgt.startup_error(p.port, "app.globex", "appdb", pgt.APP_PASSWORD)
    assert err.sqlstate == "28P01", err.fields
    p.expect_exit = True
    p.stop()

    p = pgtenant(start=False, users={"app": pgt.APP_PASSWORD, "admin": "adminpass",
                                     "someone": "somepass"})
    example_ini_for(p, auth_file=p.auth_file)
    p.start()
    with p.connect(user="app.globex", dbname="appdb") as conn:
        assert conn.execute("select current_user, current_setting('app.tenant_id')").fetchone() \
            == ("app", "1042")
    # the console takes its named admin, over SCRAM, and shows what is in force
    with psycopg.connect(p.conninfo("admin", "pgtenant", "adminpass"), autocommit=True) as c:
        cfg = {r[0]: r[1] for r in c.execute("SHOW CONFIG").fetchall()}
        assert (cfg["auth_type"], cfg["listen_addr"]) == ("scram-sha-256", "127.0.0.1")
    # a user of auth_file that no tenant lists reaches no tenant, and not the console
    assert pgt.startup_error(p.port, "someone.globex", "appdb", "somepass").sqlstate == "28000"
    assert pgt.startup_error(p.port, "someone", "pgtenant", "somepass").sqlstate == "28000"


def test_installed_binary_checks_the_installed_example_and_serves_clients(
        destdir, pgtenant, monkeypatch):
    binary = os.path.join(destdir, "usr/bin/pgtenant")
    ini = os.path.join(destdir, "etc/pgtenant/pgtenant.ini")
    res = pgt.run([binary, "--check", ini], timeout=30)
    assert res.returncode == 0 and "configuration is valid" in res.stdout, \
        res.stdout + res.stderr
    monkeypatch.setattr(pgt, "PGTENANT_BIN", binary)
    p = pgtenant()
    with p.connect(dbname="acme") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "acme"
