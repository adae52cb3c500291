"""README.md's examples, run as written against `make demo` (scripts/demo.sh
with ports and a directory of the test's own): every `psql "host=127.0.0.1
port=6432 ..."` line, every `$ psql ...` session with its `pgtenant=#`
commands and the output README shows, and every ini block of [tenant]
sections (written where README says, or into the demo's include_dir, then
RELOAD). Blocks that describe another machine ([pgtenant], [backend]
sections with made-up hosts) are skipped.

The demo itself: the console line is in its banner, its files are private
(no permission warning about its own configuration), and Ctrl-C with its
output piped stops the demo PostgreSQL it started."""

import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest

import pgt

README = os.path.join(pgt.REPO, "README.md")
DEMO = os.path.join(pgt.REPO, "scripts", "demo.sh")
README_PORT = 6432
README_DIR = "/tmp/pgtenant-demo"


class Demo:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pgtenant-readme-", dir="/tmp")
        self.port = pgt.free_port()
        self.pg_port = pgt.free_port()
        self.out = os.path.join(tempfile.mkdtemp(prefix="pgtenant-readme-out-"), "demo.out")
        env = dict(os.environ, DEMO_DIR=self.dir, PG_PORT=str(self.pg_port),
                   LISTEN_PORT=str(self.port), PGTENANT=pgt.PGTENANT_BIN)
        # as `make demo | tee log`: stdout and stderr into a pipe whose reader a Ctrl-C kills too
        self.proc = pgt.spawn(["bash", "-c", f"{shlex.quote(DEMO)} 2>&1 | cat > {shlex.quote(self.out)}"],
                              env=env, stdin=subprocess.DEVNULL)

    def output(self):
        return pgt.read_tail(self.out)

    def wait_started(self, timeout=90):
        pgt.wait_for(lambda: "started:" in self.output() or self.proc.poll() is not None,
                     timeout=timeout, period=0.2, what="the demo to start")
        assert self.proc.poll() is None, f"demo exited:\n{self.output()}"
        assert pgt.wait_port(self.port, 10), self.output()

    def pg_up(self):
        try:
            with socket.create_connection(("127.0.0.1", self.pg_port), timeout=1):
                return True
        except OSError:
            return False

    def ctrl_c(self):
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass

    def local(self, text):
        """README's text as it applies to this demo (its port and directory)."""
        return (text.replace(f"port={README_PORT}", f"port={self.port}")
                .replace(f"port {README_PORT}", f"port {self.port}")
                .replace(README_DIR, self.dir))

    def cleanup(self):
        if self.proc.poll() is None:
            self.ctrl_c()
        if self.pg_up():  # never leave a cluster behind, whatever the test found
            pgt.run(["runuser", "-u", "postgres", "--", os.path.join(pgt.PG_BIN, "pg_ctl"),
                     "stop", "-D", os.path.join(self.dir, "pgdata"), "-m", "immediate"]
                    if os.geteuid() == 0 else
                    [os.path.join(pgt.PG_BIN, "pg_ctl"), "stop", "-D",
                     os.path.join(self.dir, "pgdata"), "-m", "immediate"])
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(os.path.dirname(self.out), ignore_errors=True)


@pytest.fixture(scope="module")
def demo():
    d = Demo()
    try:
        d.wait_started()
        yield d
    finally:
        d.cleanup()


def readme_blocks():
    """(kind, text, preceding paragraph) in README order: kind is "ini", "shell"
    (a fenced block of `$ ` sessions) or "line" (an indented psql command)."""
    text = open(README).read()
    out = []
    for m in re.finditer(r"```(\w*)\n(.*?)```|^    (psql \"host=[^\n]*)$", text, re.S | re.M):
        before = text[:m.start()].rstrip().rsplit("\n\n", 1)[-1]
        if m.group(3):
            out.append(("line", m.group(3), before))
        elif m.group(1) == "ini":
            out.append(("ini", m.group(2), before))
        elif m.group(1) == "" and m.group(2).startswith("$ "):
            out.append(("shell", m.group(2), before))
    return out


