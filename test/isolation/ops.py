"""
The operation mix. Each op is a function of a Client that sends one or more
units through Client.unit (which checks every reply) and may leave state on
the server connection (SETs, temp tables, LISTEN, prepared statements, …) for
the pooler to clean up before another tenant gets it. Every probe asks for the
markers of oracle.PROBE_COLS, so the state a statement runs under is checked
wherever it lands. OPS at the bottom: name -> (weight, function).
"""

import struct
import time

import oracle
import world
from client import Q, X, Reconnect, cut
from pgt import msg, ext_parse, ext_bind, ext_execute, ext_sync

PROBE = oracle.PROBE


def _own_insert(c, k=None, note="x"):
    kk = "NULL" if k is None else str(k)
    return (f"INSERT INTO items (tenant, k, note) VALUES ('{c.tenant}', {kk}, '{note}') "
            f"RETURNING tenant AS m_row, current_setting('search_path') AS m_sp")


def _probe_seg(c, probe=False):
    if c.rng.random() < 0.5:
        return Q(PROBE, probe=probe)
    return X(("S", PROBE), probe=probe)


def _maybe_replica_hint(c, sql):
    if c.run.replica and c.rng.random() < 0.3:
        return "/* pgtenant:replica */ " + sql
    return sql


# ---------------------------------------------------------------- plain statements

def probe(c):
    sql = _maybe_replica_hint(c, PROBE)
    c.unit([Q(sql, probe=True) if c.rng.random() < 0.5 else X(("S", sql), probe=True)])


def probe_params(c):
    c.unit([X(("S", "SELECT $1::int AS n, " + ", ".join(oracle.PROBE_COLS), (c.rng.randint(1, 99),)),
              probe=True)])


def insert(c):
    sql = _own_insert(c, note=f"c{c.cid}")
    c.unit([Q(sql) if c.rng.random() < 0.5 else X(("S", sql))])


def multi_statement(c):
    sqls = [_own_insert(c), PROBE, "SELECT 1 AS one", PROBE]
    n = c.rng.randint(2, 4)
    c.unit([Q("; ".join(sqls[:n]), n=n)])


def pipelined(c):
    segs = [_probe_seg(c), X(("S", _own_insert(c))), Q(PROBE), X(("S", PROBE), ("S", PROBE))]
    c.rng.shuffle(segs)
    c.unit(segs[:c.rng.randint(2, 4)], pipelined=True)


def large_result(c):
    sql = ("SELECT i.tenant AS m_row, repeat('x', 400) AS pad, g FROM "
           "(SELECT tenant FROM items ORDER BY id DESC LIMIT 20) i, generate_series(1, 300) g")
    c.unit([Q(sql) if c.rng.random() < 0.5 else X(("S", sql))])


# ---------------------------------------------------------------- transactions

def _tx(c, body, end, allow=()):
    """BEGIN; body...; end — as separate Queries, one Query, pipelined Queries, one
    extended batch (one Sync) or extended with a Sync each."""
    stmts = ["BEGIN"] + body + end
    style = c.rng.randrange(5)
    if style == 0:
        return c.unit([Q(s) for s in stmts], allow=allow)
    if style == 1:
        return c.unit([Q("; ".join(stmts), n=len(stmts))], allow=allow)
    if style == 2:
        return c.unit([Q(s) for s in stmts], pipelined=True, allow=allow)
    if style == 3:
        return c.unit([X(*[("S", s) for s in stmts])], allow=allow)
    return c.unit([X(("S", s)) for s in stmts], pipelined=True, allow=allow)


def tx_commit(c):
    _tx(c, [_own_insert(c), PROBE], ["COMMIT"])


def tx_rollback(c):
    _tx(c, [_own_insert(c), PROBE], ["ROLLBACK"])


def tx_chain(c):
    end = c.rng.choice(["ROLLBACK AND CHAIN", "COMMIT AND CHAIN"])
    _tx(c, [PROBE], [end, PROBE, _own_insert(c), "COMMIT"])


def tx_failing_commit(c):
    """A deferred unique constraint fails at COMMIT (23505): the COMMIT rolls back."""
    k = c.rng.randint(1, 10 ** 9)
    _tx(c, [_own_insert(c, k), _own_insert(c, k), PROBE], ["COMMIT"], allow=("23505",))


def tx_serialization(c):
    """COMMIT of a SERIALIZABLE transaction, sometimes refused by a concurrent one."""
    stmts = ["BEGIN ISOLATION LEVEL SERIALIZABLE",
             "SELECT count(*) AS n FROM items", _own_insert(c), "COMMIT"]
    c.unit([Q("; ".join(stmts), n=4)], allow=("40001",))


def tx_prepare(c):
    """PREPARE TRANSACTION: accepted (then COMMIT/ROLLBACK PREPARED), or refused
    because the transaction used a temporary table, or too many are prepared."""
    gid = f"iso_{c.cid}_{c.nop}_{c.rng.randint(0, 10 ** 6)}"
    body = [_own_insert(c)]
    if c.rng.random() < 0.3:
        body.insert(0, "CREATE TEMP TABLE IF NOT EXISTS tmp_mark (tenant text)")
    segs = _tx(c, body, [f"PREPARE TRANSACTION '{gid}'"], allow=("0A000", "53400", "42P07"))
    last = segs[-1]
    if not any(s.error for s in segs) and last.tags and "PREPARE" in last.tags[-1]:
        fin = c.rng.choice(["COMMIT PREPARED", "ROLLBACK PREPARED"])
        c.unit([Q(f"{fin} '{gid}'")])
    c.unit([_probe_seg(c)], allow=("3F000",))


