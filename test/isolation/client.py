"""
One randomized client: a raw v3 wire connection (test/integration/pgt.py's
RawConn for startup and SCRAM), a seeded RNG, and a reply checker that reads
every message of every unit it sends, so that a statement's result, a stray
reply, a missing one or a wait that never ends is seen.

A unit is a list of segments sent in one write (pipelined) or one at a time:
- Q: a simple Query of n statements,
- X: extended-protocol messages up to and including a Sync, with the exact
  reply sequence they must produce (ParseComplete, BindComplete, …) until an
  error, after which PostgreSQL skips to the Sync.
Every DataRow column named m_<kind> goes through oracle.check; every
NotificationResponse's payload must be the client's tenant.
"""

import os
import random
import select
import socket
import struct
import time

import oracle
import pgt
import world
from pgt import msg, ext_parse, ext_bind, ext_describe_portal, ext_execute, ext_sync

# longest wait for a reply: above two query_wait_timeouts (world.py), since a pipelined
# second unit may wait for a server again after the first one's 53300
OP_TIMEOUT = float(os.environ.get("ISO_OP_TIMEOUT", "35"))

# replies each expected extended-protocol step accepts first
_TOKEN = {"1": "1", "2": "2", "3": "3", "t": "t", "Tn": "Tn", "E": "DCIsGH"}


class Reconnect(Exception):
    """The connection is gone (FATAL, EOF) or in an unknown state: start a new one."""


class OpTimeout(Exception):
    pass


class Seg:
    def __init__(self, kind, data, sql, n=1, expect=None, copy_in=None, probe=False):
        self.kind, self.data, self.sql, self.n = kind, data, sql, n
        self.expect = expect or []
        self.copy_in = copy_in  # rows to send on CopyInResponse (None: CopyFail)
        self.probe = probe      # a standalone probe: reported parameters are checked too
        # results
        self.error = None       # (sqlstate, message) of the ErrorResponse
        self.tags = []
        self.rows = 0
        self.status = None
        self.pre_status = None  # the client's transaction status when it was sent


def Q(sql, n=None, copy_in=None, probe=False):
    if n is None:
        n = 1
    return Seg("Q", msg(b"Q", sql.encode() + b"\0"), sql, n, copy_in=copy_in, probe=probe)


def X(*items, copy_in=None, probe=False, sync=True):
    """items: ('P', sql[, name]), ('B', stmt[, params]), ('DP',), ('DS', name), ('E',),
    ('CS', name), ('S', sql, params) = P+B+DP+E of an unnamed statement,
    ('N', name, params) = B+DP+E of a named one."""
    data, exp, texts = b"", [], []
    for it in items:
        k = it[0]
        if k == "S":
            data += ext_parse(it[1]) + ext_bind(it[2] if len(it) > 2 else ())
            data += ext_describe_portal() + ext_execute()
            exp += ["1", "2", "Tn", "E"]
            texts.append(it[1])
        elif k == "N":
            data += ext_bind(it[2] if len(it) > 2 else (), stmt=it[1])
            data += ext_describe_portal() + ext_execute()
            exp += ["2", "Tn", "E"]
            texts.append(f"<bind {it[1]}>")
        elif k == "P":
            name = it[2] if len(it) > 2 else ""
            data += ext_parse(it[1], name)
            exp.append("1")
            texts.append(f"<parse {name}> {it[1]}" if name else it[1])
        elif k == "B":
            data += ext_bind(it[2] if len(it) > 2 else (), stmt=it[1])
            exp.append("2")
        elif k == "DP":
            data += ext_describe_portal()
            exp.append("Tn")
        elif k == "DS":
            data += msg(b"D", b"S" + it[1].encode() + b"\0")
            exp += ["t", "Tn"]
        elif k == "E":
            data += ext_execute()
            exp.append("E")
        elif k == "CS":
            data += msg(b"C", b"S" + it[1].encode() + b"\0")
            exp.append("3")
            texts.append(f"<close {it[1]}>")
        else:
            raise ValueError(k)
    if sync:
        data += ext_sync()
    n = sum(1 for e in exp if e == "E")
    return Seg("X", data, " | ".join(texts), n, exp, copy_in=copy_in, probe=probe)


