"""
The oracle: every value a statement returns in a column named m_<kind> is a
marker of the tenant whose state produced it. A client may see markers of its
own tenant and neutral values (server defaults), never another tenant's; some
kinds must positively show its own tenant (a schema tenant's search_path starts
with its schema, a shared tenant's tenant GUC is its tenant_id, the database is
the tenant's). Within one tenant anything goes in transaction mode (SPEC §4:
marked connections behave as PgBouncer's transaction mode within a tenant).
"""

import world

_SP_OWNER = {"sch_s1": "s1", "sch_s2": "s2", "sch_s3": "s3", "sch_s3b": "s3", "sch_s3_gone": "s3",
             "sch_nosuch": "sx", "d0priv": "d0"}
_NEUTRAL_SP = {"", "public", "pg_temp", "$user", "pg_catalog"}

_VALUE_OWNER = {}
for _t in world.TENANTS:
    for _v in world.tz_values(_t) + world.work_mem_values(_t) + world.stmt_timeout_values(_t):
        _VALUE_OWNER[_v.lower()] = _t
    _VALUE_OWNER[world.tiny_timeout(_t)] = _t


def _void_owner(v):
    """Hostile values a tenant's client writes into its own state: iso_void_<t>, dpriv_<t>."""
    for pre in ("iso_void_", "dpriv_"):
        if v.startswith(pre) and v[len(pre):] in world.TENANT_INDEX:
            return v[len(pre):]
    return None


def sp_owner(elem):
    e = elem.strip().strip('"')
    if e in _NEUTRAL_SP:
        return None
    if e in _SP_OWNER:
        return _SP_OWNER[e]
    return _void_owner(e) or "?" + e


def tenant_of_value(kind, v):
    """The tenant a marker value belongs to; None when neutral."""
    if v is None:
        return None
    if kind in ("row", "rows", "tmp", "lit", "notify"):
        head = v.split(":", 1)[0]
        return head if head else None
    if kind == "tg":
        if v == "":
            return None
        return v if v in world.TENANT_INDEX else (_void_owner(v) or "?" + v)
    if kind == "an":
        parts = v.split(".")
        if len(parts) >= 2 and parts[0] == "iso" and parts[1] in world.TENANT_INDEX:
            return parts[1]
        return None
    if kind in ("tz", "wm", "st"):
        return _VALUE_OWNER.get(v.lower())
    return None


def check(kind, value, tenant, schema_names):
    """Problems (strings) with one marker value seen by a client of tenant.
    schema_names: the schemas tenant may currently have (s3 moves on RELOAD)."""
    mode = world.mode_of(tenant)
    out = []
    if kind == "sp":
        elems = [e.strip() for e in (value or "").split(",")]
        owners = [sp_owner(e) for e in elems]
        for e, o in zip(elems, owners):
            if o is not None and o != tenant and not o.startswith("?"):
                out.append(f"search_path {value!r} holds {e} of tenant {o}")
        if mode == "schema" and owners and owners[0] != tenant:
            out.append(f"schema tenant's statement ran with search_path {value!r} "
                       f"(must start with its schema {'/'.join(schema_names)})")
        return out
    if kind == "db":
        if value != world.db_of(tenant):
            out.append(f"current_database() = {value!r}, tenant's database is {world.db_of(tenant)}")
        return out
    if kind == "user":
        if value != "app":
            out.append(f"current_user = {value!r}, expected app")
        return out
    if kind == "rows":
        vals = [v for v in (value or "").split(",") if v]
    else:
        vals = [value]
    for v in vals:
        o = tenant_of_value(kind, v)
        if o is not None and o != tenant:
            out.append(f"{_KIND_TEXT.get(kind, kind)} {v!r} belongs to tenant {o}")
        if kind in ("row", "rows") and mode == "schema" and v is not None and v.endswith(":tmp"):
            out.append(f"a temporary table shadowed the schema tenant's table (row {v!r})")
    if kind == "tg" and mode == "shared" and value != tenant and _void_owner(value or "") != tenant:
        out.append(f"shared tenant's statement ran with app.tenant_id = {value!r}")
    return out


_KIND_TEXT = {"row": "row", "rows": "row", "tmp": "temp table row", "lit": "prepared statement",
              "notify": "NOTIFY payload", "tg": "app.tenant_id", "an": "application_name",
              "tz": "TimeZone", "wm": "work_mem", "st": "statement_timeout"}


def kind_of_column(name):
    """m_sp, m_sp2 -> 'sp'; other columns -> None."""
    if not name.startswith("m_"):
        return None
    return name[2:].rstrip("0123456789")


PROBE_COLS = [
    "current_setting('search_path') AS m_sp",
    "coalesce(current_setting('app.tenant_id', true), '') AS m_tg",
    "current_database() AS m_db",
    "current_user AS m_user",
    "current_setting('TimeZone') AS m_tz",
    "current_setting('work_mem') AS m_wm",
    "current_setting('statement_timeout') AS m_st",
    "current_setting('application_name') AS m_an",
    "(SELECT coalesce(string_agg(DISTINCT tenant, ','), '') FROM "
    "(SELECT tenant FROM items ORDER BY id DESC LIMIT 200) i) AS m_rows",
]

PROBE = "SELECT " + ", ".join(PROBE_COLS)
# The same text for every tenant: a plan prepared under one tenant's search_path
# and reused under another reads the other's table.
PROBE_NAMED = PROBE + " /* named */"