def rollback_then_select(c):
    v = c.rng.randrange(6)
    if v == 0:
        c.unit([Q("ROLLBACK; " + PROBE, n=2)])
    elif v == 1:
        c.unit([Q("COMMIT; " + PROBE, n=2)])
    elif v == 2:
        c.unit([X(("S", "ROLLBACK"), ("S", PROBE))])
    elif v == 3:
        c.unit([Q(f"BEGIN; {PROBE}; ROLLBACK; {PROBE}", n=4)])
    elif v == 4:
        c.unit([Q(f"BEGIN; {_own_insert(c)}; COMMIT; {PROBE}", n=4)])
    else:
        c.unit([X(("S", "BEGIN"), ("S", PROBE), ("S", "ROLLBACK"), ("S", PROBE))])


def procedure(c):
    """Procedures and DO blocks that COMMIT or ROLLBACK inside, then a statement."""
    v = c.rng.randrange(5)
    proc = c.rng.choice(["CALL iso_commit()", "CALL iso_rollback()",
                         "DO $$BEGIN COMMIT; END$$", "DO $$BEGIN ROLLBACK; END$$"])
    if v == 0:
        c.unit([X(("S", proc), ("S", PROBE))])
    elif v == 1:
        c.unit([Q(proc), _probe_seg(c)], pipelined=True)
    elif v == 2:
        c.unit([X(("S", proc)), X(("S", PROBE))], pipelined=True)
    elif v == 3:
        # in a multi-statement Query the procedure may not end the transaction (2D000)
        c.unit([Q(f"{proc}; {PROBE}", n=2)], allow=("2D000",))
    else:
        c.unit([Q(proc)])
        c.unit([_probe_seg(c)])


def savepoint(c):
    _tx(c, ["SAVEPOINT a", _own_insert(c), PROBE, "ROLLBACK TO SAVEPOINT a", PROBE,
            "SAVEPOINT b", "SELECT 1/0 AS boom" if c.rng.random() < 0.5 else PROBE],
        [], allow=("22012",))
    if c.status != "I":
        c.unit([Q(c.rng.choice(["ROLLBACK", "COMMIT", "ROLLBACK AND CHAIN"]))])
        if c.status != "I":
            c.unit([Q("ROLLBACK")])
    c.unit([_probe_seg(c)])


def error_in_tx(c):
    if c.rng.random() < 0.3:
        # as the first unit of a fresh client connection
        c.drop()
        if not c.ensure_connected():
            return
    v = c.rng.randrange(3)
    if v == 0:
        c.unit([Q("BEGIN; SELECT 1/0", n=2)], allow=("22012",))
    elif v == 1:
        c.unit([Q("BEGIN"), Q(PROBE), Q("SELECT 1/0"), Q(PROBE)], allow=("22012",))
    else:
        c.unit([X(("S", "BEGIN"), ("S", "SELECT 1/0"))], allow=("22012",))
    c.unit([Q(c.rng.choice(["ROLLBACK", "COMMIT", "ROLLBACK AND CHAIN"]))])
    if c.status != "I":
        c.unit([Q("ROLLBACK")])
    c.unit([_probe_seg(c)])


def error_in_pipeline(c):
    segs = [X(("S", PROBE), ("S", "SELECT 1/0"), ("S", PROBE)), X(("S", PROBE)),
            Q(f"SELECT 1/0; {PROBE}", n=2), Q(PROBE)]
    c.rng.shuffle(segs)
    c.unit(segs, pipelined=True, allow=("22012",))


# ---------------------------------------------------------------- session state

def set_guc(c):
    guc, vals = c.rng.choice([("work_mem", world.work_mem_values(c.tenant)),
                              ("statement_timeout", world.stmt_timeout_values(c.tenant)),
                              ("TimeZone", world.tz_values(c.tenant)),
                              ("application_name", [f"iso.{c.tenant}.c{c.cid}.x"])])
    v = c.rng.choice(vals)
    form = c.rng.randrange(7)
    if form == 0:
        c.unit([Q(f"SET {guc} = '{v}'")])
        track = True
    elif form == 1:
        c.unit([X(("S", f"SELECT set_config('{guc}', '{v}', false) AS m_x"))])
        track = True
    elif form == 2:
        c.unit([Q(f"SET SESSION {guc} TO '{v}'; {PROBE}", n=2)])
        track = True
    elif form == 3:
        _tx(c, [f"SET LOCAL {guc} = '{v}'", PROBE], ["COMMIT"])
        track = False
    elif form == 4:
        _tx(c, [f"SET {guc} = '{v}'", PROBE], ["ROLLBACK"])
        track = False
    elif form == 5:
        c.unit([Q(f"RESET {guc}")])
        c.sess_gucs.pop(guc, None)
        track = False
    else:
        c.unit([Q(f"SET {guc} TO DEFAULT")])
        c.sess_gucs.pop(guc, None)
        track = False
    if track and c.status == "I" and guc in ("work_mem", "statement_timeout"):
        c.sess_gucs[guc] = v
    c.unit([_probe_seg(c, probe=True)])


