"""
Helpers for pgtenant's integration tests: a throwaway PostgreSQL 15 cluster,
pgtenant processes started from an ini the test writes, and a small raw
wire-protocol client for what libpq hides (exact SQLSTATEs of startup
errors, arbitrary startup parameters, malformed packets).

Everything started here is registered so it can be killed at session end,
also when a test fails or the run is interrupted.
"""

import atexit
import base64
import hashlib
import hmac
import os
import pwd
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import psycopg

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PGTENANT_BIN = os.environ.get("PGTENANT_BIN", os.path.join(REPO, "pgtenant"))
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")

APP_PASSWORD = "apppass"
# The application_name of pgtenant's health-check connection (one to every
# primary and replica): not a pooled server connection, so the helpers that
# count those leave it out.
HEALTH_CHECK_APP = "pgtenant health check"
# Secrets pgtenant's auth_file gets by default (plain text, so every
# auth_type can use them).
DEFAULT_USERS = {
    "app": APP_PASSWORD,
    "md5user": "md5pass",
    "trustuser": "trustpass",
    "other": "otherpass",
}

# ---------------------------------------------------------------- processes

_live_procs = []  # every Popen we started, killed at exit if still running


def _kill_all():
    for p in list(_live_procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                try:
                    p.kill()
                except OSError:
                    pass
            try:
                p.wait(5)
            except Exception:
                pass


atexit.register(_kill_all)


def spawn(cmd, **kw):
    """Popen in its own process group, remembered for cleanup."""
    kw.setdefault("start_new_session", True)
    p = subprocess.Popen(cmd, **kw)
    _live_procs.append(p)
    return p


def run(cmd, timeout=120, env=None, input=None, check=False):
    """Runs a command to completion (killing its group on timeout) and
    returns CompletedProcess with text stdout/stderr."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
              stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
              env=full_env, text=True)
    try:
        out, err = p.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError(f"command timed out after {timeout}s: {cmd}\n"
                             f"stdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}")
    finally:
        if p in _live_procs:
            _live_procs.remove(p)
    res = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if check and p.returncode != 0:
        raise AssertionError(f"command failed ({p.returncode}): {cmd}\n"
                             f"stdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}")
    return res


_used_ports = set()


def free_port():
    """A TCP port in 20000-40000 nobody listens on (bind-tested), never
    handed out twice in one run."""
    for _ in range(500):
        port = random.randint(20000, 40000)
        if port in _used_ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port found in 20000-40000")


def wait_port(port, timeout, proc=None, what="server"):
    """Waits until 127.0.0.1:port accepts; False on timeout or if proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def read_tail(path, limit=20000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    text = data.decode("utf-8", "replace")
    if len(text) > limit:
        text = "...[cut]...\n" + text[-limit:]
    return text


# ---------------------------------------------------------------- PostgreSQL

HBA = """\
local   all        all                      trust
host    all        trustuser  127.0.0.1/32  trust
host    all        md5user    127.0.0.1/32  md5
host    all        all        127.0.0.1/32  scram-sha-256
"""

SETUP_SQL = """\
SET password_encryption = 'scram-sha-256';
CREATE ROLE app LOGIN PASSWORD 'apppass';
CREATE ROLE trustuser LOGIN;
CREATE ROLE other LOGIN PASSWORD 'otherpass';
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5pass';
RESET password_encryption;
CREATE DATABASE appdb OWNER app;
CREATE DATABASE acme OWNER app;
CREATE DATABASE globex OWNER app;
"""


class PgServer:
    """A PostgreSQL 15 cluster in a fresh temporary directory."""

    def __init__(self):
        self.dir = None
        self.port = None
        self.started = False
        self.run_as = None

    @property
    def datadir(self):
        return os.path.join(self.dir, "data")

    @property
    def sockdir(self):
        return os.path.join(self.dir, "sock")

    @property
    def logfile(self):
        return os.path.join(self.dir, "postgresql.log")

    def _cmd(self, argv):
        if self.run_as:
            return ["runuser", "-u", self.run_as, "--"] + argv
        return argv

    def start(self):
        if not os.path.exists(os.path.join(PG_BIN, "initdb")):
            raise RuntimeError(f"PostgreSQL 15 not found in {PG_BIN} "
                               "(apt-get install postgresql-15, or `make deps`)")
        self.dir = tempfile.mkdtemp(prefix="pgtenant-it-pg-")
        atexit.register(self.stop)
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root but there is no `postgres` account to run "
                                   "PostgreSQL as (install the postgresql package, or run "
                                   "the tests as an unprivileged user)")
            self.run_as = "postgres"
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.makedirs(self.sockdir)
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.sockdir, pw.pw_uid, pw.pw_gid)
        res = run(self._cmd([os.path.join(PG_BIN, "initdb"), "-D", self.datadir, "-U", "postgres",
                             "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]),
                  timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{res.stdout}\n{res.stderr}")
        # pg_hba.conf and postgresql.conf belong to postgres; write as it.
        extra = "\n".join([
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = '%s'" % self.sockdir,
            "max_connections = 200",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "shared_buffers = 64MB",
            "log_min_messages = warning",
            "log_connections = off",
            "",
        ])
        self._write_as_owner(os.path.join(self.datadir, "pg_hba.conf"), HBA)
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write(extra)
        last_err = ""
        for _ in range(5):
            self.port = free_port()
            res = run(self._cmd([os.path.join(PG_BIN, "pg_ctl"), "-D", self.datadir, "-l",
                                 self.logfile, "-w", "-t", "60", "-o", f"-p {self.port}", "start"]),
                      timeout=90)
            if res.returncode == 0:
                self.started = True
                break
            last_err = res.stdout + res.stderr + read_tail(self.logfile, 3000)
        else:
            raise RuntimeError(f"PostgreSQL did not start:\n{last_err}")
        with self.connect() as c:
            for stmt in SETUP_SQL.strip().split(";\n"):
                if stmt.strip():
                    c.execute(stmt.rstrip(";"))

    def _write_as_owner(self, path, text):
        with open(path, "w") as f:
            f.write(text)

    def stop(self):
        if self.started:
            self.started = False
            run(self._cmd([os.path.join(PG_BIN, "pg_ctl"), "-D", self.datadir, "-m", "immediate",
                           "-w", "stop"]), timeout=60)
        if self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def connect(self, dbname="postgres", user="postgres", **kw):
        """Direct superuser connection over the unix socket (trust)."""
        kw.setdefault("autocommit", True)
        return psycopg.connect(host=self.sockdir, port=self.port, dbname=dbname, user=user,
                               connect_timeout=10, **kw)

    def raw(self, dbname="acme", user="app", password=APP_PASSWORD):
        """A RawConn straight to this server, logged in (the reference for
        comparing what a client sees through pgtenant)."""
        c = RawConn(self.port)
        c.startup(user, dbname, password)
        return c

    def connect_tcp(self, dbname="acme", user="app", password=APP_PASSWORD, **kw):
        """Direct connection over TCP as a normal role, as pgtenant's clients would be."""
        kw.setdefault("autocommit", True)
        conn = psycopg.connect(host="127.0.0.1", port=self.port, dbname=dbname, user=user,
                               password=password, connect_timeout=10, sslmode="disable",
                               gssencmode="disable", **kw)
        conn.prepare_threshold = None  # as Pgtenant.connect, for like-for-like comparisons
        return conn

    def server_conns(self, dbname=None, user="app"):
        """Client backends (not our own) connected as user, optionally to dbname."""
        with self.connect() as c:
            q = ("select pid, datname, usename, state, query from pg_stat_activity "
                 "where backend_type = 'client backend' and pid <> pg_backend_pid() "
                 f"and application_name <> '{HEALTH_CHECK_APP}' and usename = %s")
            args = [user]
            if dbname:
                q += " and datname = %s"
                args.append(dbname)
            return c.execute(q, args).fetchall()


# ---------------------------------------------------------------- pgtenant

def _ini_value(v):
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def render_ini(globals_, backends, tenants):
    lines = ["[pgtenant]"]
    lines += [f"{k} = {_ini_value(v)}" for k, v in globals_.items() if v is not None]
    for name, keys in backends.items():
        lines += ["", f"[backend {name}]"]
        lines += [f"{k} = {_ini_value(v)}" for k, v in keys.items() if v is not None]
    for name, keys in tenants.items():
        lines += ["", f"[tenant {name}]"]
        lines += [f"{k} = {_ini_value(v)}" for k, v in keys.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_auth_file(path, users):
    with open(path, "w") as f:
        for u, secret in users.items():
            f.write(f'"{u}" "{secret}"\n')


class Pgtenant:
    """One pgtenant process. Its stderr (and log_file, unless the test sets
    one) goes to self.logfile."""

    def __init__(self, pg, workdir, globals_=None, backends=None, tenants=None, users=None,
                 args=None):
        self.pg = pg
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.logfile = os.path.join(workdir, "pgtenant.log")
        self.ini = os.path.join(workdir, "pgtenant.ini")
        self.auth_file = os.path.join(workdir, "users.txt")
        self.users = dict(DEFAULT_USERS if users is None else users)
        write_auth_file(self.auth_file, self.users)
        g = {
            "listen_addr": "127.0.0.1",
            "listen_port": self.port,
            "auth_type": "scram-sha-256",
            "auth_file": self.auth_file,
            "pool_mode": "transaction",
            "default_pool_size": 10,
            "tenant_users": "*",
            "server_login_retry": "1s",
            "server_connect_timeout": "5s",
            "query_wait_timeout": "30s",
            "client_login_timeout": "20s",
            "shutdown_timeout": "10s",
        }
        g.update(globals_ or {})
        self.globals = g
        b = {"main": {"host": "127.0.0.1", "port": pg.port, "dbname": "appdb", "user": "app",
                      "password": APP_PASSWORD}}
        if backends:
            for name, keys in backends.items():
                if keys is None:
                    b.pop(name, None)
                else:
                    b[name] = keys
        self.backends = b
        t = {"acme": {"mode": "database", "backend": "main", "dbname": "acme"},
             "globex": {"mode": "database", "backend": "main", "dbname": "globex"}}
        if tenants:
            for name, keys in tenants.items():
                if keys is None:
                    t.pop(name, None)
                else:
                    t[name] = keys
        self.tenants = t
        with open(self.ini, "w") as f:
            f.write(render_ini(g, b, t))
        self.args = list(args or [])
        self.proc = None
        self.expect_exit = False  # a test that stops pgtenant itself sets this

    def start(self, timeout=10):
        if not os.access(PGTENANT_BIN, os.X_OK):
            raise AssertionError(f"{PGTENANT_BIN} is not built (make pgtenant)")
        self._log_fh = open(self.logfile, "ab")
        self.proc = spawn([PGTENANT_BIN] + self.args + [self.ini], stdout=self._log_fh,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir)
        if not wait_port(self.port, timeout, self.proc):
            rc = self.proc.poll()
            state = f"exited with {rc}" if rc is not None else "still not listening"
            self.kill()
            raise AssertionError(f"pgtenant did not accept on port {self.port} within {timeout}s "
                                 f"({state}).\nini:\n{read_tail(self.ini)}\nlog:\n{self.log()}")
        return self

    def log(self, limit=20000):
        return read_tail(self.logfile, limit)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10):
        """SIGTERM, wait, SIGKILL after timeout. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc in _live_procs:
            _live_procs.remove(self.proc)
        try:
            self._log_fh.close()
        except Exception:
            pass
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            self.proc.wait(10)

    # -- client side

    def conninfo(self, user="app", dbname="acme", password=None, **kw):
        if password is None:
            password = self.users.get(user.rsplit(".", 1)[0] if "." in user else user, "")
        parts = {"host": "127.0.0.1", "port": self.port, "user": user, "dbname": dbname,
                 "password": password, "sslmode": "disable", "gssencmode": "disable",
                 "connect_timeout": 10}
        parts.update(kw)
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items()})

    def connect(self, user="app", dbname="acme", password=None, autocommit=True,
                prepare_threshold=None, **kw):
        """psycopg connection through pgtenant. Named prepared statements are
        off by default (prepare_threshold=None) so that tests of the pooler
        core do not depend on prepared-statement tracking."""
        conn = psycopg.connect(self.conninfo(user, dbname, password, **kw), autocommit=autocommit)
        conn.prepare_threshold = prepare_threshold
        return conn

    def env(self, user="app", dbname="acme", password=None):
        """Environment for psql/pgbench aimed at this pgtenant."""
        if password is None:
            password = self.users.get(user.rsplit(".", 1)[0] if "." in user else user, "")
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": user,
                "PGDATABASE": dbname, "PGPASSWORD": password, "PGSSLMODE": "disable",
                "PGGSSENCMODE": "disable", "PGCONNECT_TIMEOUT": "10"}

    def raw(self, user="app", dbname="acme", password=None, params=None):
        """A RawConn that has done startup and authentication."""
        if password is None:
            password = self.users.get(user.rsplit(".", 1)[0] if "." in user else user, "")
        c = RawConn(self.port)
        c.startup(user, dbname, password, params)
        return c


# ---------------------------------------------------------------- raw protocol

class PgError(Exception):
    def __init__(self, fields):
        self.fields = fields
        super().__init__(f"{fields.get('S', '?')} {fields.get('C', '?')}: {fields.get('M', '')}")

    @property
    def sqlstate(self):
        return self.fields.get("C")

    @property
    def severity(self):
        return self.fields.get("V") or self.fields.get("S")

    @property
    def message(self):
        return self.fields.get("M", "")


def parse_fields(body):
    fields = {}
    i = 0
    while i < len(body) and body[i] != 0:
        code = chr(body[i])
        end = body.index(b"\0", i + 1)
        fields[code] = body[i + 1:end].decode("utf-8", "replace")
        i = end + 1
    return fields


def parse_row_description(body):
    """Column names of a RowDescription body."""
    (n,) = struct.unpack("!H", body[:2])
    i, cols = 2, []
    for _ in range(n):
        end = body.index(b"\0", i)
        cols.append(body[i:end].decode())
        i = end + 1 + 18
    return cols


def parse_data_row(body, errors="strict"):
    """Values of a DataRow body (str, or None for NULL)."""
    (n,) = struct.unpack("!H", body[:2])
    i, row = 2, []
    for _ in range(n):
        (ln,) = struct.unpack("!i", body[i:i + 4])
        i += 4
        if ln < 0:
            row.append(None)
        else:
            row.append(body[i:i + ln].decode(errors=errors))
            i += ln
    return row


def startup_packet(params, version=196608):
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def msg(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


class RawConn:
    """A minimal PostgreSQL v3 client over a plain socket."""

    def __init__(self, port, host="127.0.0.1", timeout=15):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.params = {}
        self.notices = []
        self.columns = []  # of the last RowDescription
        self.key = None

    def close(self):
        try:
            self.sock.sendall(msg(b"X"))
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk

    def recv_msg(self):
        """(type byte, body) of the next message."""
        self._fill(5)
        kind = self.buf[:1]
        (length,) = struct.unpack("!I", self.buf[1:5])
        self._fill(1 + length)
        body = self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        return kind, body

    def read_until_close(self, limit=100):
        """All messages until the server closes (for error-then-close checks)."""
        out = []
        try:
            for _ in range(limit):
                out.append(self.recv_msg())
        except (EOFError, ConnectionResetError):
            pass
        return out

    def startup(self, user, dbname, password="", params=None):
        p = {"user": user, "database": dbname}
        p.update(params or {})
        self.send(startup_packet(p))
        self.user = user
        while True:
            kind, body = self.recv_msg()
            if kind == b"E":
                raise PgError(parse_fields(body))
            if kind == b"R":
                (code,) = struct.unpack("!I", body[:4])
                if code == 0:
                    continue
                if code == 3:
                    self.send(msg(b"p", password.encode() + b"\0"))
                elif code == 5:
                    salt = body[4:8]
                    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    self.send(msg(b"p", b"md5" + outer.encode() + b"\0"))
                elif code == 10:
                    mechs = [m for m in body[4:].split(b"\0") if m]
                    if b"SCRAM-SHA-256" not in mechs:
                        raise AssertionError(f"no SCRAM-SHA-256 among {mechs}")
                    self._scram(password)
                else:
                    raise AssertionError(f"unsupported auth request {code}")
            elif kind == b"S":
                k, v = body.split(b"\0")[:2]
                self.params[k.decode()] = v.decode()
            elif kind == b"K":
                self.key = struct.unpack("!II", body[:8])
            elif kind == b"N":
                self.notices.append(parse_fields(body))
            elif kind == b"Z":
                return
            elif kind == b"v":
                continue  # NegotiateProtocolVersion
            else:
                raise AssertionError(f"unexpected message {kind!r} during startup")

    def _scram(self, password):
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={nonce}"
        first = ("n,," + first_bare).encode()
        self.send(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
        kind, body = self.recv_msg()
        if kind == b"E":
            raise PgError(parse_fields(body))
        (code,) = struct.unpack("!I", body[:4])
        assert kind == b"R" and code == 11, (kind, code)
        server_first = body[4:].decode()
        attrs = dict(a.split("=", 1) for a in server_first.split(","))
        assert attrs["r"].startswith(nonce)
        salt = base64.b64decode(attrs["s"])
        iters = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iters)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        final_wo_proof = f"c=biws,r={attrs['r']}"
        auth_msg = f"{first_bare},{server_first},{final_wo_proof}".encode()
        sig = hmac.new(stored_key, auth_msg, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        self.send(msg(b"p", (final_wo_proof + ",p=" + base64.b64encode(proof).decode()).encode()))
        kind, body = self.recv_msg()
        if kind == b"E":
            raise PgError(parse_fields(body))
        (code,) = struct.unpack("!I", body[:4])
        assert kind == b"R" and code == 12, (kind, code)
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        expect = base64.b64encode(hmac.new(server_key, auth_msg, hashlib.sha256).digest()).decode()
        assert body[4:].decode() == "v=" + expect, "bad SCRAM server signature"

    def query(self, sql):
        """Simple query. Returns rows (lists of str/None) of the last result;
        raises PgError for an ErrorResponse (after ReadyForQuery)."""
        self.send(msg(b"Q", sql.encode() + b"\0"))
        rows, err = [], None
        while True:
            kind, body = self.recv_msg()
            if kind == b"T":
                rows = []
                self.columns = parse_row_description(body)
            elif kind == b"D":
                rows.append(parse_data_row(body))
            elif kind == b"E":
                err = PgError(parse_fields(body))
            elif kind == b"N":
                self.notices.append(parse_fields(body))
            elif kind == b"S":
                k, v = body.split(b"\0")[:2]
                self.params[k.decode()] = v.decode()
            elif kind == b"Z":
                if err:
                    raise err
                return rows

    def scalar(self, sql):
        return self.query(sql)[0][0]

    def query_dicts(self, sql):
        """Like query, each row a dict keyed by the column names of its RowDescription."""
        return [dict(zip(self.columns, row)) for row in self.query(sql)]


def startup_error(port, user, dbname, password="", params=None):
    """Runs a startup that must fail; returns the PgError."""
    c = RawConn(port)
    try:
        c.startup(user, dbname, password, params)
    except PgError as e:
        return e
    finally:
        c.sock.close()
    raise AssertionError(f"startup as user={user} dbname={dbname} params={params} succeeded, "
                         "expected an error")


# ---------------------------------------------------------------- pgbench

def pgbench_init(pg, dbname):
    """pgbench tables (scale 1) in dbname, loaded directly as app; returns dbname."""
    res = pgbench({"PGPASSWORD": APP_PASSWORD},
                  ["-i", "-s", "1", "-q", "-h", pg.sockdir, "-p", str(pg.port), "-U", "app", dbname])
    assert res.returncode == 0, res.stdout + res.stderr
    return dbname


def pgbench(env, args, timeout=180):
    res = run([os.path.join(PG_BIN, "pgbench")] + args, timeout=timeout, env=env)
    return res


def parse_pgbench(out):
    """Key numbers from pgbench's summary."""
    import re
    r = {}
    m = re.search(r"number of transactions actually processed: (\d+)(?:/(\d+))?", out)
    if m:
        r["processed"] = int(m.group(1))
        r["expected"] = int(m.group(2)) if m.group(2) else None
    m = re.search(r"number of failed transactions: (\d+)", out)
    if m:
        r["failed"] = int(m.group(1))
    m = re.search(r"tps = ([\d.]+)", out)
    if m:
        r["tps"] = float(m.group(1))
    return r


def backend_keys(pg, **kw):
    """The session's PostgreSQL as a `[backend]` section (appdb, role app), with overrides."""
    b = {"host": "127.0.0.1", "port": pg.port, "dbname": "appdb", "user": "app",
         "password": APP_PASSWORD}
    b.update(kw)
    return b


# ---------------------------------------------------------------- sampling

class PgStatSampler:
    """Samples, in a thread, a count query (sql with args) on a direct connection
    every period seconds; .max is the highest count seen, .samples how many
    were taken, .error what stopped it (reported by the test)."""

    def __init__(self, pg, sql, args, period=0.05):
        import threading
        self.pg, self.sql, self.args, self.period = pg, sql, args, period
        self.max = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error = None

    def _run(self):
        try:
            with self.pg.connect() as c:
                while not self._stop.is_set():
                    self.max = max(self.max, c.execute(self.sql, self.args).fetchone()[0])
                    self.samples += 1
                    self._stop.wait(self.period)
        except Exception as e:  # reported by the test
            self.error = e

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._thread.join(10)


class ServerConnSampler(PgStatSampler):
    """How many server connections user has open to dbname."""

    def __init__(self, pg, dbname, user="app", period=0.05):
        super().__init__(pg, "select count(*) from pg_stat_activity where backend_type = "
                         f"'client backend' and application_name <> '{HEALTH_CHECK_APP}' "
                         "and usename = %s and datname = %s",
                         [user, dbname], period)


def wait_for(pred, timeout=10, period=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ---------------------------------------------------------------- extended protocol

def ext_parse(sql, name=""):
    return msg(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))


def ext_bind(params=(), stmt="", portal=""):
    body = portal.encode() + b"\0" + stmt.encode() + b"\0" + struct.pack("!H", 0)
    body += struct.pack("!H", len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            b = str(p).encode()
            body += struct.pack("!i", len(b)) + b
    body += struct.pack("!H", 0)
    return msg(b"B", body)


def ext_describe_portal(portal=""):
    return msg(b"D", b"P" + portal.encode() + b"\0")


def ext_execute(portal="", max_rows=0):
    return msg(b"E", portal.encode() + b"\0" + struct.pack("!I", max_rows))


def ext_sync():
    return msg(b"S")


def ext_statement(sql, params=()):
    """Parse + Bind + Describe + Execute of one unnamed statement."""
    return ext_parse(sql) + ext_bind(params) + ext_describe_portal() + ext_execute()


def run_batch(conn, data, n_syncs):
    """Sends data in one write and reads until n_syncs ReadyForQuery; returns
    a comparable summary of every message received."""
    conn.send(data)
    out = []
    seen = 0
    while seen < n_syncs:
        kind, body = conn.recv_msg()
        if kind == b"D":
            out.append(("DataRow", body[2:]))
        elif kind == b"C":
            out.append(("CommandComplete", body.rstrip(b"\0").decode()))
        elif kind == b"E":
            out.append(("Error", parse_fields(body).get("C")))
        elif kind == b"Z":
            out.append(("ReadyForQuery", body.decode()))
            seen += 1
        elif kind in (b"S", b"N"):
            continue  # ParameterStatus, NoticeResponse: not part of the comparison
        else:
            out.append((kind.decode(), None))
    return out