def psql_env():
    return {"PSQLRC": "/dev/null", "PAGER": "", "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}


def console(demo, sql):
    conninfo = f"host=127.0.0.1 port={demo.port} dbname=pgtenant user=admin password=adminpass"
    return pgt.run(["psql", "-X", conninfo, "-c", sql], env=psql_env(), timeout=30)


def run_session(demo, block):
    """Runs each `$ command` with its `pgtenant=# ` lines as input; README's other
    lines are the output, in order (a trailing `...` column cut off)."""
    sessions = []
    for line in block.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            sessions.append({"cmd": line[2:], "input": [], "expect": []})
        elif line.startswith("pgtenant=# "):
            sessions[-1]["input"].append(line[len("pgtenant=# "):])
        else:
            sessions[-1]["expect"].append(line)
    for s in sessions:
        argv = shlex.split(demo.local(s["cmd"]))
        res = pgt.run(argv, env=psql_env(), input="\n".join(s["input"]) + "\n", timeout=60)
        actual = [x.rstrip() for x in (res.stdout + res.stderr).split("\n")]
        i = 0
        for want in s["expect"]:
            want = re.sub(r"(\s*\|\s*\.\.\.|\+-+)$", "", demo.local(want).rstrip())
            while i < len(actual) and not actual[i].startswith(want):
                i += 1
            assert i < len(actual), (f"README's {s['cmd']!r} should print {want!r}; it printed:\n"
                                     + res.stdout + res.stderr)
            i += 1


def test_every_readme_example_runs_as_written_on_the_demo(demo):
    blocks = readme_blocks()
    kinds = [k for k, _, _ in blocks]
    assert kinds.count("shell") >= 2 and kinds.count("line") >= 2, blocks
    ran = 0
    for n, (kind, text, before) in enumerate(blocks):
        if kind == "line":
            sql = "SHOW VERSION" if "dbname=pgtenant" in text else "SELECT count(*) FROM customers"
            res = pgt.run(shlex.split(demo.local(text)) + ["-c", sql], env=psql_env(), timeout=30)
            assert res.returncode == 0, f"{text}: {res.stderr}"
        elif kind == "shell":
            run_session(demo, text)
        elif "[pgtenant]" in text or "[backend" in text:
            continue  # another machine's settings
        else:
            m = re.search(r"save this as `([^`]+)`", before)
            path = demo.local(m.group(1)) if m else os.path.join(demo.dir, "conf.d", f"readme{n}.ini")
            with open(path, "w") as f:
                f.write(text)
            res = console(demo, "RELOAD")
            assert res.returncode == 0 and "RELOAD" in res.stdout, f"{text}\n{res.stderr}"
        ran += 1
    assert ran >= 7, blocks
    assert "initech" in console(demo, "SHOW TENANTS").stdout


def test_the_demo_banner_shows_the_console_and_its_files_are_private(demo):
    out = demo.output()
    console_line = (f'psql "host=127.0.0.1 port={demo.port} dbname=pgtenant user=admin '
                    'password=adminpass"')
    assert console_line in out, out
    assert console(demo, "SHOW VERSION").returncode == 0
    assert "readable by every user" not in out, out
    for name in ("pgtenant.ini", "userlist.txt"):
        mode = stat.S_IMODE(os.stat(os.path.join(demo.dir, name)).st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"


def test_ctrl_c_with_the_output_piped_stops_the_demo_postgresql():
    d = Demo()
    try:
        d.wait_started()
        assert d.pg_up()
        d.ctrl_c()
        assert d.proc.poll() is not None, "the demo did not end on Ctrl-C"
        deadline = time.monotonic() + 10
        while d.pg_up() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not d.pg_up(), f"the demo PostgreSQL still runs after Ctrl-C:\n{d.output()}"
    finally:
        d.cleanup()