def discard(c):
    what = c.rng.choice(["DISCARD ALL", "DISCARD PLANS", "DISCARD SEQUENCES", "DISCARD TEMP",
                         "RESET ALL", "DEALLOCATE ALL"])
    if what in ("DISCARD ALL", "RESET ALL"):
        c.sess_gucs.clear()
    if what in ("DISCARD ALL", "DEALLOCATE ALL"):
        c.named.clear()  # the client's own statements may go with it
    v = c.rng.randrange(4)
    # DISCARD ALL may not run in the implicit transaction of a multi-statement Query; a
    # statement after RESET ALL / DISCARD ALL in the same unit is refused by pgtenant's
    # guard for schema and shared tenants (it would run with the state reset): 42501
    after = ("25001", "42501") if what in ("DISCARD ALL", "RESET ALL") and c.mode != "database" \
        else ("25001",)
    if v == 0:
        c.unit([Q(f"{what}; {PROBE}", n=2)], allow=after)
    elif v == 1:
        c.unit([X(("S", what), ("S", PROBE))], allow=after)
    elif v == 2:
        c.unit([Q(what), _probe_seg(c)], pipelined=True)
    else:
        c.unit([X(("S", what))])
        c.unit([_probe_seg(c)])


GUARD_SPELLINGS = [
    "SET search_path = 'public'",
    "SET search_path TO {other}",
    'SET "search_path" TO {other}',
    "SET SESSION search_path TO {other}",
    "set Search_Path = {other}",
    "SET/**/search_path=public",
    "RESET search_path",
    "SET search_path TO DEFAULT",
    "SELECT set_config('search_path', '{other}', false)",
    "SELECT pg_catalog.set_config('search_path', '{other}', false)",
    'SELECT "set_config"(\'search_path\', \'{other}\', false)',
    "SELECT set_config('SEARCH_PATH', '{other}', false)",
    'SET U&"search\\005fpath" TO {other}',
    "SELECT U&\"set\\005fconfig\"('search_path', '{other}', false)",
    "SET app.tenant_id = '{otherid}'",
    'SET "app"."tenant_id" TO \'{otherid}\'',
    "SET SESSION app.tenant_id TO '{otherid}'",
    "RESET app.tenant_id",
    "SELECT set_config('app.tenant_id', '{otherid}', false)",
    "SELECT pg_catalog.set_config('app.tenant_id', '{otherid}', false)",
    "SET ROLE postgres",
    "SET ROLE other",
    "SET SESSION AUTHORIZATION postgres",
    "SET SESSION AUTHORIZATION DEFAULT",
    "SET SCHEMA '{other}'",
]
GUARD_IN_TX = ["SET LOCAL search_path = {other}", "SET LOCAL app.tenant_id = '{otherid}'"]


def guard(c):
    others = [t for t in ("s1", "s2", "s3") if t != c.tenant]
    other = world.SCHEMA_TENANTS[c.rng.choice(others)]
    otherid = c.rng.choice([t for t in ("h1", "h2") if t != c.tenant])
    if c.mode == "database":
        # no guard in database mode: the tenant's own SETs, which must not reach others
        own = "d0priv, public" if c.tenant == "d0" else f"dpriv_{c.tenant}, public"
        sql = c.rng.choice([f"SET search_path = {own}", f"SET app.tenant_id = '{c.tenant}'",
                            f"SELECT set_config('search_path', '{own}', false)"])
        c.unit([Q(sql) if c.rng.random() < 0.5 else X(("S", sql))], allow=("42501",))
        c.unit([_probe_seg(c)])
        return
    in_tx = c.rng.random() < 0.3
    spell = c.rng.choice(GUARD_SPELLINGS + (GUARD_IN_TX if in_tx else []))
    sql = spell.format(other=other, otherid=otherid)
    if in_tx:
        # only the middle segment is the attempt: the probe after it runs (and is judged
        # by its markers) when the BEGIN never ran (3F000 for a missing schema)
        segs = c.unit([Q("BEGIN"), Q(sql) if c.rng.random() < 0.5 else X(("S", sql)), Q(PROBE)],
                      allow=("42501", "25P02"))
        if not segs[1].error:
            c.fail("guard-bypass", f"guard attempt inside a transaction was not refused: {sql}")
        elif segs[1].error[0] not in ("42501", "25P02", "3F000", "57014", "53300", "57P03"):
            c.fail("guard-bypass", f"guard attempt inside a transaction answered "
                   f"{segs[1].error[0]} instead of 42501: {sql}")
        c.unit([Q(c.rng.choice(["ROLLBACK", "COMMIT"]))])
    else:
        seg = Q(sql) if c.rng.random() < 0.5 else X(("S", sql))
        c.unit([seg], allow=("42501",), guard=True)
        if not seg.error:
            c.fail("guard-bypass", f"guard attempt was not refused: {sql} -> {seg.tags}", seg)
        elif seg.error[0] not in ("42501", "25P02", "3F000", "57014"):
            c.fail("guard-bypass", f"guard attempt answered {seg.error}, not 42501: {sql}", seg)
    c.unit([_probe_seg(c)])