def cut(s, n=160):
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[:n] + "…"


class Client:
    def __init__(self, run, cid, tenant, seed):
        self.run, self.cid, self.tenant = run, cid, tenant
        self.mode = world.mode_of(tenant)
        self.rng = random.Random(f"{seed}:{run.config}:{cid}")
        self.conn = None
        self.history = []
        self.nop = 0
        self.status = "I"
        self.stop = False
        self.app_name = f"iso.{tenant}.c{cid}"
        self._reset_session_view()

    # ---------------------------------------------------------------- bookkeeping

    def _reset_session_view(self):
        self.named = {}          # driver-named statements this client parsed: name -> text
        self.reported = {}       # ParameterStatus values received
        self.sess_gucs = {}      # session mode: GUC -> value this client SET (must persist)
        self.cancel_sent = 0.0   # when this client last sent a cancel of its own
        self.malformed = False   # this client sent bytes that must end in 08P01
        self.bad_startup = None  # an invalid startup parameter we sent

    def log(self, text):
        self.history.append(f"{time.monotonic() - self.run.t0:7.2f}s #{self.nop} {text}")
        if len(self.history) > 40:
            del self.history[:10]
        self.run.record(self, text)

    def fail(self, cls, text, seg=None):
        self.run.fail(self, cls, text, seg)

    # ---------------------------------------------------------------- connection

    def connect(self, params=None, user=None):
        if user is None:
            user = f"app.{self.tenant}" if self.rng.random() < 0.3 else "app"
        dbname = self.tenant if user == "app" else self.rng.choice([self.tenant, "postgres"])
        if self.run.direct:  # self-test of the checker: straight to PostgreSQL
            user, dbname = "app", world.db_of(self.tenant)
        # many drivers send no application_name: such a client runs with the startup
        # parameters of nobody, so it sees exactly what the server connection holds
        # (pgtenant's parameter sync does not get to clean up after another client)
        bare = self.rng.random() < 0.3
        p = {} if bare else {"application_name": self.app_name}
        p.update(params or {})
        self._reset_session_view()
        c = None
        try:
            c = pgt.RawConn(self.run.port, timeout=OP_TIMEOUT)
            c.startup(user, dbname, pgt.APP_PASSWORD, p)
        except pgt.PgError as e:
            if c:
                c.sock.close()
            return e
        except (OSError, EOFError) as e:
            if c:
                c.sock.close()
            return e
        self.conn = c
        self.reported = dict(c.params)
        self.status = "I"
        if self.run.pool_mode == "session":
            self.session_ops_left = self.rng.randint(5, 40)
        return None

    def drop(self):
        if self.conn is not None:
            try:
                self.conn.sock.close()
            except OSError:
                pass
        self.conn = None

    def ensure_connected(self):
        tries = 0
        while self.conn is None and not self.stop:
            err = self.connect()
            if err is None:
                return True
            tries += 1
            self.log(f"connect failed: {err}")
            sqlstate = getattr(err, "sqlstate", None)
            if sqlstate not in (None, "53300", "57P03", "08006", "57P01"):
                self.fail("unexpected-error", f"startup refused with {err}")
            time.sleep(min(0.05 * tries, 1.0))
        return self.conn is not None

    # ---------------------------------------------------------------- wire

    def _recv(self, deadline):
        c = self.conn
        while True:
            if len(c.buf) >= 5:
                (ln,) = struct.unpack("!I", c.buf[1:5])
                if ln < 4 or ln > 64 * 1024 * 1024:
                    raise Reconnect(self._desync(f"nonsense message length {ln}"))
                if len(c.buf) >= 1 + ln:
                    kind, body = c.buf[:1], c.buf[5:1 + ln]
                    c.buf = c.buf[1 + ln:]
                    return kind, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise OpTimeout()
            c.sock.settimeout(left)
            try:
                chunk = c.sock.recv(262144)
            except socket.timeout:
                raise OpTimeout()
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError()
            c.buf += chunk

    def _desync(self, text):
        self.fail("protocol-desync", text)
        return text

    def _send(self, data):
        try:
            self.conn.sock.sendall(data)
        except OSError as e:
            # the peer closed: a FATAL it sent before may still be readable
            deadline = time.monotonic() + 1
            try:
                while True:
                    kind, body = self._recv(deadline)
                    if kind == b"E":
                        self._fatal_or_error(pgt.parse_fields(body), None)
            except (EOFError, OpTimeout, OSError):
                pass
            raise EOFError(str(e))

    def drain_stray(self):
        """Before a unit: anything already waiting must be asynchronous (notification,
        notice, parameter status) or a FATAL; a stray result is a desync."""
        c = self.conn
        while True:
            if len(c.buf) < 5:
                try:
                    r, _, _ = select.select([c.sock], [], [], 0)
                except (OSError, ValueError):
                    raise Reconnect("socket gone")
                if not r:
                    if c.buf:
                        # a partial message: read the rest of it
                        pass
                    else:
                        return
            try:
                kind, body = self._recv(time.monotonic() + 2)
            except EOFError:
                raise Reconnect("closed while idle")
            except OpTimeout:
                return
            if kind in (b"A", b"N", b"S"):
                self._async(kind, body)
            elif kind == b"E":
                f = pgt.parse_fields(body)
                self._fatal_or_error(f, None, idle=True)
            else:
                raise Reconnect(self._desync(
                    f"stray {kind.decode(errors='replace')} message while the client was idle "
                    f"(no request outstanding): {body[:120]!r}"))

    def _async(self, kind, body):
        if kind == b"A":
            pid = body[:4]
            rest = body[4:]
            channel, payload = rest.split(b"\0")[:2]
            channel, payload = channel.decode(), payload.decode()
            self.run.stats["notifications"] += 1
            own = f"chan_{self.tenant}"
            if payload != self.tenant or channel != own:
                self.fail("cross-tenant", f"received NOTIFY on channel {channel!r} with payload "
                          f"{payload!r}: this client of {self.tenant} only LISTENs on {own}")
        elif kind == b"S":
            k, v = body.split(b"\0")[:2]
            self.reported[k.decode()] = v.decode()
            if k == b"application_name":
                o = oracle.tenant_of_value("an", v.decode())
                if o is not None and o != self.tenant:
                    self.fail("cross-tenant", f"ParameterStatus application_name={v.decode()!r} "
                              f"belongs to tenant {o}")
            if k == b"TimeZone":
                o = oracle.tenant_of_value("tz", v.decode())
                if o is not None and o != self.tenant:
                    self.fail("cross-tenant", f"ParameterStatus TimeZone={v.decode()!r} "
                              f"belongs to tenant {o}")

    def _fatal_or_error(self, f, seg, idle=False):
        sev = f.get("V") or f.get("S")
        code = f.get("C")
        text = f"{sev} {code}: {f.get('M', '')}"
        if sev in ("FATAL", "PANIC"):
            self.run.stats["fatals"] += 1
            allowed = {"57P01", "08006", "57P05", "25P03", "08P01" if self.malformed else None,
                       "57P02", "57P03", "53300"}
            # an invalid startup parameter: PostgreSQL answers FATAL at startup; pgtenant,
            # which welcomes clients before it has a server, at their first statement
            allowed |= set(getattr(self, "fatal_ok", ()))
            if code not in allowed:
                self.fail("unexpected-error", f"FATAL not allowed here: {text}", seg)
            self.log(f"  <- {text} (reconnecting)")
            raise Reconnect(text)
        if idle:
            self.fail("protocol-desync", f"ErrorResponse while idle: {text}")
            raise Reconnect(text)
        return code, f.get("M", "")

    # ---------------------------------------------------------------- units

    def unit(self, segs, pipelined=False, allow=(), guard=False, check_rows=True):
        """Sends segs (in one write when pipelined) and reads every reply. Returns segs
        with .error/.tags/.status filled in. allow: SQLSTATEs the caller expects."""
        self.drain_stray()
        deadline = time.monotonic() + OP_TIMEOUT
        desc = " ;; ".join(f"{s.kind}[{cut(s.sql, 200)}]" for s in segs)
        self.log(f"{'pipelined ' if pipelined else ''}{desc}")
        try:
            if pipelined:
                self._send(b"".join(s.data for s in segs))
                for s in segs:
                    self._read_seg(s, deadline)
            else:
                for s in segs:
                    self._send(s.data)
                    self._read_seg(s, deadline)
        except OpTimeout:
            self.fail("hang", f"no complete reply within {OP_TIMEOUT:.0f}s "
                      f"(waiting in: {desc[:300]})")
            raise Reconnect("timeout")
        except EOFError:
            if not self.malformed and not self.conn.buf:
                # (a close in the middle of a message cannot carry a FATAL: allowed)
                self.fail("closed-without-fatal", "the connection closed without a FATAL "
                          "ErrorResponse (SPEC §8: the server's FATAL or 08006, then close)")
            raise Reconnect("eof")
        out = []
        for s in segs:
            self.run.stats["statements"] += s.n
            if s.sql.strip().upper() in ("ROLLBACK", "COMMIT"):
                self._check_tx_end(s)
            if s.error:
                out.append(f"E:{s.error[0]}")
                self._judge_error(s, allow, guard)
            else:
                out.append(",".join(s.tags) or "ok")
                if guard and any(t.startswith("SET") or t == "RESET" or t.startswith("SELECT")
                                 for t in s.tags):
                    self.fail("guard-bypass", f"guard attempt was not refused: {cut(s.sql)} "
                              f"answered {s.tags}", s)
        self.log(f"  <- {' ; '.join(out)} [{self.status}]")
        return segs

    def _check_tx_end(self, s):
        """A plain ROLLBACK or COMMIT ends the transaction whatever state it is in: in an
        aborted block too (COMMIT answers ROLLBACK there), and a failing COMMIT (23505,
        40001) rolls back. A session that cannot leave its transaction block stays
        pinned to its server for good."""
        if s.status != "I" or (s.error and s.error[0] == "25P02"):
            got = f"ERROR {s.error[0]} {s.error[1]}" if s.error else ",".join(s.tags)
            self.fail("rollback-failed", f"{s.sql.strip()} (sent with transaction status "
                      f"{s.pre_status}) answered {got} with status {s.status}: the session "
                      "cannot leave its transaction block", s)
            if s.error and s.error[0] == "25P02":
                s.error = None  # reported here, not again as an error
        elif not s.error and s.tags[-1:] not in (["ROLLBACK"], ["COMMIT"]):
            self.fail("rollback-failed", f"{s.sql.strip()} answered {s.tags}", s)

    def _judge_error(self, s, allow, guard):
        code, m = s.error
        if code in ("53300", "57P03") or (code == "3F000" and self.tenant in ("sx", "s3")):
            # the unit never ran (no server, or its tenant's schema is missing and the
            # state block failed): what the op planned after it is off
            self.pool_wait_op = self.nop
        if code == "25P01" and getattr(self, "pool_wait_op", None) == self.nop:
            return  # e.g. ROLLBACK AND CHAIN after a BEGIN that got no server or 3F000
        if code == "25P02" and s.pre_status != "E":
            # PostgreSQL refuses statements with 25P02 only inside an aborted block; a
            # simple Query or a batch stops at its own first error
            self.fail("stray-abort", f"25P02 ({m}) for a statement sent with transaction "
                      f"status {s.pre_status}: something ran in front of it and failed", s)
            return
        if code == "53300" and "query_wait_timeout" in m and self.run.pool_mode == "transaction" \
                and self.mode != "database":
            # every op holds a server for well under a second: a client that waited
            # query_wait_timeout for one means server connections leaked
            self.fail("starved", f"no server connection within query_wait_timeout: {m}", s)
            return
        if self.tenant == "sx" and code not in ("3F000", "25P02", "57014", "53300", "57P03"):
            # sch_nosuch does not exist: every unit must fail with 3F000 (SPEC §4)
            self.fail("missing-schema", f"tenant sx (schema sch_nosuch does not exist) got "
                      f"{code} {m} instead of 3F000: its statement ran", s)
            return
        if code in allow or code in ("25P02", "40001", "40P01", "53300", "57P03"):
            if code == "42501" and "row-level security" in m:
                self.fail("cross-tenant", f"insert refused by RLS ({m}): it ran under another "
                          "tenant's tenant GUC", s)
            return
        if code == "57014":
            if "query_timeout" in m:
                return
            if "statement timeout" in m:
                if self.run.tiny_timeout_used.get(self.tenant):
                    return
                self.fail("cross-tenant", f"statement timeout although tenant {self.tenant} never "
                          "set a short statement_timeout: another tenant's setting", s)
                return
            if "user request" in m:
                if self.cancel_sent and time.monotonic() - self.cancel_sent < 30:
                    return
                if self.run.tiny_timeout_used.get(self.tenant):
                    # PostgreSQL's own: a statement_timeout that fired as the last statement
                    # ended is taken at the next one, whose timeout indicator was reset, and
                    # reported as "user request" (the client set that tiny timeout itself)
                    return
                self.fail("foreign-cancel", "statement canceled by a cancel request this client "
                          "never sent", s)
                return
            return
        if code == "23514":
            self.fail("cross-tenant", f"CHECK violation ({m}): the insert ran against another "
                      "tenant's table", s)
            return
        if code == "42501":
            if "row-level security" in m:
                self.fail("cross-tenant", f"insert refused by RLS ({m}): it ran under another "
                          "tenant's tenant GUC", s)
            else:
                self.fail("unexpected-error", f"42501 outside a guard attempt: {m}", s)
            return
        if code == "3F000" and self.tenant in ("sx", "s3"):
            return
        if code == "26000" and "pgt" in m:
            self.fail("lost-statement", f"26000 naming pgtenant's own statement: {m}", s)
            return
        self.fail("unexpected-error", f"ERROR {code}: {m}", s)

    def _read_seg(self, s, deadline):
        """Reads the replies of one segment up to its ReadyForQuery."""
        columns = None
        exp = list(s.expect)
        pos = 0
        completions = 0
        in_exec = False
        errors = 0
        s.pre_status = self.status
        while True:
            kind, body = self._recv(deadline)
            if kind in (b"A", b"N", b"S"):
                self._async(kind, body)
                continue
            if kind == b"E":
                f = pgt.parse_fields(body)
                code, m = self._fatal_or_error(f, s)
                errors += 1
                if errors > 1:
                    raise Reconnect(self._desync(f"second ErrorResponse in one segment: {code} "
                                                 f"{m} after {s.error}"))
                s.error = (code, m)
                in_exec = False
                continue
            if kind == b"Z":
                s.status = body[:1].decode()
                self.status = s.status
                if not s.error:
                    if s.kind == "Q" and completions != s.n:
                        raise Reconnect(self._desync(
                            f"simple Query of {s.n} statements got {completions} completions "
                            f"({s.tags}): {cut(s.sql)}"))
                    if s.kind == "X" and pos != len(exp):
                        raise Reconnect(self._desync(
                            f"ReadyForQuery after {exp[:pos]} of expected {exp}: {cut(s.sql)}"))
                elif s.kind == "Q" and completions >= s.n:
                    raise Reconnect(self._desync(f"Query of {s.n} statements: {completions} "
                                                 f"completions and an error: {cut(s.sql)}"))
                return
            if s.error and s.kind == "X":
                raise Reconnect(self._desync(f"{kind.decode(errors='replace')} after an error "
                                             f"in an extended batch (skipped to Sync): {cut(s.sql)}"))
            k = kind.decode(errors="replace")
            if s.kind == "X":
                if not in_exec:
                    want = exp[pos] if pos < len(exp) else None
                    if k not in _TOKEN.get(want, ""):
                        raise Reconnect(self._desync(f"got {k!r}, expected {want!r} (sequence "
                                                     f"{exp}, at {pos}): {cut(s.sql)}"))
                    pos += 1
                    in_exec = want == "E"
                elif k not in "DCIsdc":
                    raise Reconnect(self._desync(f"got {k!r} inside an Execute's reply: "
                                                 f"{cut(s.sql)}"))
            if k == "T":
                columns = pgt.parse_row_description(body)
            elif k == "n":
                columns = None
            elif k == "D":
                if columns is None:
                    raise Reconnect(self._desync(f"DataRow without RowDescription: {cut(s.sql)}"))
                self._check_row(columns, pgt.parse_data_row(body, errors="replace"), s)
            elif k in ("C", "I", "s"):
                completions += 1
                in_exec = False
                s.tags.append(body.rstrip(b"\0").decode() if k == "C" else k)
                if s.kind == "Q":
                    columns = None
            elif k == "G":
                self._copy_in(s)
            elif k == "d":
                self._check_copy_row(body, s)
            elif k in ("1", "2", "3", "t") and s.kind == "Q":
                raise Reconnect(self._desync(f"extended-protocol reply {k!r} to a simple Query: "
                                             f"{cut(s.sql)}"))
            elif k in ("H", "c", "1", "2", "3", "t"):
                pass
            else:
                raise Reconnect(self._desync(f"unexpected message {k!r} in reply to {cut(s.sql)}"))

    def _copy_in(self, s):
        if s.copy_in is None:
            self._send(msg(b"f", b"iso: no data\0"))
        else:
            data = b"".join(msg(b"d", line.encode()) for line in s.copy_in)
            data += msg(b"c")
            if s.kind == "X":
                data += ext_sync()  # the Sync sent with the batch was ignored in copy-in mode
            self._send(data)

    def _check_row(self, columns, row, s):
        self.run.stats["rows"] += 1
        if len(columns) != len(row):
            raise Reconnect(self._desync(f"DataRow of {len(row)} columns for a RowDescription "
                                         f"of {len(columns)}: {cut(s.sql)}"))
        schemas = self.run.schemas_of(self.tenant)
        for name, v in zip(columns, row):
            kind = oracle.kind_of_column(name)
            if kind is None:
                continue
            self.run.stats["markers"] += 1
            for p in oracle.check(kind, v, self.tenant, schemas):
                self.fail("cross-tenant", p + f"  [column {name} of: {cut(s.sql)}]", s)
            if kind == "sp" and self.tenant == "sx":
                self.fail("missing-schema", f"tenant sx (schema sch_nosuch does not exist) ran a "
                          f"statement with search_path {v!r} instead of getting 3F000", s)
            if s.probe and self.status == "I":
                self._check_own_params(kind, v, s)

    def _check_own_params(self, kind, v, s):
        """A standalone probe outside a transaction: the client's reported
        parameters (startup values and its own SETs follow it, SPEC §3/§4) and, in
        session mode, its own SETs must be in force."""
        rep = {"tz": "TimeZone", "an": "application_name"}.get(kind)
        if rep and rep in self.reported and self.reported[rep] != v:
            self.fail("param-drift", f"{rep} is {v!r} on the server but the client was told "
                      f"{self.reported[rep]!r} (ParameterStatus)", s)
        guc = {"wm": "work_mem", "st": "statement_timeout"}.get(kind)
        if guc and self.run.pool_mode == "session" and guc in self.sess_gucs \
                and self.sess_gucs[guc] != v:
            self.fail("session-state-lost", f"session mode: this client SET {guc} = "
                      f"{self.sess_gucs[guc]!r} earlier in its session, now it is {v!r}", s)

    def _check_copy_row(self, body, s):
        line = body.decode(errors="replace").rstrip("\n")
        first = line.split("\t", 1)[0]
        self.run.stats["rows"] += 1
        for p in oracle.check("row", first, self.tenant, self.run.schemas_of(self.tenant)):
            self.fail("cross-tenant", p + f"  [COPY TO STDOUT of: {cut(s.sql)}]", s)

    # ---------------------------------------------------------------- helpers for ops

    def send_cancel(self, key):
        try:
            s = socket.create_connection(("127.0.0.1", self.run.port), timeout=5)
            s.sendall(struct.pack("!IIII", 16, 80877102, key[0], key[1]))
            s.settimeout(5)
            try:
                s.recv(1)
            except OSError:
                pass
            s.close()
        except OSError:
            pass

    def finish_tx(self):
        if self.conn is not None and self.status in ("T", "E"):
            self.unit([Q("ROLLBACK")])