def hostile(c):
    """What the guard does not catch (SPEC §4: not prevented for a shared role):
    a change of the client's own state inside a unit. It must not outlive the unit
    for another tenant (and the next unit gets the state applied again)."""
    if c.mode == "database":
        return guard(c)
    var = "search_path" if c.mode == "schema" else "app.tenant_id"
    val = f"iso_void_{c.tenant}" + (", public" if var == "search_path" else "")
    sql = c.rng.choice([
        f"UPDATE pg_settings SET setting = '{val}' WHERE name = '{var}'",
        f"DO $$BEGIN PERFORM set_config('{var}', '{val}', false); END$$",
        f"SELECT set_config(lower('{var.upper()}'), '{val}', false) AS m_x",
    ])
    c.unit([Q(sql)], allow=("42501",))


def temp_table(c):
    v = c.rng.randrange(4)
    if v == 0:
        c.unit([Q("CREATE TEMP TABLE IF NOT EXISTS tmp_mark (tenant text); "
                  f"INSERT INTO tmp_mark VALUES ('{c.tenant}')", n=2)], allow=("42P07",))
    elif v == 1:
        c.unit([Q("SELECT tenant AS m_tmp FROM pg_temp.tmp_mark")], allow=("42P01",))
    elif v == 2 and c.mode == "schema":
        # a temporary `items` must never shadow a schema tenant's table (pg_temp is last
        # in its search_path); elsewhere it would shadow the client's own table
        c.unit([Q(f"CREATE TEMP TABLE IF NOT EXISTS items AS SELECT '{c.tenant}:tmp'::text AS "
                  "tenant")], allow=("42P07",))
        c.unit([_probe_seg(c)])
    else:
        c.unit([X(("S", "SELECT tenant AS m_tmp FROM pg_temp.tmp_mark"))], allow=("42P01",))


def many_temps(c):
    """Temp tables, LISTEN and a tiny statement_timeout left behind together: a
    DISCARD ALL that resets this connection may itself time out."""
    c.run.tiny_timeout_used[c.tenant] = True
    c.unit([Q("DO $$BEGIN FOR i IN 1..40 LOOP EXECUTE format('CREATE TEMP TABLE IF NOT EXISTS "
              "tt_%s (a int)', i); END LOOP; END$$"),
            Q("CREATE TEMP TABLE IF NOT EXISTS tmp_mark (tenant text); "
              f"INSERT INTO tmp_mark VALUES ('{c.tenant}'); LISTEN chan_{c.tenant}; "
              f"SET statement_timeout = '{world.tiny_timeout(c.tenant)}'", n=4)],
           allow=("42P07", "57014"))
    c.sess_gucs.pop("statement_timeout", None)
    if c.rng.random() < 0.5:
        c.unit([Q("RESET statement_timeout")], allow=("57014",))


def statement_timeout(c):
    c.run.tiny_timeout_used[c.tenant] = True
    c.unit([Q(f"SET statement_timeout = '{world.tiny_timeout(c.tenant)}'"),
            Q("SELECT pg_sleep(0.05)"), Q("RESET statement_timeout")], allow=("57014",))
    c.sess_gucs.pop("statement_timeout", None)


def with_hold(c):
    c.unit([Q("DECLARE iso_cur CURSOR WITH HOLD FOR SELECT tenant AS m_row FROM items")],
           allow=("42P03",))
    c.unit([Q("FETCH 3 FROM iso_cur") if c.rng.random() < 0.5 else X(("S", "FETCH 3 FROM iso_cur"))],
           allow=("34000",))
    if c.rng.random() < 0.5:
        c.unit([Q("CLOSE iso_cur")], allow=("34000",))


def sql_prepare(c):
    v = c.rng.randrange(5)
    body = f"SELECT '{c.tenant}'::text AS m_lit, " + ", ".join(oracle.PROBE_COLS)
    if v == 0:
        c.unit([Q(f"PREPARE ps_iso AS {body}")], allow=("42P05",))
    elif v == 1:
        c.unit([Q("EXECUTE ps_iso") if c.rng.random() < 0.5 else X(("S", "EXECUTE ps_iso"))],
               allow=("26000",))
    elif v == 2:
        c.unit([Q("DEALLOCATE ps_iso")], allow=("26000",))
    elif v == 3:
        c.named.clear()
        form = c.rng.randrange(3)
        if form == 0:
            c.unit([Q("DEALLOCATE ALL")])
        elif form == 1:
            c.unit([X(("S", "DEALLOCATE ALL"))])
        else:
            c.unit([Q(f"SELECT 1 AS one; DEALLOCATE ALL; {PROBE}", n=3)])
    else:
        c.unit([Q(f"PREPARE ps_iso AS {body}; EXECUTE ps_iso; DEALLOCATE ps_iso", n=3)],
               allow=("42P05",))


NAMED_TEXTS = [oracle.PROBE_NAMED,
               "SELECT tenant AS m_row, current_setting('search_path') AS m_sp FROM items "
               "WHERE id > $1::int",
               "INSERT INTO items (tenant, note) VALUES ($1, 'named') RETURNING tenant AS m_row"]


def _named_texts(c):
    """Shared texts, plus texts that leave session state behind when executed (a SET,
    LISTEN, a temp table): re-prepared by the pooler on another server connection, they
    must still mark that connection."""
    wm = world.work_mem_values(c.tenant)[c.cid % 4]
    return [
        f"SET work_mem = '{wm}'",
        f"SELECT set_config('statement_timeout', '{world.stmt_timeout_values(c.tenant)[0]}', "
        "false) AS m_st",
        f"LISTEN chan_{c.tenant}",
        "CREATE TEMP TABLE IF NOT EXISTS tmp_mark AS SELECT "
        f"'{c.tenant}'::text AS tenant",
    ]


def _named_params(c, text):
    if "$1::int" in text:
        return (0,)
    if "VALUES ($1" in text:
        return (c.tenant,)
    return ()


def _named_executed(c, text, seg):
    """A named statement that SETs a GUC changes what this session holds (session mode).
    seg None: about to run it (its own result shows the new value: no expectation then)."""
    import re
    m = (re.match(r"\s*SET\s+(?:SESSION\s+)?(\w+)\s*(?:=|TO)\s*'?([^';]*)'?", text, re.I) or
         re.search(r"set_config\('(\w+)', '([^']*)', false\)", text, re.I))
    if not m:
        return
    if seg is not None and not seg.error:
        c.sess_gucs[m.group(1).lower()] = m.group(2)
    else:
        c.sess_gucs.pop(m.group(1).lower(), None)


def named_state(c):
    """Named statements whose execution leaves session state (SET, LISTEN, temp table)."""
    named_statement(c, _named_texts(c))


def named_statement(c, texts=None):
    """Driver-named statements: Parse once, Bind later (possibly on another server
    connection), Close sometimes. The same texts for every tenant."""
    v = c.rng.randrange(5)
    if v in (0, 1) or not c.named:
        name = f"st{c.rng.randrange(4)}"
        text = c.rng.choice(texts or NAMED_TEXTS)
        # Close first: closing a statement that does not exist is no error, and after a
        # DEALLOCATE ALL / DISCARD ALL the client cannot know whether it still has it
        c.named.pop(name, None)
        if v != 0:  # Parse and execute (v 1, or any v when the client has no statement yet)
            _named_executed(c, text, None)
        if v == 0:
            segs = c.unit([X(("CS", name), ("P", text, name))])
        else:
            segs = c.unit([X(("CS", name), ("P", text, name), ("N", name, _named_params(c, text)))])
        if not segs[0].error:
            c.named[name] = text
        if v != 0:
            _named_executed(c, text, segs[0])
        return
    name = c.rng.choice(sorted(c.named))
    text = c.named[name]
    if v == 4:
        c.unit([X(("CS", name))])
        del c.named[name]
        return
    seg = X(("N", name, _named_params(c, text)))
    _named_executed(c, text, None)
    c.unit([seg] if v == 2 else [Q("SELECT 1 AS one"), seg, X(("N", name, _named_params(c, text)))],
           pipelined=(v == 3))
    _named_executed(c, text, seg)
    if seg.error and seg.error[0] == "26000":
        c.fail("lost-statement", f"Bind of statement {name!r} that this client parsed (and never "
               f"closed, DEALLOCATEd or DISCARDed): {seg.error[1]}", seg)


def listen_notify(c):
    v = c.rng.randrange(5)
    chan = f"chan_{c.tenant}"
    if v == 4:
        c.unit([Q(f"LISTEN {chan}; NOTIFY {chan}, '{c.tenant}'", n=2)])
    elif v == 0:
        c.unit([Q(f"LISTEN {chan}")])
    elif v == 1:
        c.unit([Q(f"NOTIFY {chan}, '{c.tenant}'")])
    elif v == 2:
        c.unit([X(("S", f"SELECT pg_notify('{chan}', '{c.tenant}') AS n"))])
    else:
        c.unit([Q("UNLISTEN *")])


def copy(c):
    v = c.rng.randrange(4)
    rows = [f"{c.tenant}\tcopy{c.cid}\n" for _ in range(c.rng.randint(1, 50))]
    if v == 0:
        # COPY FROM is refused on a table under RLS (0A000): shared tenants and d0
        c.unit([Q("COPY items (tenant, note) FROM STDIN", copy_in=rows)], allow=("0A000",))
    elif v == 1:
        c.unit([X(("S", "COPY items (tenant, note) FROM STDIN"), copy_in=rows)], allow=("0A000",))
    elif v == 2:
        c.unit([Q("COPY (SELECT tenant, note FROM items ORDER BY id DESC LIMIT 300) TO STDOUT")])
    else:
        c.unit([X(("S", "COPY (SELECT tenant, note FROM items ORDER BY id DESC LIMIT 300) TO STDOUT"))])


# ---------------------------------------------------------------- connections and faults

def reconnect(c):
    """A new session with startup parameters, valid, invalid or forbidden."""
    c.drop()
    v = c.rng.randrange(6)
    if v == 0:
        params = {"TimeZone": c.rng.choice(world.tz_values(c.tenant))}
    elif v == 1:
        params = {"work_mem": c.rng.choice(world.work_mem_values(c.tenant)),
                  "DateStyle": "SQL, DMY"}
    elif v == 2:
        params = {"options": f"-c statement_timeout={c.rng.choice(world.stmt_timeout_values(c.tenant))}"}
    elif v == 3:
        params = {c.rng.choice(["work_mem", "TimeZone", "statement_timeout"]):
                  c.rng.choice(["banana", "Mars/Olympus_Mons"])}
    elif v == 4 and c.mode != "database":
        params = {c.rng.choice(["search_path", "app.tenant_id", "role"]): "public"}
    else:
        params = {}
    err = c.connect(params)
    c.log(f"reconnect with {params} -> {err or 'ok'}")
    bad = v == 3
    forbidden = v == 4 and c.mode != "database"
    if err is not None:
        code = getattr(err, "sqlstate", None)
        if bad and code in ("22023", "22P02", "08P01", "42704", None):
            return
        if forbidden and code == "42501":
            return
        if code in ("53300", "57P03", None, "08006", "57P01"):
            return
        c.fail("unexpected-error", f"startup with {params} refused: {err}")
        return
    if forbidden:
        c.fail("guard-bypass", f"startup parameter {params} accepted (SPEC §3: FATAL 42501)")
    if bad:
        # PostgreSQL refuses an invalid value at startup; pgtenant must not accept it
        # silently (refusing at the first statement would do too)
        seg = _probe_seg(c)
        c.fatal_ok = ("22023", "22P02")
        try:
            c.unit([seg], allow=("22023", "22P02"))
        except Reconnect:
            c.drop()
            return
        finally:
            c.fatal_ok = ()
        if not seg.error:
            c.fail("bad-startup-param", f"startup parameter {params} was accepted silently "
                   f"(PostgreSQL answers FATAL 22023)", seg)
        c.drop()


def cancel_own(c):
    if c.conn.key is None:
        return
    c.cancel_sent = time.monotonic()
    c.drain_stray()
    sql = f"SELECT pg_sleep(0.3) AS s, {', '.join(oracle.PROBE_COLS)}"
    c.log(f"cancel-own: {cut(sql)}")
    seg = Q(sql)
    c._send(seg.data)
    time.sleep(c.rng.uniform(0.0, 0.25))
    c.send_cancel(c.conn.key)
    c.cancel_sent = time.monotonic()
    c._read_seg(seg, time.monotonic() + 20)
    c.log(f"  <- {seg.error or seg.tags}")
    if seg.error and seg.error[0] not in ("57014",):
        c._judge_error(seg, (), False)


def cancel_forged(c):
    pid = c.rng.randrange(1, 2 ** 31)
    c.send_cancel((pid, c.rng.randrange(0, 2 ** 32)))
    c.log(f"forged cancel for pid {pid}")
    probe(c)


def vanish(c):
    """The client disappears at a random moment; the pooler must release (not leak)
    its server connection and nobody else may notice."""
    v = c.rng.randrange(8)
    data = msg(b"Q", (f"SELECT pg_sleep(0.2), " + ", ".join(oracle.PROBE_COLS)).encode() + b"\0")
    if v == 7:
        # pipelined Queries with large results, never read, until every buffer on the
        # way is full and the pooler stops reading this client — then it goes away
        c.log("vanish after filling every buffer (pipelined large results, none read)")
        q = msg(b"Q", ("SELECT repeat('x', 1000) AS pad FROM generate_series(1, 1000) /* "
                       + "p" * 4000 + " */").encode() + b"\0")
        c.conn.sock.settimeout(0.5)
        try:
            for _ in range(4000):
                c.conn.sock.sendall(q)
        except OSError:
            pass
        c.drop()
        return
    if v == 6:
        # a result far larger than the socket buffers, never read: the pooler stops
        # reading the server (and maybe the client) — then the client goes away
        c.log("vanish with a large result unread")
        try:
            c._send(msg(b"Q", b"SELECT repeat('x', 1000) AS pad, g FROM generate_series(1, 200000) g\0"))
            time.sleep(c.rng.uniform(0.2, 0.6))
        except EOFError:
            pass
        c.drop()
        return
    if v == 0:
        what, payload = "mid-message", data[:c.rng.randint(1, len(data) - 1)]
    elif v == 1:
        what, payload = "mid-batch", ext_parse(PROBE) + ext_bind() + ext_execute()
    elif v == 2:
        what, payload = "after a pipelined batch", (X(("S", PROBE)).data * 3 + data)
    elif v == 3:
        what, payload = "in a transaction", msg(b"Q", f"BEGIN; {_own_insert(c)}".encode() + b"\0")
    elif v == 4:
        what, payload = "while queued/running", data
    else:
        what = "mid-COPY"
        payload = msg(b"Q", b"COPY items (tenant, note) FROM STDIN\0")
    c.log(f"vanish {what}")
    try:
        c._send(payload)
        if v == 5:
            time.sleep(0.05)
            c._send(msg(b"d", f"{c.tenant}\thalf\n".encode()) + b"d\0\0\0\x40" + b"s1\t")
        elif v == 3:
            time.sleep(0.05)
    except EOFError:
        pass
    c.drop()


def malformed(c):
    v = c.rng.randrange(5)
    if v == 0:
        what, data = "Query of length 4", b"Q\0\0\0\x04"
    elif v == 1:
        what, data = "truncated Parse", b"P" + struct.pack("!I", 4 + 5) + b"st0\0S" + ext_sync()
    elif v == 2:
        what, data = "unknown message type", msg(b"\x01", b"junk")
    elif v == 3:
        what, data = "Bind with a nonsense parameter count", \
            ext_parse(PROBE) + b"B" + struct.pack("!I", 4 + 4) + b"\0\0\xff\xff" + ext_sync()
    else:
        what, data = "negative message length", b"Q\xff\xff\xff\xf0"
    pre, same_write = b"", False
    r = c.rng.random()
    if r < 0.33:
        pre = ext_parse(PROBE) + ext_bind() + ext_execute()  # a batch already started
    elif r < 0.66:
        pre, same_write = msg(b"Q", PROBE.encode() + b"\0"), True  # a Query just before
    c.log(f"malformed: {what}{' after an unsynced batch' if pre else ''}")
    c.malformed = True
    c.drain_stray()
    try:
        if pre and same_write:
            c._send(pre + data)
        else:
            if pre:
                c._send(pre)  # the pooler takes a server and queues the tenant state
                time.sleep(c.rng.uniform(0.01, 0.1))
            c._send(data)
        deadline = time.monotonic() + 10
        while True:
            kind, body = c._recv(deadline)
            if kind == b"E":
                import pgt
                f = pgt.parse_fields(body)
                sev = f.get("V") or f.get("S")
                if f.get("C") not in ("08P01", "57P01", "08006") and sev == "FATAL":
                    c.fail("unexpected-error", f"malformed input answered {sev} {f.get('C')} "
                           f"{f.get('M')}, SPEC §8 says FATAL 08P01")
                if sev == "FATAL":
                    break
            elif kind == b"Z" and not (same_write and c.rng.random() < 0.0):
                if same_write:
                    same_write = False  # the Query's own ReadyForQuery; the malformed one follows
                    continue
                break
    except (EOFError, Exception) as e:  # noqa: B014 - closing is fine after FATAL
        if type(e).__name__ == "OpTimeout":
            c.fail("hang", f"no answer within 10s to malformed input ({what})")
    c.drop()


def _fresh(c):
    """A new client connection: its first unit most likely lands on a server connection
    that holds another tenant's state (a tenant switch)."""
    c.drop()
    return c.ensure_connected()


def vanish_unread(c):
    """Fault 11: the client pipelines a second unit right behind its first on a tenant
    switch and hangs up before reading anything. pgtenant may hold the second unit back
    (stop reading the client) until the state is applied; it must still notice the
    hang-up: the client leaves SHOW CLIENTS and its server is freed within a bounded
    time, or three such clients starve every tenant of the pool."""
    if c.rng.random() < 0.7 and not _fresh(c):
        return
    sleep = c.rng.choice([0.0, 0.05, 0.2, 0.3])
    first = msg(b"Q", (f"SELECT pg_sleep({sleep}) AS s, " + ", ".join(oracle.PROBE_COLS))
                .encode() + b"\0")
    r = c.rng.random()
    if r < 0.4:
        # an aborted transaction block first (read normally): the unit that ends it
        # must not be held back forever behind a state SET that cannot run there
        sql, n = c.rng.choice([("BEGIN; SELECT 1/0", 2), (f"BEGIN; {PROBE}; SELECT 1/0", 3)])
        c.unit([Q(sql, n=n)], allow=("22012",))
        first = msg(b"Q", c.rng.choice([b"ROLLBACK", b"COMMIT"]) + b"\0")
    elif r < 0.5:
        first = X(("S", PROBE)).data
    elif r < 0.6:
        first = msg(b"Q", b"BEGIN\0") + first
    second = c.rng.choice([msg(b"Q", b"SELECT 2 AS two\0"), msg(b"Q", PROBE.encode() + b"\0"),
                           X(("S", PROBE)).data, ext_parse(PROBE) + ext_bind()])
    data = first + second * c.rng.randint(1, 3)
    port = c.conn.sock.getsockname()[1]
    c.log(f"vanish with a pipelined second unit unread (first sleeps {sleep}s), port {port}")
    try:
        c._send(data)
        time.sleep(c.rng.choice([0.0, 0.02, 0.05, 0.1]))
    except EOFError:
        pass
    c.drop()
    c.run.client_gone(c, port, "with a pipelined second unit behind a tenant switch")


def malformed_first(c):
    """Fault 12: a malformed message (a Query of length 4, a truncated Parse) as the first
    message of a fresh client connection, whose unit needs a tenant switch: pgtenant may
    already have queued the state SET when it answers FATAL 08P01. The server connection
    must not go back to the pool with that SET orphaned in it: the next units on it
    (this client's, reconnected, and every other client's) get exactly their replies."""
    if not _fresh(c):
        return
    v = c.rng.randrange(4)
    quiet_ok = False
    if v == 0:
        what, data = "Query of length 4", b"Q\0\0\0\x04"
    elif v == 1:
        what, data = "Query without its terminating NUL", msg(b"Q", b"SELECT 1")
    elif v == 2:
        # no Sync and an incomplete header behind: where pgtenant does not read the Parse
        # itself (database tenants, read routing waiting for the batch) PostgreSQL would
        # wait for the rest too, so silence is no failure here
        what, data = "truncated Parse", b"P\x00\x00\x00\x09st\x00sel"
        quiet_ok = True
    else:
        what, data = "truncated Parse and Sync", b"P" + struct.pack("!I", 4 + 5) + b"st0\0S" \
            + ext_sync()
    c.log(f"malformed as the first message of a fresh connection: {what}")
    c.malformed = True
    try:
        c._send(data)
        deadline = time.monotonic() + (2 if quiet_ok else 10)
        while True:
            kind, body = c._recv(deadline)
            if kind == b"E":
                import pgt
                f = pgt.parse_fields(body)
                sev = f.get("V") or f.get("S")
                if sev == "FATAL":
                    if f.get("C") not in ("08P01", "57P01", "08006"):
                        c.fail("unexpected-error", f"malformed input answered {sev} "
                               f"{f.get('C')} {f.get('M')}, SPEC §8 says FATAL 08P01")
                    break
            elif kind == b"Z":  # PostgreSQL's own ERROR 08P01 for a body it read (database mode)
                break
            elif kind not in (b"N", b"S"):
                c.fail("protocol-desync", f"reply {kind!r} to malformed input ({what}) before "
                       "its FATAL")
                break
    except EOFError:
        pass
    except Exception as e:  # noqa: BLE001
        if type(e).__name__ == "OpTimeout" and not quiet_ok:
            c.fail("hang", f"no answer within 10s to malformed input ({what})")
    c.drop()
    if c.ensure_connected():
        c.unit([_probe_seg(c, probe=True)])


def first_unit_error(c):
    """Fault 13: an error inside a transaction block as a fresh connection's first unit
    (which needs a tenant switch): BEGIN; SELECT 1/0, an error after DO/CALL, the guard's
    own 42501 inside the block. ROLLBACK must then answer ROLLBACK with status I (checked
    for every ROLLBACK/COMMIT by client.py), and the next statement must run."""
    if not _fresh(c):
        return
    v = c.rng.randrange(7)
    allow = ("22012", "2D000")
    if v == 0:
        c.unit([Q("BEGIN; SELECT 1/0", n=2)], allow=allow)
    elif v == 1:
        c.unit([Q("BEGIN"), Q("SELECT 1/0")], allow=allow, pipelined=c.rng.random() < 0.5)
    elif v == 2:
        c.unit([X(("S", "BEGIN"), ("S", "SELECT 1/0"))], allow=allow)
    elif v == 3:
        c.unit([Q(c.rng.choice(["CALL iso_commit()", "DO $$BEGIN COMMIT; END$$"]))])
        c.unit([Q("BEGIN; SELECT 1/0", n=2)], allow=allow)
    elif v == 4:
        c.unit([Q(c.rng.choice(["BEGIN; CALL iso_commit()", "BEGIN; DO $$BEGIN PERFORM 1/0; END$$",
                                "BEGIN; DO $$BEGIN COMMIT; END$$"]), n=2)], allow=allow)
    elif v == 5 and c.mode != "database":
        other = world.SCHEMA_TENANTS[c.rng.choice([t for t in ("s1", "s2") if t != c.tenant])]
        sql = c.rng.choice([f"SET search_path TO {other}", "SET app.tenant_id = 'h9'",
                            f"SET LOCAL search_path = {other}", "SET ROLE postgres"])
        segs = c.unit([Q("BEGIN"), Q(sql) if c.rng.random() < 0.5 else X(("S", sql))],
                      allow=allow + ("42501", "25P02"), guard=True)
        if not segs[1].error:
            c.fail("guard-bypass", f"guard attempt inside a transaction was not refused: {sql}")
    else:
        c.unit([Q(f"BEGIN; {PROBE}; SELECT 1/0", n=3)], allow=allow)
    end = c.rng.choice(["ROLLBACK", "ROLLBACK", "COMMIT"])
    c.unit([Q(end) if c.rng.random() < 0.7 else X(("S", end))])
    if c.status == "I":
        c.unit([_probe_seg(c, probe=True)])


OPS = {
    # name: (weight, function)
    "probe": (10, probe),
    "probe_params": (3, probe_params),
    "insert": (5, insert),
    "multi_statement": (5, multi_statement),
    "pipelined": (5, pipelined),
    "large_result": (1, large_result),
    "tx_commit": (5, tx_commit),
    "tx_rollback": (3, tx_rollback),
    "tx_chain": (4, tx_chain),
    "tx_failing_commit": (4, tx_failing_commit),
    "tx_serialization": (1, tx_serialization),
    "tx_prepare": (2, tx_prepare),
    "rollback_then_select": (5, rollback_then_select),
    "procedure": (4, procedure),
    "savepoint": (2, savepoint),
    "error_in_tx": (3, error_in_tx),
    "error_in_pipeline": (3, error_in_pipeline),
    "set_guc": (5, set_guc),
    "discard": (4, discard),
    "guard": (6, guard),
    "hostile": (2, hostile),
    "temp_table": (4, temp_table),
    "many_temps": (1, many_temps),
    "statement_timeout": (1, statement_timeout),
    "with_hold": (2, with_hold),
    "sql_prepare": (4, sql_prepare),
    "named_statement": (5, named_statement),
    "named_state": (2, named_state),
    "listen_notify": (4, listen_notify),
    "copy": (3, copy),
    "reconnect": (2, reconnect),
    "cancel_own": (1, cancel_own),
    "cancel_forged": (1, cancel_forged),
    "vanish": (2, vanish),
    "malformed": (1, malformed),
    "vanish_unread": (2, vanish_unread),
    "malformed_first": (1, malformed_first),
    "first_unit_error": (2, first_unit_error),
}
