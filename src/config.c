/*
 * config: loads pgtenant.ini and its include_dir into a fresh Config.
 *
 * Every key lives in config_keys[]; defaults, parsing, SHOW CONFIG, SET and
 * freeing all walk that one table, so a key cannot exist in one place and be
 * forgotten in another. A load never stops at the first problem: each one
 * becomes "FILE:LINE: message" and the load fails as a whole, leaving the
 * configuration in force untouched.
 *
 * inih does the key = value splitting, but it truncates section names to 49
 * bytes and reports only the first syntax error, so our line reader looks at
 * every line before inih does: it counts lines (inih calls the handler for a
 * line right after reading it, so the reader's counter is the handler's
 * line), tracks the current section itself, and reports long lines, malformed
 * lines and bad section headers. inih only ever sees blank lines and
 * well-formed "key = value" lines.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Enums are stored through int pointers by the table-driven code. */
_Static_assert(sizeof(PoolMode) == sizeof(int), "enum size");
_Static_assert(sizeof(TenantMode) == sizeof(int), "enum size");
_Static_assert(sizeof(AuthType) == sizeof(int), "enum size");

static const char *const pool_mode_names[] = {"session", "transaction", NULL};
static const char *const auth_type_names[] = {"trust", "md5", "scram-sha-256", "cert", NULL};
static const char *const tenant_mode_names[] = {"shared", "schema", "database", NULL};
static const char *const read_routing_names[] = {"off", "hint", "auto", NULL};
static const char *const tls_mode_names[] = {"disable", "allow", "require", NULL};
static const char *const server_tls_mode_names[] = {"disable",   "prefer",      "require",
                                                    "verify-ca", "verify-full", NULL};
static const char *const tenant_source_names[] = {"sni", "user", "database", "options", NULL};

#define NOMAX  INT64_MAX
#define US(x)  ((int64_t)(x))
#define SEC(x) ((int64_t)(x)*USEC_PER_SEC)

/*
 * inherit = true: the key starts unset (-1 or NULL) and def only describes
 * where its value comes from. For strings, min = 1 means "may not be empty".
 */
#define KEY(sect, strct, nm, typ, fld, dflt, enums, rel, inh, mn, mx, hlp)                         \
	{                                                                                          \
		.name = nm, .section = sect, .type = typ, .offset = offsetof(strct, fld),          \
		.def = dflt, .enum_names = enums, .reloadable = rel, .help = hlp, .inherit = inh,  \
		.min = mn, .max = mx                                                               \
	}
#define G(nm, typ, dflt, enums, rel, mn, mx, hlp)                                                  \
	KEY(SECTION_GLOBAL, Config, #nm, typ, nm, dflt, enums, rel, false, mn, mx, hlp)
#define GI(nm, typ, dflt, rel, mn, mx, hlp)                                                        \
	KEY(SECTION_GLOBAL, Config, #nm, typ, nm, dflt, NULL, rel, true, mn, mx, hlp)
#define B(nm, typ, fld, dflt, enums, inh, mn, mx, hlp)                                             \
	KEY(SECTION_BACKEND, BackendConf, nm, typ, fld, dflt, enums, true, inh, mn, mx, hlp)
#define T(nm, typ, dflt, enums, inh, mn, mx, hlp)                                                  \
	KEY(SECTION_TENANT, TenantConf, #nm, typ, nm, dflt, enums, true, inh, mn, mx, hlp)

const ConfigKey config_keys[] = {
        /* [pgtenant] */
        G(listen_addr, KEY_STRING, "127.0.0.1", NULL, false, 0, 0,
          "addresses to listen on, comma separated; * = all"),
        G(listen_port, KEY_INT, "6432", NULL, false, 1, 65535, "TCP port to listen on"),
        G(unix_socket_dir, KEY_STRING, "", NULL, false, 0, 0,
          "also listen on DIR/.s.PGSQL.<port>; empty = no unix socket"),
        G(pool_mode, KEY_ENUM, "transaction", pool_mode_names, true, 0, 0,
          "when a server connection returns to the pool: session or transaction"),
        G(auth_type, KEY_ENUM, "scram-sha-256", auth_type_names, true, 0, 0,
          "client authentication: trust, md5, scram-sha-256 or cert"),
        G(auth_file, KEY_STRING, "", NULL, true, 0, 0, "file of \"user\" \"secret\" lines"),
        G(admin_users, KEY_STRING, "", NULL, true, 0, 0,
          "users allowed to run every console command, comma separated"),
        G(stats_users, KEY_STRING, "", NULL, true, 0, 0,
          "users allowed to run SHOW on the console, comma separated"),
        G(admin_db, KEY_STRING, "pgtenant", NULL, true, 1, 0,
          "database name that reaches the admin console"),
        G(tenant_from, KEY_TENANT_FROM, "user, database", tenant_source_names, true, 0, 0,
          "ordered sources naming a client's tenant: sni, user, database, options"),
        G(tenant_users, KEY_STRING, "", NULL, true, 0, 0,
          "default users list of every tenant; * = every user of auth_file"),
        G(tenant_pool_size, KEY_INT, "5", NULL, true, 1, INT_MAX,
          "default pool_size of schema and shared tenants"),
        G(tenant_separator, KEY_STRING, ".", NULL, true, 1, 0,
          "separates user and tenant in a startup user name (app.acme)"),
        G(sni_suffix, KEY_STRING, "", NULL, true, 0, 0,
          "TLS server names end in this; the tenant is what comes before"),
        G(max_client_conn, KEY_INT, "10000", NULL, true, 1, INT_MAX,
          "most client connections, all tenants together"),
        G(default_pool_size, KEY_INT, "20", NULL, true, 1, INT_MAX,
          "pool_size of a backend that sets none"),
        G(max_packet_size, KEY_SIZE, "1GB", NULL, true, 1024, 1024LL * 1024 * 1024,
          "largest protocol message accepted from a client"),
        G(query_timeout, KEY_DURATION, "0", NULL, true, 0, NOMAX,
          "longest a statement may run before it is cancelled; 0 = no limit"),
        G(query_wait_timeout, KEY_DURATION, "120s", NULL, true, 0, NOMAX,
          "longest a client waits for a server connection; 0 = forever"),
        G(idle_transaction_timeout, KEY_DURATION, "0", NULL, true, 0, NOMAX,
          "longest a client may idle inside a transaction; 0 = no limit"),
        G(client_idle_timeout, KEY_DURATION, "0", NULL, true, 0, NOMAX,
          "longest a client may idle outside a transaction; 0 = no limit"),
        G(client_login_timeout, KEY_DURATION, "60s", NULL, true, 0, NOMAX,
          "longest startup and authentication may take; 0 = no limit"),
        G(server_connect_timeout, KEY_DURATION, "15s", NULL, true, 0, NOMAX,
          "longest a server connection and login may take"),
        G(server_idle_timeout, KEY_DURATION, "600s", NULL, true, 0, NOMAX,
          "idle server connections above min_pool_size are closed after this"),
        G(server_lifetime, KEY_DURATION, "3600s", NULL, true, 0, NOMAX,
          "server connections older than this are closed when released"),
        G(server_reset_query, KEY_STRING, "DISCARD ALL", NULL, true, 0, 0,
          "run on a server connection released in session mode"),
        G(server_check_query, KEY_STRING, "select 1", NULL, true, 0, 0,
          "run on a server connection idle longer than server_check_delay"),
        G(server_check_delay, KEY_DURATION, "30s", NULL, true, 0, NOMAX,
          "idle time after which a server connection is checked before reuse"),
        G(server_login_retry, KEY_DURATION, "5s", NULL, true, 0, NOMAX,
          "wait before reconnecting to a backend that failed"),
        G(tcp_keepalive, KEY_BOOL, "yes", NULL, true, 0, 0, "TCP keepalive on every socket"),
        G(tcp_user_timeout, KEY_DURATION, "0", NULL, true, 0, SEC(INT_MAX / 1000),
          "TCP_USER_TIMEOUT on every socket; 0 = the system's"),
        G(listen_backlog, KEY_INT, "128", NULL, false, 1, INT_MAX, "listen(2) backlog"),
        G(so_reuseport, KEY_BOOL, "no", NULL, false, 0, 0,
          "SO_REUSEPORT on listening sockets, so several processes can share a port"),
        G(stats_period, KEY_DURATION, "60s", NULL, true, SEC(1), NOMAX,
          "period of the per-tenant stats log line and averages"),
        G(auth_user, KEY_STRING, "", NULL, true, 0, 0,
          "role that runs auth_query for users missing from auth_file"),
        G(auth_query, KEY_STRING,
          "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename=$1", NULL, true, 1, 0,
          "query returning a user's name and secret, run as auth_user"),
        G(metrics_tenant_limit, KEY_INT, "100", NULL, true, 0, INT_MAX,
          "tenants with their own metric series; the rest add up under _other"),
        G(shutdown_timeout, KEY_DURATION, "30s", NULL, true, 0, NOMAX,
          "on SIGTERM, how long running transactions may take to finish"),
        G(tenant_guc, KEY_STRING, "app.tenant_id", NULL, false, 1, 0,
          "GUC that carries tenant_id for shared tenants (for RLS policies)"),
        G(read_routing, KEY_ENUM, "off", read_routing_names, true, 0, 0,
          "which statements go to replicas: off, hint or auto"),
        G(max_replica_lag, KEY_DURATION, "10s", NULL, true, 0, NOMAX,
          "replicas further behind get no reads"),
        GI(read_your_writes, KEY_DURATION, "(max_replica_lag)", true, 0, NOMAX,
           "after a client's write its reads go to the primary this long; 0 = off"),
        G(read_only_functions, KEY_STRING, "", NULL, true, 0, 0,
          "extra functions that may run on a replica, comma separated"),
        G(health_check_period, KEY_DURATION, "5s", NULL, true, US(100000), NOMAX,
          "how often backends and replicas are checked"),
        G(max_prepared_statements, KEY_INT, "200", NULL, true, 0, INT_MAX,
          "prepared statements kept per server connection in transaction mode"),
        G(max_client_prepared_statements, KEY_INT, "1000", NULL, true, 0, INT_MAX,
          "named prepared statements one client may hold in transaction mode (0: no limit)"),
        G(query_stats, KEY_BOOL, "no", NULL, true, 0, 0,
          "statement statistics per tenant (SHOW QUERIES, SHOW TOP TENANTS)"),
        G(query_stats_max, KEY_INT, "100", NULL, true, 1, 1000000,
          "normalised statements kept per tenant; the heaviest stay"),
        G(query_stats_memory, KEY_SIZE, "64MB", NULL, true, 0, NOMAX,
          "memory of all tenants' statement tables together"),
        G(log_min_duration, KEY_DURATION, "off", NULL, true, CONFIG_DURATION_OFF, NOMAX,
          "log statements taking at least this long (wait + server); off or -1 = none"),
        G(tls_mode, KEY_ENUM, "disable", tls_mode_names, true, 0, 0,
          "TLS towards clients: disable, allow or require"),
        G(tls_cert_file, KEY_STRING, "", NULL, true, 0, 0, "certificate shown to clients"),
        G(tls_key_file, KEY_STRING, "", NULL, true, 0, 0, "private key of tls_cert_file"),
        G(tls_ca_file, KEY_STRING, "", NULL, true, 0, 0,
          "CA that client certificates must chain to"),
        G(server_tls_mode, KEY_ENUM, "disable", server_tls_mode_names, true, 0, 0,
          "TLS towards backends: disable, prefer, require, verify-ca or verify-full"),
        G(server_tls_ca_file, KEY_STRING, "", NULL, true, 0, 0,
          "CA that backend certificates must chain to"),
        G(metrics_listen, KEY_STRING, "", NULL, false, 0, 0,
          "host:port of the Prometheus endpoint; empty = off"),
        G(log_file, KEY_STRING, "", NULL, true, 0, 0, "log file; empty = stderr"),
        G(pid_file, KEY_STRING, "", NULL, false, 0, 0, "pid file written with --daemon"),
        G(log_connections, KEY_BOOL, "yes", NULL, true, 0, 0, "log each login with its tenant"),
        G(log_disconnections, KEY_BOOL, "yes", NULL, true, 0, 0,
          "log each disconnection with its tenant"),
        G(audit_log, KEY_STRING, "", NULL, false, 0, 0,
          "JSON-lines file of logins, refusals and console commands; empty = off"),
        G(include_dir, KEY_STRING, "", NULL, true, 0, 0,
          "directory whose *.ini files are read after this file, in name order"),
        G(migrations_dir, KEY_STRING, "", NULL, true, 0, 0,
          "folder of versioned SQL files (V1__name.sql) that pgtenant migrate and CREATE TENANT "
          "apply"),
        G(tenant_template_db, KEY_STRING, "", NULL, true, 0, 0,
          "CREATE TENANT in database mode copies this database; empty = PostgreSQL's default"),
        G(template_idle_timeout, KEY_DURATION, "60s", NULL, true, 0, NOMAX,
          "a tenant served by a [template] leaves memory after this long without clients"),
        G(template_cache_ttl, KEY_DURATION, "300s", NULL, true, 0, NOMAX,
          "how long a template tenant found to exist is believed to exist"),
        G(template_negative_ttl, KEY_DURATION, "5s", NULL, true, 0, NOMAX,
          "how long a template tenant found missing is refused without asking again"),

        /* [backend NAME] */
        B("host", KEY_STRING, host, "(required)", NULL, true, 1, 0,
          "host name, address, or unix socket directory of the primary"),
        B("port", KEY_INT, port, "5432", NULL, false, 1, 65535, "port of the primary"),
        B("dbname", KEY_STRING, dbname, "", NULL, false, 0, 0,
          "database; empty = the client's user name"),
        B("user", KEY_STRING, user, "", NULL, false, 0, 0,
          "server role; empty = the authenticated client user"),
        B("password", KEY_STRING, password, "", NULL, false, 0, 0,
          "password of user; empty = from auth_file"),
        B("pool_size", KEY_INT, pool_size, "(default_pool_size)", NULL, true, 1, INT_MAX,
          "most server connections to the primary, all pools together"),
        B("min_pool_size", KEY_INT, min_pool_size, "0", NULL, false, 0, INT_MAX,
          "idle server connections kept open"),
        B("replicas", KEY_HOSTPORT_LIST, replicas, "", NULL, false, 0, 0,
          "read replicas, comma separated host:port"),
        B("replica_pool_size", KEY_INT, replica_pool_size, "(pool_size)", NULL, true, 1, INT_MAX,
          "most server connections to each replica"),
        B("server_tls_mode", KEY_ENUM, server_tls_mode, "(global)", server_tls_mode_names, true, 0,
          0, "overrides the global server_tls_mode"),

        /* [tenant NAME] */
        T(mode, KEY_ENUM, "(required)", tenant_mode_names, true, 0, 0,
          "isolation: shared, schema or database"),
        T(backend, KEY_STRING, "(required)", NULL, true, 1, 0, "the [backend] serving this tenant"),
        T(schema, KEY_STRING, "(tenant name)", NULL, true, 1, 0,
          "schema mode: the tenant's schema"),
        T(shared_schemas, KEY_STRING, "public", NULL, true, 0, 0,
          "schema mode: appended to search_path after the tenant's schema"),
        T(tenant_id, KEY_STRING, "(tenant name)", NULL, true, 1, 0,
          "shared mode: value given to tenant_guc"),
        T(dbname, KEY_STRING, "(backend's)", NULL, true, 1, 0,
          "database mode: the tenant's own database"),
        T(users, KEY_STRING, "(tenant_users)", NULL, true, 0, 0,
          "users allowed to connect as this tenant, comma separated; * = all"),
        T(server_user, KEY_STRING, "(backend's)", NULL, true, 1, 0,
          "connect as this role; the tenant gets pools of its own"),
        T(server_password, KEY_STRING, "(backend's)", NULL, true, 0, 0, "password of server_user"),
        T(pool_size, KEY_INT, "(tenant_pool_size)", NULL, true, 1, INT_MAX,
          "most server connections this tenant holds at once"),
        T(reserved_conns, KEY_INT, "0", NULL, false, 0, INT_MAX,
          "connections of the pool kept for this tenant alone"),
        T(max_client_conn, KEY_INT, "0", NULL, false, 0, INT_MAX,
          "most client connections of this tenant; 0 = only the global limit"),
        T(weight, KEY_INT, "1", NULL, false, 1, 1000000, "share of a contended pool"),
        T(rate_limit, KEY_DOUBLE, "0", NULL, false, 0, NOMAX, "statements per second; 0 = off"),
        T(pool_mode, KEY_ENUM, "(global)", pool_mode_names, true, 0, 0, "overrides pool_mode"),
        T(query_timeout, KEY_DURATION, "(global)", NULL, true, 0, NOMAX, "overrides query_timeout"),
        T(query_wait_timeout, KEY_DURATION, "(global)", NULL, true, 0, NOMAX,
          "overrides query_wait_timeout"),
        T(idle_transaction_timeout, KEY_DURATION, "(global)", NULL, true, 0, NOMAX,
          "overrides idle_transaction_timeout"),
        T(client_idle_timeout, KEY_DURATION, "(global)", NULL, true, 0, NOMAX,
          "overrides client_idle_timeout"),
        T(read_routing, KEY_ENUM, "(global)", read_routing_names, true, 0, 0,
          "overrides read_routing"),
        T(log_min_duration, KEY_DURATION, "(global)", NULL, true, CONFIG_DURATION_OFF, NOMAX,
          "overrides log_min_duration"),
        T(disabled, KEY_BOOL, "no", NULL, false, 0, 0, "refuse new logins, as DISABLE does"),

        /* [template NAME]: the keys of [tenant], {tenant} substituted, and these */
        KEY(SECTION_TEMPLATE, TenantConf, "match", KEY_STRING, match, "(required)", NULL, true,
            true, 1, 0, "glob over tenant names served by this template (* ? [...])"),
        KEY(SECTION_TEMPLATE, TenantConf, "exists_query", KEY_STRING, exists_query,
            "(required in shared mode)", NULL, true, true, 1, 0,
            "shared mode: a query returning a row when tenant_id $1 exists"),
};

const int config_n_keys = (int)ARRAY_SIZE(config_keys);

/* ---------------------------------------------------------------------- */
/* Value parsers                                                          */
/* ---------------------------------------------------------------------- */

static const char *skip_space(const char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	return s;
}

/*
 * "<digits>[.<digits>] [unit]": our own scanner rather than strtod, which
 * would also take "inf", "nan", hex and signs.
 */
static bool parse_number_unit(const char *s, double *num, char *unit, size_t unitlen)
{
	const char *p = skip_space(s);
	const char *start = p;
	size_t n = 0;

	while (isdigit((unsigned char)*p))
		p++;
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (p == start || (p == start + 1 && *start == '.'))
		return false;
	{
		char buf[64];
		if ((size_t)(p - start) >= sizeof(buf))
			return false;
		memcpy(buf, start, (size_t)(p - start));
		buf[p - start] = '\0';
		*num = strtod(buf, NULL);
	}
	p = skip_space(p);
	while (isalpha((unsigned char)*p)) {
		if (n + 1 >= unitlen)
			return false;
		unit[n++] = *p++;
	}
	unit[n] = '\0';
	p = skip_space(p);
	return *p == '\0';
}

typedef struct UnitMult {
	const char *name;
	double mult;
} UnitMult;

static bool parse_with_units(const char *s, const UnitMult *units, double bare, double limit,
                             int64_t *out)
{
	char unit[8];
	double num, mult = bare, v;

	if (!parse_number_unit(s, &num, unit, sizeof(unit)))
		return false;
	if (unit[0]) {
		const UnitMult *u;
		for (u = units; u->name; u++)
			if (strcasecmp(u->name, unit) == 0)
				break;
		if (!u->name)
			return false;
		mult = u->mult;
	}
	v = num * mult;
	if (!(v <= limit)) /* also false for NaN; num is never negative */
		return false;
	*out = (int64_t)(v + 0.5);
	return true;
}

bool config_parse_duration(const char *s, usec_t *out)
{
	static const UnitMult units[] = {{"us", 1},     {"ms", 1e3},   {"s", 1e6},
	                                 {"min", 60e6}, {"h", 3600e6}, {NULL, 0}};
	/* ~31 years: far beyond any sensible timeout, far below overflow. */
	return parse_with_units(s, units, 1e6, 1e15, out);
}

bool config_parse_size(const char *s, int64_t *out)
{
	static const UnitMult units[] = {{"B", 1},
	                                 {"kB", 1024.0},
	                                 {"MB", 1024.0 * 1024},
	                                 {"GB", 1024.0 * 1024 * 1024},
	                                 {NULL, 0}};
	return parse_with_units(s, units, 1, 1e18, out);
}

bool config_parse_bool(const char *s, bool *out)
{
	static const struct {
		const char *name;
		bool value;
	} words[] = {{"yes", true},  {"no", false},    {"on", true}, {"off", false},
	             {"true", true}, {"false", false}, {"1", true},  {"0", false}};
	const char *p = skip_space(s);
	size_t len = strlen(p);

	while (len && isspace((unsigned char)p[len - 1]))
		len--;
	for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
		if (strlen(words[i].name) == len && strncasecmp(words[i].name, p, len) == 0) {
			*out = words[i].value;
			return true;
		}
	}
	return false;
}

static bool parse_int64(const char *s, int64_t *out)
{
	const char *p = skip_space(s);
	char *end;
	long long v;

	if (!*p || !(isdigit((unsigned char)*p) || *p == '-' || *p == '+'))
		return false;
	errno = 0;
	v = strtoll(p, &end, 10);
	if (errno || end == p)
		return false;
	if (*skip_space(end))
		return false;
	*out = v;
	return true;
}

/* Splits a comma list into trimmed items; calls fn for each (empty items too). */
static bool list_each(const char *list, bool (*fn)(void *ctx, const char *item, size_t len),
                      void *ctx)
{
	const char *p = list;

	for (;;) {
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		const char *a = skip_space(p);
		const char *b = end;

		while (b > a && isspace((unsigned char)b[-1]))
			b--;
		if (a > b)
			a = b;
		if (!fn(ctx, a, (size_t)(b - a)))
			return false;
		if (!comma)
			return true;
		p = comma + 1;
	}
}

typedef struct ListMatch {
	const char *user;
	bool found;
	bool any_item;
} ListMatch;

static bool list_match_item(void *ctx, const char *item, size_t len)
{
	ListMatch *m = ctx;

	if (len == 0)
		return true;
	m->any_item = true;
	if ((len == 1 && item[0] == '*') ||
	    (m->user && strlen(m->user) == len && memcmp(m->user, item, len) == 0)) {
		m->found = true;
		return false;
	}
	return true;
}

bool config_list_contains(const char *list, const char *user)
{
	ListMatch m = {user, false, false};

	if (!list || !user)
		return false;
	list_each(list, list_match_item, &m);
	return m.found;
}

static bool list_is_empty(const char *list)
{
	ListMatch m = {NULL, false, false};

	if (!list)
		return true;
	list_each(list, list_match_item, &m);
	return !m.any_item && !m.found;
}

/* ---------------------------------------------------------------------- */
/* Typed values: parse to a Value, then store it into a struct            */
/* ---------------------------------------------------------------------- */

typedef struct Value {
	int64_t i;
	double d;
	bool b;
	char *s;
	TenantSource tf[CONFIG_MAX_TENANT_SOURCES];
	int n_tf;
	HostPort *hp;
	int n_hp;
} Value;

typedef struct TenantFromCtx {
	Value *v;
	char *err;
	size_t errlen;
} TenantFromCtx;

static bool tenant_from_item(void *ctx, const char *item, size_t len)
{
	TenantFromCtx *c = ctx;
	int idx;

	for (idx = 0; tenant_source_names[idx]; idx++)
		if (strlen(tenant_source_names[idx]) == len &&
		    strncasecmp(tenant_source_names[idx], item, len) == 0)
			break;
	if (!tenant_source_names[idx]) {
		snprintf(c->err, c->errlen,
		         "\"%.*s\" is no tenant source: expected a comma list of sni, user, "
		         "database, options",
		         (int)len, item);
		return false;
	}
	for (int i = 0; i < c->v->n_tf; i++) {
		if ((int)c->v->tf[i] == idx) {
			snprintf(c->err, c->errlen, "tenant source \"%s\" is listed twice",
			         tenant_source_names[idx]);
			return false;
		}
	}
	c->v->tf[c->v->n_tf++] = (TenantSource)idx;
	return true;
}

typedef struct HostPortCtx {
	Value *v;
	char *err;
	size_t errlen;
} HostPortCtx;

static bool hostport_item(void *ctx, const char *item, size_t len)
{
	HostPortCtx *c = ctx;
	const char *host = item, *colon = NULL;
	size_t hostlen = len;
	int port = 0;

	if (len == 0) {
		snprintf(c->err, c->errlen,
		         "empty entry in replicas: expected a comma list of host:port");
		return false;
	}
	if (item[0] == '[') {
		/* [IPv6]:port */
		const char *close = memchr(item, ']', len);
		if (!close || close == item + 1) {
			snprintf(c->err, c->errlen, "\"%.*s\": unterminated [address]", (int)len,
			         item);
			return false;
		}
		host = item + 1;
		hostlen = (size_t)(close - host);
		if (close + 1 < item + len) {
			if (close[1] != ':') {
				snprintf(c->err, c->errlen, "\"%.*s\": expected host:port",
				         (int)len, item);
				return false;
			}
			colon = close + 1;
		}
	} else {
		for (size_t i = len; i > 0; i--)
			if (item[i - 1] == ':') {
				colon = item + i - 1;
				break;
			}
		if (colon)
			hostlen = (size_t)(colon - item);
	}
	if (colon) {
		const char *p = colon + 1, *end = item + len;
		if (p == end) {
			snprintf(c->err, c->errlen, "\"%.*s\": missing port", (int)len, item);
			return false;
		}
		for (; p < end; p++) {
			if (!isdigit((unsigned char)*p) || port > 65535) {
				port = -1;
				break;
			}
			port = port * 10 + (*p - '0');
		}
		if (port < 1 || port > 65535) {
			snprintf(c->err, c->errlen, "\"%.*s\": port must be 1 to 65535", (int)len,
			         item);
			return false;
		}
	}
	if (hostlen == 0) {
		snprintf(c->err, c->errlen, "\"%.*s\": missing host", (int)len, item);
		return false;
	}
	for (size_t i = 0; i < hostlen; i++) {
		if (isspace((unsigned char)host[i])) {
			snprintf(c->err, c->errlen, "\"%.*s\": space in host name", (int)len, item);
			return false;
		}
	}
	c->v->hp = xrealloc(c->v->hp, sizeof(HostPort) * (size_t)(c->v->n_hp + 1));
	c->v->hp[c->v->n_hp].host = xstrndup(host, hostlen);
	c->v->hp[c->v->n_hp].port = port; /* 0: the backend's port, filled in after load */
	c->v->n_hp++;
	return true;
}

static void value_free(const ConfigKey *k, Value *v)
{
	free(v->s);
	v->s = NULL;
	for (int i = 0; i < v->n_hp; i++)
		free(v->hp[i].host);
	free(v->hp);
	v->hp = NULL;
	v->n_hp = 0;
}

static void describe_expected(const ConfigKey *k, char *out, size_t outlen)
{
	switch (k->type) {
	case KEY_BOOL:
		snprintf(out, outlen, "yes/no, on/off, true/false or 1/0");
		break;
	case KEY_DURATION:
		snprintf(out, outlen,
		         "a duration such as 30s, 500ms, 2min or 1h; a bare number is seconds");
		break;
	case KEY_SIZE:
		snprintf(out, outlen, "a size such as 512kB, 64MB or 1GB; a bare number is bytes");
		break;
	case KEY_INT:
		if (k->max == NOMAX || k->max == INT_MAX)
			snprintf(out, outlen, "an integer of at least %lld", (long long)k->min);
		else
			snprintf(out, outlen, "an integer from %lld to %lld", (long long)k->min,
			         (long long)k->max);
		break;
	case KEY_DOUBLE:
		snprintf(out, outlen, "a number of at least %lld", (long long)k->min);
		break;
	case KEY_ENUM: {
		size_t n = 0;
		int count = 0;
		while (k->enum_names[count])
			count++;
		if (count > 2)
			n += (size_t)snprintf(out + n, outlen - n, "one of ");
		for (int i = 0; i < count && n < outlen; i++)
			n += (size_t)snprintf(out + n, outlen - n, "%s%s", k->enum_names[i],
			                      i + 2 < count   ? ", "
			                      : i + 1 < count ? " or "
			                                      : "");
		break;
	}
	case KEY_STRING:
		snprintf(out, outlen, "a non-empty value");
		break;
	case KEY_TENANT_FROM:
		snprintf(out, outlen, "a comma list of sni, user, database, options");
		break;
	case KEY_HOSTPORT_LIST:
		snprintf(out, outlen, "a comma list of host:port");
		break;
	}
}

/* Whole seconds print as seconds, the way SPEC and the example file write them. */
static void format_duration(usec_t v, char *out, size_t outlen)
{
	if (v == 0)
		snprintf(out, outlen, "0");
	else if (v % USEC_PER_SEC == 0)
		snprintf(out, outlen, "%llds", (long long)(v / USEC_PER_SEC));
	else if (v % USEC_PER_MS == 0)
		snprintf(out, outlen, "%lldms", (long long)(v / USEC_PER_MS));
	else
		snprintf(out, outlen, "%lldus", (long long)v);
}

static void format_size(int64_t v, char *out, size_t outlen)
{
	const int64_t k = 1024, m = k * 1024, g = m * 1024;

	if (v != 0 && v % g == 0)
		snprintf(out, outlen, "%lldGB", (long long)(v / g));
	else if (v != 0 && v % m == 0)
		snprintf(out, outlen, "%lldMB", (long long)(v / m));
	else if (v != 0 && v % k == 0)
		snprintf(out, outlen, "%lldkB", (long long)(v / k));
	else
		snprintf(out, outlen, "%lld", (long long)v);
}

/* Parses text for key k. On failure err says what was expected. */
static bool value_parse(const ConfigKey *k, const char *text, Value *v, char *err, size_t errlen)
{
	char expected[160];

	memset(v, 0, sizeof(*v));
	switch (k->type) {
	case KEY_STRING: {
		const char *p = skip_space(text);
		size_t len = strlen(p);
		while (len && isspace((unsigned char)p[len - 1]))
			len--;
		if (len == 0 && k->min > 0) {
			snprintf(err, errlen, "%s may not be empty", k->name);
			return false;
		}
		/* Unset keys stay NULL; an explicit empty value of an inheriting key is kept. */
		v->s = (len || k->inherit) ? xstrndup(p, len) : NULL;
		return true;
	}
	case KEY_INT:
		if (parse_int64(text, &v->i) && v->i >= k->min && v->i <= k->max)
			return true;
		break;
	case KEY_BOOL:
		if (config_parse_bool(text, &v->b))
			return true;
		break;
	case KEY_DURATION:
		if (k->min == CONFIG_DURATION_OFF &&
		    (strcasecmp(text, "off") == 0 || strcmp(text, "-1") == 0)) {
			v->i = CONFIG_DURATION_OFF;
			return true;
		}
		if (config_parse_duration(text, &v->i)) {
			if (v->i >= k->min && v->i <= k->max)
				return true;
			char a[32];
			format_duration(k->min, a, sizeof(a));
			snprintf(err, errlen, "%s must be at least %s", k->name, a);
			return false;
		}
		break;
	case KEY_SIZE:
		if (config_parse_size(text, &v->i)) {
			if (v->i >= k->min && v->i <= k->max)
				return true;
			char a[32], b[32];
			format_size(k->min, a, sizeof(a));
			format_size(k->max, b, sizeof(b));
			snprintf(err, errlen, "%s must be from %s to %s", k->name, a, b);
			return false;
		}
		break;
	case KEY_DOUBLE: {
		char unit[4];
		if (parse_number_unit(text, &v->d, unit, sizeof(unit)) && !unit[0] &&
		    v->d >= (double)k->min)
			return true;
		break;
	}
	case KEY_ENUM: {
		const char *p = skip_space(text);
		size_t len = strlen(p);
		while (len && isspace((unsigned char)p[len - 1]))
			len--;
		for (int i = 0; k->enum_names[i]; i++) {
			if (strlen(k->enum_names[i]) == len &&
			    strncasecmp(k->enum_names[i], p, len) == 0) {
				v->i = i;
				return true;
			}
		}
		break;
	}
	case KEY_TENANT_FROM: {
		TenantFromCtx c = {v, err, errlen};
		if (!*skip_space(text)) {
			snprintf(err, errlen, "tenant_from needs at least one source");
			return false;
		}
		if (!list_each(text, tenant_from_item, &c))
			return false;
		if (v->n_tf == 0) {
			snprintf(err, errlen, "tenant_from needs at least one source");
			return false;
		}
		return true;
	}
	case KEY_HOSTPORT_LIST: {
		HostPortCtx c = {v, err, errlen};
		if (!*skip_space(text))
			return true;
		if (list_each(text, hostport_item, &c))
			return true;
		value_free(k, v);
		return false;
	}
	}
	describe_expected(k, expected, sizeof(expected));
	snprintf(err, errlen, "bad value \"%s\" for %s: expected %s", text, k->name, expected);
	return false;
}

static void *field_ptr(const ConfigKey *k, void *base)
{
	return (char *)base + k->offset;
}

/* Moves v into base (freeing what was there). */
static void value_store(const ConfigKey *k, void *base, Value *v)
{
	void *f = field_ptr(k, base);

	switch (k->type) {
	case KEY_STRING:
		free(*(char **)f);
		*(char **)f = v->s;
		v->s = NULL;
		break;
	case KEY_INT:
	case KEY_ENUM:
		*(int *)f = (int)v->i;
		break;
	case KEY_BOOL:
		*(bool *)f = v->b;
		break;
	case KEY_DURATION:
	case KEY_SIZE:
		*(int64_t *)f = v->i;
		break;
	case KEY_DOUBLE:
		*(double *)f = v->d;
		break;
	case KEY_TENANT_FROM: {
		Config *c = base;
		memcpy(c->tenant_from, v->tf, sizeof(c->tenant_from));
		c->n_tenant_from = v->n_tf;
		break;
	}
	case KEY_HOSTPORT_LIST: {
		BackendConf *b = base;
		for (int i = 0; i < b->n_replicas; i++)
			free(b->replicas[i].host);
		free(b->replicas);
		b->replicas = v->hp;
		b->n_replicas = v->n_hp;
		v->hp = NULL;
		v->n_hp = 0;
		break;
	}
	}
}

static void key_free_field(const ConfigKey *k, void *base)
{
	Value empty;

	memset(&empty, 0, sizeof(empty));
	if (k->type == KEY_STRING || k->type == KEY_HOSTPORT_LIST)
		value_store(k, base, &empty);
}

/* Applies every default of one section to base. Defaults always parse. */
static void apply_defaults(SectionKind section, void *base)
{
	for (int i = 0; i < config_n_keys; i++) {
		const ConfigKey *k = &config_keys[i];
		void *f = field_ptr(k, base);
		char err[256];
		Value v;

		if (k->section != section)
			continue;
		if (k->inherit) {
			switch (k->type) {
			case KEY_STRING:
				*(char **)f = NULL;
				break;
			case KEY_INT:
			case KEY_ENUM:
				*(int *)f = -1;
				break;
			case KEY_DURATION:
			case KEY_SIZE:
				*(int64_t *)f = -1;
				break;
			default:
				abort(); /* no such key in the table */
			}
			continue;
		}
		if (!value_parse(k, k->def, &v, err, sizeof(err))) {
			fprintf(stderr, "pgtenant: bad built-in default of %s: %s\n", k->name, err);
			abort();
		}
		value_store(k, base, &v);
	}
}

/*
 * [backend] and [tenant] defaults allocate nothing (their string keys
 * default to unset), so they are parsed once into templates and copied into
 * each new section: 10,000 tenants need not parse the same defaults 10,000
 * times.
 */
static BackendConf backend_template;
static TenantConf tenant_template;
static bool templates_ready;

static void templates_init(void)
{
	if (templates_ready)
		return;
	apply_defaults(SECTION_BACKEND, &backend_template);
	apply_defaults(SECTION_TENANT, &tenant_template);
	for (int i = 0; i < config_n_keys; i++) {
		const ConfigKey *k = &config_keys[i];
		if (k->section == SECTION_GLOBAL)
			continue;
		if ((k->type == KEY_STRING || k->type == KEY_HOSTPORT_LIST) &&
		    *(void **)field_ptr(k, k->section == SECTION_BACKEND
		                                   ? (void *)&backend_template
		                                   : (void *)&tenant_template))
			abort(); /* a default that allocates cannot be shared */
	}
	templates_ready = true;
}

static void free_fields(SectionKind section, void *base)
{
	for (int i = 0; i < config_n_keys; i++)
		if (config_keys[i].section == section)
			key_free_field(&config_keys[i], base);
}

static void format_field(const ConfigKey *k, const void *base, char *out, size_t outlen)
{
	const void *f = (const char *)base + k->offset;

	if (outlen == 0)
		return;
	out[0] = '\0';
	switch (k->type) {
	case KEY_STRING: {
		const char *s = *(char *const *)f;
		snprintf(out, outlen, "%s", s ? s : "");
		break;
	}
	case KEY_INT:
		if (k->inherit && *(const int *)f < 0)
			break;
		snprintf(out, outlen, "%d", *(const int *)f);
		break;
	case KEY_ENUM: {
		int v = *(const int *)f;
		if (v >= 0)
			snprintf(out, outlen, "%s", k->enum_names[v]);
		break;
	}
	case KEY_BOOL:
		snprintf(out, outlen, "%s", *(const bool *)f ? "yes" : "no");
		break;
	case KEY_DURATION:
		if (*(const int64_t *)f >= 0)
			format_duration(*(const int64_t *)f, out, outlen);
		else if (*(const int64_t *)f == CONFIG_DURATION_OFF)
			snprintf(out, outlen, "off");
		break;
	case KEY_SIZE:
		if (*(const int64_t *)f >= 0)
			format_size(*(const int64_t *)f, out, outlen);
		break;
	case KEY_DOUBLE:
		snprintf(out, outlen, "%g", *(const double *)f);
		break;
	case KEY_TENANT_FROM: {
		const Config *c = base;
		size_t n = 0;
		for (int i = 0; i < c->n_tenant_from && n < outlen; i++)
			n += (size_t)snprintf(out + n, outlen - n, "%s%s", i ? ", " : "",
			                      tenant_source_names[c->tenant_from[i]]);
		break;
	}
	case KEY_HOSTPORT_LIST: {
		const BackendConf *b = base;
		size_t n = 0;
		for (int i = 0; i < b->n_replicas && n < outlen; i++) {
			const HostPort *hp = &b->replicas[i];
			bool v6 = strchr(hp->host, ':') != NULL;
			n += (size_t)snprintf(out + n, outlen - n, "%s%s%s%s:%d", i ? ", " : "",
			                      v6 ? "[" : "", hp->host, v6 ? "]" : "",
			                      hp->port ? hp->port : b->port);
		}
		break;
	}
	}
}

void config_format_field(const ConfigKey *key, const void *base, char *out, size_t outlen)
{
	format_field(key, base, out, outlen);
}

void config_format_value(const Config *cfg, const ConfigKey *key, char *out, size_t outlen)
{
	/* SHOW CONFIG shows what is in force, so an inherited value is shown resolved. */
	if (key->section == SECTION_GLOBAL && strcmp(key->name, "read_your_writes") == 0) {
		format_duration(config_read_your_writes(cfg), out, outlen);
		return;
	}
	format_field(key, cfg, out, outlen);
}

static char **pending_values; /* by key index: a restart-only key's value in the file, or NULL */

/* Copies k's value from src into dst (a string duplicated, dst's freed). */
static void value_copy(const ConfigKey *k, void *dst, const void *src)
{
	void *d = field_ptr(k, dst);
	const void *s = (const char *)src + k->offset;
	size_t size = k->type == KEY_INT || k->type == KEY_ENUM        ? sizeof(int)
	              : k->type == KEY_BOOL                            ? sizeof(bool)
	              : k->type == KEY_DURATION || k->type == KEY_SIZE ? sizeof(int64_t)
	              : k->type == KEY_DOUBLE                          ? sizeof(double)
	                                                               : 0;

	if (k->type == KEY_STRING) {
		free(*(char **)d);
		*(char **)d = *(char *const *)s ? xstrdup(*(char *const *)s) : NULL;
	} else {
		memcpy(d, s, size); /* no restart-only global is a list */
	}
}

int config_hold_restart_keys(Config *next, const Config *running)
{
	char now[1024], file[1024];
	int n = 0;

	if (!pending_values)
		pending_values = xcalloc((size_t)config_n_keys, sizeof(char *));
	for (int i = 0; i < config_n_keys; i++) {
		const ConfigKey *k = &config_keys[i];
		if (k->section != SECTION_GLOBAL || k->reloadable)
			continue;
		free(pending_values[i]);
		pending_values[i] = NULL;
		format_field(k, running, now, sizeof(now));
		format_field(k, next, file, sizeof(file));
		if (strcmp(now, file) == 0)
			continue;
		pending_values[i] = xstrdup(file);
		value_copy(k, next, running);
		n++;
	}
	return n;
}

const char *config_pending_value(const ConfigKey *key)
{
	return pending_values ? pending_values[key - config_keys] : NULL;
}

void config_pending_names(char *out, size_t outlen)
{
	size_t n = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	for (int i = 0; pending_values && i < config_n_keys && n < outlen; i++)
		if (pending_values[i])
			n += (size_t)snprintf(out + n, outlen - n, "%s%s", n ? ", " : "",
			                      config_keys[i].name);
}

/*
 * The table is grouped by section; lookups scan only their section's run.
 * Found once, on first use, so the table can be edited freely.
 */
static int section_begin[4], section_end[4];
static bool sections_ready;

static void sections_init(void)
{
	if (sections_ready)
		return;
	for (int s = 0; s < 4; s++) {
		section_begin[s] = config_n_keys;
		section_end[s] = 0;
	}
	for (int i = 0; i < config_n_keys; i++) {
		int s = (int)config_keys[i].section;
		if (i < section_begin[s])
			section_begin[s] = i;
		section_end[s] = i + 1;
	}
	for (int s = 0; s < 4; s++)
		for (int i = section_begin[s]; i < section_end[s]; i++)
			if (config_keys[i].section != (SectionKind)s)
				abort(); /* config_keys[] must keep each section's keys together */
	sections_ready = true;
}

const ConfigKey *config_find_key(SectionKind section, const char *name)
{
	sections_init();
	for (int i = section_begin[section]; i < section_end[section]; i++)
		if (strcasecmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Cross-key checks of [pgtenant], shared by load and SET                  */
/* ---------------------------------------------------------------------- */

typedef void (*GlobalReport)(void *ctx, const char *key, const char *msg);

static int global_check(const Config *c, GlobalReport report, void *ctx)
{
	int problems = 0;

	if (c->auth_type == AUTH_CERT && !c->tls_ca_file) {
		report(ctx, "auth_type",
		       "auth_type = cert needs tls_ca_file to verify client certificates");
		problems++;
	}
	if (c->auth_type == AUTH_CERT && c->tls_mode == TLS_DISABLE) {
		report(ctx, "auth_type", "auth_type = cert needs tls_mode = allow or require");
		problems++;
	}
	if (c->tls_mode != TLS_DISABLE && (!c->tls_cert_file || !c->tls_key_file)) {
		report(ctx, "tls_mode",
		       "tls_mode = allow or require needs tls_cert_file and tls_key_file");
		problems++;
	}
	return problems;
}

/* ---------------------------------------------------------------------- */
/* Loading                                                                */
/* ---------------------------------------------------------------------- */

typedef struct LoadError {
	int file_idx;
	int line;
	int seq;
	char *msg;
} LoadError;

typedef struct LoadState {
	Config *cfg;

	LoadError *errs;
	int n_errs, cap_errs;
	int file_errs; /* errors reported in the current file */

	/* the file being read */
	FILE *fp;
	char *linebuf;
	size_t linecap;
	int file_idx;
	int lineno;
	bool in_main;

	/* the section being read; sect_index is into backends/tenants */
	bool have_section;
	bool sect_valid;
	SectionKind sect;
	int sect_index;

	/*
	 * Duplicate keys: key i was seen in this section when seen_gen[i] == gen,
	 * at seen_line[i]. Bumping gen clears the set without touching the arrays.
	 * Global keys may be split over files, so they keep their own record.
	 */
	unsigned gen;
	unsigned *seen_gen;
	int *seen_line;
	int *global_file, *global_line; /* -1 file: not set */

	/* per tenant: where its backend and reserved_conns were set */
	int *tenant_backend_line;
	int *tenant_reserved_line;
	int cap_tenants, cap_backends;
} LoadState;

static void add_error(LoadState *st, int file_idx, int line, const char *fmt, ...)
        PRINTF_LIKE(4, 5);

static void add_error(LoadState *st, int file_idx, int line, const char *fmt, ...)
{
	char msg[1024], where[16];
	char *full;
	int n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* a problem of the whole file (it cannot be opened) has no line: "FILE: message" */
	where[0] = '\0';
	if (line > 0)
		snprintf(where, sizeof(where), ":%d", line);
	n = snprintf(NULL, 0, "%s%s: %s", st->cfg->files[file_idx], where, msg);
	full = xmalloc((size_t)n + 1);
	snprintf(full, (size_t)n + 1, "%s%s: %s", st->cfg->files[file_idx], where, msg);
	if (st->n_errs == st->cap_errs) {
		st->cap_errs = st->cap_errs ? st->cap_errs * 2 : 16;
		st->errs = xrealloc(st->errs, sizeof(LoadError) * (size_t)st->cap_errs);
	}
	st->errs[st->n_errs] = (LoadError){file_idx, line, st->n_errs, full};
	st->n_errs++;
	if (file_idx == st->file_idx)
		st->file_errs++;
}

static int file_index_of(const Config *cfg, const char *file)
{
	for (int i = 0; i < cfg->n_files; i++)
		if (cfg->files[i] == file)
			return i;
	return 0;
}

static int key_index(const ConfigKey *k)
{
	return (int)(k - config_keys);
}

bool config_valid_name(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-')
			return false;
	return n > 0 && n <= CONFIG_NAME_MAX;
}

static const char *section_label(const LoadState *st, char *buf, size_t len)
{
	if (st->sect == SECTION_GLOBAL)
		snprintf(buf, len, "[pgtenant]");
	else if (st->sect == SECTION_BACKEND)
		snprintf(buf, len, "[backend %s]", st->cfg->backends[st->sect_index].name);
	else
		snprintf(buf, len, "[%s %s]",
		         st->cfg->tenants[st->sect_index].is_template ? "template" : "tenant",
		         st->cfg->tenants[st->sect_index].name);
	return buf;
}

static bool seen_in_section(const LoadState *st, SectionKind section, const char *key)
{
	return st->seen_gen[key_index(config_find_key(section, key))] == st->gen;
}

/*
 * Checks that a finished [backend] or [tenant] has its required keys. A key
 * that was given with a bad value counts as given: it is reported once.
 */
static void finish_section(LoadState *st)
{
	if (!st->have_section || !st->sect_valid)
		return;
	if (st->sect == SECTION_BACKEND) {
		BackendConf *b = &st->cfg->backends[st->sect_index];
		if (!seen_in_section(st, SECTION_BACKEND, "host"))
			add_error(st, st->file_idx, b->line, "backend \"%s\": host is required",
			          b->name);
	} else if (st->sect == SECTION_TENANT) {
		TenantConf *t = &st->cfg->tenants[st->sect_index];
		const char *what = t->is_template ? "template" : "tenant";
		if (!seen_in_section(st, SECTION_TENANT, "mode"))
			add_error(st, st->file_idx, t->line,
			          "%s \"%s\": mode is required (shared, schema or database)", what,
			          t->name);
		if (!seen_in_section(st, SECTION_TENANT, "backend"))
			add_error(st, st->file_idx, t->line,
			          "%s \"%s\": backend is required (the name of a [backend] "
			          "section)",
			          what, t->name);
		if (t->is_template && !seen_in_section(st, SECTION_TEMPLATE, "match"))
			add_error(st, st->file_idx, t->line,
			          "template \"%s\": match is required (a glob over tenant names, "
			          "e.g. *)",
			          t->name);
	}
}

static void open_section(LoadState *st, SectionKind kind, const char *name, bool is_template)
{
	Config *cfg = st->cfg;

	st->have_section = true;
	st->sect_valid = true;
	st->sect = kind;
	st->gen++;
	if (kind == SECTION_BACKEND) {
		if (cfg->n_backends == st->cap_backends) {
			st->cap_backends = st->cap_backends ? st->cap_backends * 2 : 4;
			cfg->backends = xrealloc(cfg->backends,
			                         sizeof(BackendConf) * (size_t)st->cap_backends);
		}
		BackendConf *b = &cfg->backends[cfg->n_backends];
		templates_init();
		*b = backend_template;
		b->name = xstrdup(name);
		b->file = cfg->files[st->file_idx];
		b->line = st->lineno;
		st->sect_index = cfg->n_backends++;
	} else if (kind == SECTION_TENANT) {
		if (cfg->n_tenants == st->cap_tenants) {
			st->cap_tenants = st->cap_tenants ? st->cap_tenants * 2 : 16;
			cfg->tenants = xrealloc(cfg->tenants,
			                        sizeof(TenantConf) * (size_t)st->cap_tenants);
			st->tenant_backend_line = xrealloc(st->tenant_backend_line,
			                                   sizeof(int) * (size_t)st->cap_tenants);
			st->tenant_reserved_line = xrealloc(st->tenant_reserved_line,
			                                    sizeof(int) * (size_t)st->cap_tenants);
		}
		TenantConf *t = &cfg->tenants[cfg->n_tenants];
		templates_init();
		*t = tenant_template;
		t->name = xstrdup(name);
		t->is_template = is_template;
		t->backend_index = -1;
		t->file = cfg->files[st->file_idx];
		t->line = st->lineno;
		st->tenant_backend_line[cfg->n_tenants] = st->lineno;
		st->tenant_reserved_line[cfg->n_tenants] = st->lineno;
		st->sect_index = cfg->n_tenants++;
	} else {
		st->sect_index = 0;
	}
}

/* "[ kind name ]" as the reader sees it; p points at '['. */
static void parse_section_header(LoadState *st, char *p)
{
	char *close, *rest, *name, *end, *kind;
	bool was_space = false;

	finish_section(st);
	st->have_section = true;
	st->sect_valid = false; /* until proven otherwise: keys below it are not checked */

	/* inih's rule: ']' ends the header, so does a ';' comment after a space */
	for (close = p + 1; *close && *close != ']'; close++) {
		if (was_space && *close == ';')
			break;
		was_space = isspace((unsigned char)*close);
	}
	if (*close != ']') {
		add_error(st, st->file_idx, st->lineno, "section header without closing ']'");
		return;
	}
	rest = (char *)skip_space(close + 1);
	if (*rest && *rest != ';' && *rest != '#') {
		add_error(st, st->file_idx, st->lineno, "unexpected text after section header: %s",
		          rest);
		return;
	}
	*close = '\0';
	kind = (char *)skip_space(p + 1);
	end = kind + strlen(kind);
	while (end > kind && isspace((unsigned char)end[-1]))
		*--end = '\0';
	name = kind;
	while (*name && !isspace((unsigned char)*name))
		name++;
	if (*name) {
		*name++ = '\0';
		name = (char *)skip_space(name);
	}

	if (strcmp(kind, "pgtenant") == 0 && !*name) {
		open_section(st, SECTION_GLOBAL, NULL, false);
	} else if (strcmp(kind, "backend") == 0 || strcmp(kind, "tenant") == 0 ||
	           strcmp(kind, "template") == 0) {
		SectionKind sk = kind[0] == 'b' ? SECTION_BACKEND : SECTION_TENANT;
		if (!*name)
			add_error(st, st->file_idx, st->lineno,
			          "section [%s] needs a name: [%s NAME]", kind, kind);
		else if (!config_valid_name(name))
			add_error(st, st->file_idx, st->lineno,
			          "invalid %s name \"%s\" (use letters, digits, _ and -, at most "
			          "%d characters)",
			          kind, name, CONFIG_NAME_MAX);
		else
			open_section(st, sk, name, strcmp(kind, "template") == 0);
	} else {
		add_error(st, st->file_idx, st->lineno,
		          "unknown section [%s%s%s] (expected [pgtenant], [backend NAME], "
		          "[tenant NAME] or [template NAME])",
		          kind, *name ? " " : "", name);
	}
}

/*
 * inih's reader. Hands inih only what it parses well: blank lines and
 * "key = value" lines, stripped of leading space (which also keeps inih's
 * multi-line continuation, a surprise for anyone indenting a key, from
 * ever applying).
 */
static char *config_reader(char *buf, int num, void *stream)
{
	LoadState *st = stream;
	ssize_t n;
	char *p;
	size_t len;

	n = getline(&st->linebuf, &st->linecap, st->fp);
	if (n < 0)
		return NULL;
	st->lineno++;
	p = st->linebuf;
	len = strlen(p);
	while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
		p[--len] = '\0';
	if (st->lineno == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
	    (unsigned char)p[2] == 0xBF)
		p += 3;
	p = (char *)skip_space(p);
	len = strlen(p);
	while (len && isspace((unsigned char)p[len - 1]))
		p[--len] = '\0';

	snprintf(buf, (size_t)num, "\n");
	if (len + 2 > (size_t)num) {
		add_error(st, st->file_idx, st->lineno, "line longer than %d characters", num - 2);
		if (*p == '[') {
			/* its keys would land in the previous section otherwise */
			finish_section(st);
			st->sect_valid = false;
		}
		return buf;
	}
	if (*p == '\0' || *p == ';' || *p == '#')
		return buf;
	if (*p == '[') {
		parse_section_header(st, p);
		return buf;
	}
	{
		/* the same rule inih applies: '=' or ':' before any " ;" comment */
		bool was_space = false, ok = false;
		for (const char *q = p; *q; q++) {
			if (*q == '=' || *q == ':') {
				ok = true;
				break;
			}
			if (was_space && *q == ';')
				break;
			was_space = isspace((unsigned char)*q);
		}
		if (!ok) {
			add_error(st, st->file_idx, st->lineno,
			          "expected \"key = value\", got \"%s\"", p);
			return buf;
		}
	}
	snprintf(buf, (size_t)num, "%s\n", p);
	return buf;
}

static int edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int row[CONFIG_NAME_MAX + 2];

	if (la > CONFIG_NAME_MAX || lb > CONFIG_NAME_MAX)
		return INT_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int diag = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int up = row[j];
			int cost = tolower((unsigned char)a[i - 1]) !=
			           tolower((unsigned char)b[j - 1]);
			int best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static const ConfigKey *closest_key(SectionKind section, const char *name, int *dist)
{
	const ConfigKey *best = NULL;
	int bestd = INT_MAX;

	sections_init();
	for (int i = section_begin[section]; i < section_end[section]; i++) {
		int d = edit_distance(name, config_keys[i].name);
		if (d < bestd) {
			bestd = d;
			best = &config_keys[i];
		}
	}
	*dist = bestd;
	return best;
}

static const char *section_kind_label(SectionKind s)
{
	return s == SECTION_GLOBAL    ? "[pgtenant]"
	       : s == SECTION_BACKEND ? "[backend NAME]"
	                              : "[tenant NAME]";
}

static void report_unknown_key(LoadState *st, const char *name)
{
	char label[CONFIG_NAME_MAX + 16], hint[256] = "";
	int d, limit = strlen(name) <= 4 ? 1 : 2;
	const ConfigKey *k = closest_key(st->sect, name, &d);

	section_label(st, label, sizeof(label));
	if (k && d <= limit) {
		snprintf(hint, sizeof(hint), "; did you mean \"%s\"?", k->name);
	} else {
		/* maybe it is a key of another section, spelt right or nearly */
		for (int s = SECTION_GLOBAL; s <= SECTION_TENANT; s++) {
			if ((SectionKind)s == st->sect)
				continue;
			k = closest_key((SectionKind)s, name, &d);
			if (k && d <= limit) {
				snprintf(hint, sizeof(hint), "; \"%s\" is a key of %s sections",
				         k->name, section_kind_label((SectionKind)s));
				break;
			}
		}
	}
	add_error(st, st->file_idx, st->lineno, "unknown key \"%s\" in %s%s", name, label, hint);
}

static int config_handler(void *user, const char *section, const char *name, const char *value)
{
	LoadState *st = user;
	const ConfigKey *k;
	void *base;
	Value v;
	char err[512];
	int ki;

	if (!st->have_section) {
		add_error(st, st->file_idx, st->lineno,
		          "key \"%s\" outside any section (global keys go under [pgtenant])", name);
		return 1;
	}
	if (!st->sect_valid)
		return 1; /* the section header was reported; its keys would only add noise */
	if (!*name) {
		add_error(st, st->file_idx, st->lineno, "missing key name before '='");
		return 1;
	}
	k = config_find_key(st->sect, name);
	if (!k && st->sect == SECTION_TENANT && st->cfg->tenants[st->sect_index].is_template)
		k = config_find_key(SECTION_TEMPLATE, name);
	if (!k) {
		report_unknown_key(st, name);
		return 1;
	}
	ki = key_index(k);
	if (st->sect == SECTION_GLOBAL) {
		if (st->global_file[ki] >= 0) {
			if (st->global_file[ki] == st->file_idx)
				add_error(
				        st, st->file_idx, st->lineno,
				        "duplicate key \"%s\" in [pgtenant] (first set at line %d)",
				        k->name, st->global_line[ki]);
			else
				add_error(st, st->file_idx, st->lineno,
				          "duplicate key \"%s\" in [pgtenant] (first set at %s:%d)",
				          k->name, st->cfg->files[st->global_file[ki]],
				          st->global_line[ki]);
			return 1;
		}
		st->global_file[ki] = st->file_idx;
		st->global_line[ki] = st->lineno;
		if (!st->in_main && strcmp(k->name, "include_dir") == 0) {
			add_error(st, st->file_idx, st->lineno,
			          "include_dir is only read from the main configuration file");
			return 1;
		}
		base = st->cfg;
	} else {
		if (st->seen_gen[ki] == st->gen) {
			char label[CONFIG_NAME_MAX + 16];
			add_error(st, st->file_idx, st->lineno,
			          "duplicate key \"%s\" in %s (first set at line %d)", k->name,
			          section_label(st, label, sizeof(label)), st->seen_line[ki]);
			return 1;
		}
		if (st->sect == SECTION_BACKEND) {
			base = &st->cfg->backends[st->sect_index];
		} else {
			base = &st->cfg->tenants[st->sect_index];
			if (strcmp(k->name, "backend") == 0)
				st->tenant_backend_line[st->sect_index] = st->lineno;
			else if (strcmp(k->name, "reserved_conns") == 0)
				st->tenant_reserved_line[st->sect_index] = st->lineno;
		}
	}
	st->seen_gen[ki] = st->gen;
	st->seen_line[ki] = st->lineno;

	if (!value_parse(k, value, &v, err, sizeof(err))) {
		add_error(st, st->file_idx, st->lineno, "%s", err);
		return 1;
	}
	value_store(k, base, &v);
	return 1;
}

static int add_file(Config *cfg, const char *path)
{
	cfg->files = xrealloc(cfg->files, sizeof(char *) * (size_t)(cfg->n_files + 1));
	cfg->files[cfg->n_files] = xstrdup(path);
	return cfg->n_files++;
}

static void read_file(LoadState *st, const char *path, bool is_main)
{
	int rc;

	st->file_idx = add_file(st->cfg, path);
	st->lineno = 0;
	st->file_errs = 0;
	st->in_main = is_main;
	st->have_section = false;
	st->sect_valid = false;
	st->fp = fopen(path, "r");
	if (!st->fp) {
		add_error(st, st->file_idx, 0, "could not open configuration file: %s",
		          strerror(errno));
		return;
	}
	rc = ini_parse_stream(config_reader, st, config_handler, st);
	finish_section(st);
	if (ferror(st->fp))
		add_error(st, st->file_idx, st->lineno, "read error: %s", strerror(errno));
	else if (rc != 0 && st->file_errs == 0)
		/* inih saw something our reader let through; never let it pass silently */
		add_error(st, st->file_idx, rc > 0 ? rc : 0, "syntax error");
	fclose(st->fp);
	st->fp = NULL;
	st->have_section = false;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char *config_relative_path(const Config *cfg, const char *p)
{
	if (p[0] == '/' || !strchr(cfg->path, '/'))
		return xstrdup(p);
	const char *slash = strrchr(cfg->path, '/');
	size_t dl = (size_t)(slash - cfg->path);
	size_t len = dl + 1 + strlen(p) + 1;
	char *out = xmalloc(len);
	snprintf(out, len, "%.*s/%s", (int)dl, cfg->path, p);
	return out;
}

char *config_include_path(const Config *cfg)
{
	return cfg->include_dir ? config_relative_path(cfg, cfg->include_dir) : NULL;
}

static void read_include_dir(LoadState *st)
{
	Config *cfg = st->cfg;
	int line = st->global_line[key_index(config_find_key(SECTION_GLOBAL, "include_dir"))];
	char *dir;
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	int n = 0, cap = 0;
	struct stat main_st;
	bool have_main_st;

	dir = config_relative_path(cfg, cfg->include_dir);
	d = opendir(dir);
	if (!d) {
		add_error(st, 0, line, "include_dir \"%s\": %s", dir, strerror(errno));
		free(dir);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len <= 4 || strcmp(de->d_name + len - 4, ".ini") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			names = xrealloc(names, sizeof(char *) * (size_t)cap);
		}
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n > 0) /* names is NULL for an empty directory, and qsort's base may not be */
		qsort(names, (size_t)n, sizeof(char *), cmp_str);

	have_main_st = stat(cfg->path, &main_st) == 0;
	for (int i = 0; i < n; i++) {
		size_t len = strlen(dir) + 1 + strlen(names[i]) + 1;
		char *full = xmalloc(len);
		struct stat fst;

		snprintf(full, len, "%s/%s", dir, names[i]);
		if (stat(full, &fst) == 0 && S_ISREG(fst.st_mode) &&
		    !(have_main_st && fst.st_dev == main_st.st_dev && fst.st_ino == main_st.st_ino))
			read_file(st, full, false);
		free(full);
		free(names[i]);
	}
	free(names);
	free(dir);
}

/* The (file, line) of a global key, for checks made after reading. */
static void global_key_place(const LoadState *st, const char *key, int *file_idx, int *line)
{
	int ki = key_index(config_find_key(SECTION_GLOBAL, key));

	if (st->global_file[ki] >= 0) {
		*file_idx = st->global_file[ki];
		*line = st->global_line[ki];
	} else {
		*file_idx = 0;
		*line = 0;
	}
}

static void load_global_report(void *ctx, const char *key, const char *msg)
{
	LoadState *st = ctx;
	int f, l;

	global_key_place(st, key, &f, &l);
	add_error(st, f, l, "%s", msg);
}

/*
 * Sorting helpers; the index breaks ties so the first definition wins.
 * qsort has no context argument (qsort_r is a GNU extension), and loads
 * never run concurrently, so the comparators read this.
 */
static const Config *sort_cfg;

static int cmp_backend_idx(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	int c = strcmp(sort_cfg->backends[x].name, sort_cfg->backends[y].name);
	return c ? c : (x > y) - (x < y);
}

static int cmp_tenant_idx(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	/* templates and tenants have names of their own: sorted apart */
	int c = (int)sort_cfg->tenants[x].is_template - (int)sort_cfg->tenants[y].is_template;
	if (!c)
		c = strcmp(sort_cfg->tenants[x].name, sort_cfg->tenants[y].name);
	return c ? c : (x > y) - (x < y);
}

static int strcmp_null(const char *a, const char *b)
{
	if (!a || !b)
		return (a != NULL) - (b != NULL);
	return strcmp(a, b);
}

static const char *tenant_pool_dbname(const Config *cfg, const TenantConf *t)
{
	if (t->mode == TENANT_MODE_DATABASE && t->dbname)
		return t->dbname;
	return cfg->backends[t->backend_index].dbname;
}

static const char *tenant_pool_user(const Config *cfg, const TenantConf *t)
{
	return t->server_user ? t->server_user : cfg->backends[t->backend_index].user;
}

static int cmp_pool_member(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	const TenantConf *tx = &sort_cfg->tenants[x], *ty = &sort_cfg->tenants[y];
	int c;

	if (tx->backend_index != ty->backend_index)
		return tx->backend_index < ty->backend_index ? -1 : 1;
	if ((c = strcmp_null(tenant_pool_dbname(sort_cfg, tx), tenant_pool_dbname(sort_cfg, ty))))
		return c;
	if ((c = strcmp_null(tenant_pool_user(sort_cfg, tx), tenant_pool_user(sort_cfg, ty))))
		return c;
	return (x > y) - (x < y);
}

/* order holds indices sorted by name; each repeat is reported against the first definition. */
static void report_duplicates(LoadState *st, const char *what, const int *order, int n,
                              bool tenants)
{
	const Config *cfg = st->cfg;
	int first = 0;

#define DUP_NAME(i) (tenants ? cfg->tenants[order[i]].name : cfg->backends[order[i]].name)
#define DUP_FILE(i) (tenants ? cfg->tenants[order[i]].file : cfg->backends[order[i]].file)
#define DUP_LINE(i) (tenants ? cfg->tenants[order[i]].line : cfg->backends[order[i]].line)
#define DUP_TMPL(i) (tenants && cfg->tenants[order[i]].is_template)
	for (int i = 1; i < n; i++) {
		if (strcmp(DUP_NAME(first), DUP_NAME(i)) != 0 || DUP_TMPL(first) != DUP_TMPL(i)) {
			first = i;
			continue;
		}
		add_error(st, file_index_of(cfg, DUP_FILE(i)), DUP_LINE(i),
		          "%s \"%s\" is already defined at %s:%d", DUP_TMPL(i) ? "template" : what,
		          DUP_NAME(i), DUP_FILE(first), DUP_LINE(first));
	}
#undef DUP_TMPL
#undef DUP_NAME
#undef DUP_FILE
#undef DUP_LINE
}

static bool same_pool(const Config *cfg, const TenantConf *a, const TenantConf *b)
{
	return a->backend_index == b->backend_index &&
	       strcmp_null(tenant_pool_dbname(cfg, a), tenant_pool_dbname(cfg, b)) == 0 &&
	       strcmp_null(tenant_pool_user(cfg, a), tenant_pool_user(cfg, b)) == 0;
}

/* What only a [template] needs: {tenant} where it means something, no reservations. */
static void template_check(LoadState *st, const TenantConf *t, int fi)
{
	static const char *const no_subst[] = {"backend",         "users", "shared_schemas",
	                                       "server_password", "match", "exists_query"};
	const char *const vals[] = {t->backend,         t->users, t->shared_schemas,
	                            t->server_password, t->match, t->exists_query};

	if (t->mode == TENANT_MODE_SHARED && !t->exists_query)
		add_error(st, fi, t->line,
		          "template \"%s\": shared mode needs exists_query (e.g. SELECT 1 FROM "
		          "tenants WHERE id = $1)",
		          t->name);
	if (t->reserved_conns > 0)
		add_error(st, fi, t->line,
		          "template \"%s\": reserved_conns cannot be given to every tenant a "
		          "template may serve",
		          t->name);
	for (size_t i = 0; i < ARRAY_SIZE(no_subst); i++)
		if (vals[i] && strstr(vals[i], "{tenant}"))
			add_error(st, fi, t->line,
			          "template \"%s\": {tenant} is only replaced in schema, dbname, "
			          "tenant_id and server_user, not in %s",
			          t->name, no_subst[i]);
}

/*
 * Templates are parsed as tenant sections (same keys, same checks); once
 * validated they move to cfg->templates, keeping their file order, which
 * decides the first match.
 */
static void split_templates(Config *cfg)
{
	int n = 0;

	for (int i = 0; i < cfg->n_tenants; i++)
		n += cfg->tenants[i].is_template;
	if (!n)
		return;
	cfg->templates = xmalloc(sizeof(TenantConf) * (size_t)n);
	int kept = 0;
	for (int i = 0; i < cfg->n_tenants; i++) {
		if (cfg->tenants[i].is_template)
			cfg->templates[cfg->n_templates++] = cfg->tenants[i];
		else
			cfg->tenants[kept++] = cfg->tenants[i];
	}
	cfg->n_tenants = kept;
}

bool config_glob_match(const char *glob, const char *name)
{
	const char *star = NULL, *resume = NULL;

	while (*name) {
		if (*glob == '*') {
			star = glob++;
			resume = name;
			continue;
		}
		if (*glob == '[') {
			const char *p = glob + 1;
			bool neg = *p == '!' || *p == '^', hit = false;
			if (neg)
				p++;
			for (; *p && (*p != ']' || p == glob + 1 + neg); p++) {
				if (p[1] == '-' && p[2] && p[2] != ']') {
					hit = hit || (*name >= p[0] && *name <= p[2]);
					p += 2;
				} else {
					hit = hit || *name == *p;
				}
			}
			if (*p == ']' && hit != neg) {
				glob = p + 1;
				name++;
				continue;
			}
		} else if (*glob && (*glob == '?' || *glob == *name)) {
			glob++;
			name++;
			continue;
		}
		if (!star)
			return false;
		glob = star + 1;
		name = ++resume;
	}
	while (*glob == '*')
		glob++;
	return !*glob;
}

const TenantConf *config_template_for(const Config *cfg, const char *name)
{
	for (int i = 0; i < cfg->n_templates; i++)
		if (config_glob_match(cfg->templates[i].match, name))
			return &cfg->templates[i];
	return NULL;
}

static void validate(LoadState *st)
{
	Config *cfg = st->cfg;
	int *border = xmalloc(sizeof(int) * (size_t)(cfg->n_backends + 1));
	int *torder = xmalloc(sizeof(int) * (size_t)(cfg->n_tenants + 1));
	int n_members = 0;

	sort_cfg = cfg;
	for (int i = 0; i < cfg->n_backends; i++)
		border[i] = i;
	qsort(border, (size_t)cfg->n_backends, sizeof(int), cmp_backend_idx);
	report_duplicates(st, "backend", border, cfg->n_backends, false);

	for (int i = 0; i < cfg->n_tenants; i++)
		torder[i] = i;
	qsort(torder, (size_t)cfg->n_tenants, sizeof(int), cmp_tenant_idx);
	report_duplicates(st, "tenant", torder, cfg->n_tenants, true);

	/* backends first: tenants' pool sizes depend on them */
	for (int i = 0; i < cfg->n_backends; i++) {
		BackendConf *b = &cfg->backends[i];
		if (b->pool_size < 0) {
			b->pool_size = cfg->default_pool_size;
			b->pool_size_inherited = true;
		}
		for (int r = 0; r < b->n_replicas; r++)
			if (b->replicas[r].port == 0)
				b->replicas[r].port = b->port;
		if (b->min_pool_size > b->pool_size)
			add_error(st, file_index_of(cfg, b->file), b->line,
			          "backend \"%s\": min_pool_size %d is larger than pool_size %d",
			          b->name, b->min_pool_size, b->pool_size);
	}

	for (int i = 0; i < cfg->n_tenants; i++) {
		TenantConf *t = &cfg->tenants[i];
		int fi = file_index_of(cfg, t->file);

		if (t->is_template) {
			template_check(st, t, fi);
		} else if (cfg->admin_db && strcmp(t->name, cfg->admin_db) == 0)
			add_error(st, fi, t->line,
			          "tenant \"%s\" has the name of admin_db; clients could not reach "
			          "it",
			          t->name);
		if (list_is_empty(config_tenant_users(cfg, t)))
			add_error(st, fi, t->line,
			          "tenant \"%s\": no user may connect (set users or tenant_users)",
			          t->name);
		if (!t->backend)
			continue;

		/* binary search among the sorted backends; the first definition wins */
		int lo = 0, hi = cfg->n_backends;
		while (lo < hi) {
			int mid = (lo + hi) / 2;
			if (strcmp(cfg->backends[border[mid]].name, t->backend) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < cfg->n_backends &&
		    strcmp(cfg->backends[border[lo]].name, t->backend) == 0) {
			t->backend_index = border[lo];
		} else {
			add_error(st, fi, st->tenant_backend_line[i],
			          "tenant \"%s\": backend \"%s\" is not defined", t->name,
			          t->backend);
			continue;
		}

		int size = config_tenant_pool_size(cfg, t);
		if (t->reserved_conns > size)
			add_error(st, fi, st->tenant_reserved_line[i],
			          "tenant \"%s\": reserved_conns %d is more than its pool_size %d",
			          t->name, t->reserved_conns, size);
		if (t->reserved_conns > 0)
			torder[n_members++] = i;
	}

	/* tenants sharing a pool: their reservations must fit in it together */
	qsort(torder, (size_t)n_members, sizeof(int), cmp_pool_member);
	for (int g = 0; g < n_members;) {
		const TenantConf *first = &cfg->tenants[torder[g]];
		const BackendConf *b = &cfg->backends[first->backend_index];
		int end = g + 1, cross = -1;
		long long total = 0;

		while (end < n_members && same_pool(cfg, first, &cfg->tenants[torder[end]]))
			end++;
		for (int i = g; i < end; i++) {
			total += cfg->tenants[torder[i]].reserved_conns;
			if (cross < 0 && total > b->pool_size)
				cross = torder[i];
		}
		if (cross >= 0) {
			/* reported where the sum first overflows: usually the latest addition */
			const TenantConf *t = &cfg->tenants[cross];
			const char *user = tenant_pool_user(cfg, t);
			char role[CONFIG_NAME_MAX + 64];
			if (user)
				snprintf(role, sizeof(role), "server_user \"%.*s\"",
				         CONFIG_NAME_MAX, user);
			else
				snprintf(role, sizeof(role), "clients' own roles");
			add_error(st, file_index_of(cfg, t->file), st->tenant_reserved_line[cross],
			          "tenant \"%s\": reserved_conns of the %d tenants sharing backend "
			          "\"%s\"'s pool (%s) add up to %lld, more than its pool_size %d",
			          t->name, end - g, b->name, role, total, b->pool_size);
		}
		g = end;
	}

	global_check(cfg, load_global_report, st);
	free(border);
	free(torder);
}

static int cmp_load_error(const void *a, const void *b)
{
	const LoadError *x = a, *y = b;

	if (x->file_idx != y->file_idx)
		return x->file_idx < y->file_idx ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

Config *config_load(const char *path, ConfigErrors *errs)
{
	LoadState st;
	Config *cfg = xcalloc(1, sizeof(Config));

	errs->msgs = NULL;
	errs->n = 0;
	memset(&st, 0, sizeof(st));
	st.cfg = cfg;
	st.seen_gen = xcalloc((size_t)config_n_keys, sizeof(unsigned));
	st.seen_line = xcalloc((size_t)config_n_keys, sizeof(int));
	st.global_file = xmalloc(sizeof(int) * (size_t)config_n_keys);
	st.global_line = xcalloc((size_t)config_n_keys, sizeof(int));
	for (int i = 0; i < config_n_keys; i++)
		st.global_file[i] = -1;

	cfg->path = xstrdup(path);
	apply_defaults(SECTION_GLOBAL, cfg);
	read_file(&st, path, true);
	/* read even after errors: one --check run should show every problem */
	if (cfg->include_dir)
		read_include_dir(&st);
	validate(&st);
	split_templates(cfg);

	free(st.linebuf);
	free(st.seen_gen);
	free(st.seen_line);
	free(st.global_file);
	free(st.global_line);
	free(st.tenant_backend_line);
	free(st.tenant_reserved_line);

	if (st.n_errs == 0) {
		free(st.errs);
		return cfg;
	}
	qsort(st.errs, (size_t)st.n_errs, sizeof(LoadError), cmp_load_error);
	errs->msgs = xmalloc(sizeof(char *) * (size_t)st.n_errs);
	for (int i = 0; i < st.n_errs; i++)
		errs->msgs[i] = st.errs[i].msg;
	errs->n = st.n_errs;
	free(st.errs);
	config_free(cfg);
	return NULL;
}

void config_free(Config *cfg)
{
	if (!cfg)
		return;
	for (int i = 0; i < cfg->n_backends; i++) {
		free_fields(SECTION_BACKEND, &cfg->backends[i]);
		free(cfg->backends[i].name);
	}
	free(cfg->backends);
	for (int i = 0; i < cfg->n_tenants; i++) {
		free_fields(SECTION_TENANT, &cfg->tenants[i]);
		free_fields(SECTION_TEMPLATE, &cfg->tenants[i]);
		free(cfg->tenants[i].name);
	}
	free(cfg->tenants);
	for (int i = 0; i < cfg->n_templates; i++) {
		free_fields(SECTION_TENANT, &cfg->templates[i]);
		free_fields(SECTION_TEMPLATE, &cfg->templates[i]);
		free(cfg->templates[i].name);
	}
	free(cfg->templates);
	free_fields(SECTION_GLOBAL, cfg);
	for (int i = 0; i < cfg->n_files; i++)
		free(cfg->files[i]);
	free(cfg->files);
	free(cfg->path);
	free(cfg);
}

void config_errors_free(ConfigErrors *errs)
{
	if (!errs)
		return;
	for (int i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->n = 0;
}

/* ---------------------------------------------------------------------- */
/* Console SET                                                            */
/* ---------------------------------------------------------------------- */

typedef struct SetReport {
	char *err;
	size_t errlen;
	bool failed;
} SetReport;

static void set_report(void *ctx, const char *key, const char *msg)
{
	SetReport *r = ctx;

	if (!r->failed)
		snprintf(r->err, r->errlen, "%s", msg);
	r->failed = true;
}

bool config_set_global(Config *cfg, const char *name, const char *value, char *err, size_t errlen)
{
	const ConfigKey *k = config_find_key(SECTION_GLOBAL, name);
	SetReport rep = {err, errlen, false};
	Config trial;
	Value v;

	if (!k) {
		int d;
		const ConfigKey *near = closest_key(SECTION_GLOBAL, name, &d);
		if (near && d <= 2)
			snprintf(err, errlen, "unknown key \"%s\"; did you mean \"%s\"?", name,
			         near->name);
		else
			snprintf(err, errlen, "unknown key \"%s\"", name);
		return false;
	}
	if (!k->reloadable) {
		snprintf(err, errlen, "%s cannot be changed while running (restart pgtenant)",
		         k->name);
		return false;
	}
	if (strcmp(k->name, "include_dir") == 0) {
		snprintf(err, errlen, "include_dir can only be changed in the file, then RELOAD");
		return false;
	}
	if (!value_parse(k, value, &v, err, errlen))
		return false;

	/* check the cross-key rules on a shallow copy before touching cfg */
	trial = *cfg;
	{
		void *f = field_ptr(k, &trial);
		switch (k->type) {
		case KEY_STRING:
			*(char **)f = v.s;
			break;
		case KEY_INT:
		case KEY_ENUM:
			*(int *)f = (int)v.i;
			break;
		case KEY_BOOL:
			*(bool *)f = v.b;
			break;
		case KEY_DURATION:
		case KEY_SIZE:
			*(int64_t *)f = v.i;
			break;
		case KEY_DOUBLE:
			*(double *)f = v.d;
			break;
		case KEY_TENANT_FROM:
			memcpy(trial.tenant_from, v.tf, sizeof(trial.tenant_from));
			trial.n_tenant_from = v.n_tf;
			break;
		case KEY_HOSTPORT_LIST:
			break;
		}
	}
	global_check(&trial, set_report, &rep);
	/* backends without a pool_size of their own follow default_pool_size */
	bool pool_default = strcmp(k->name, "default_pool_size") == 0;
	for (int i = 0; pool_default && !rep.failed && i < cfg->n_backends; i++) {
		const BackendConf *b = &cfg->backends[i];
		if (b->pool_size_inherited && b->min_pool_size > trial.default_pool_size) {
			snprintf(err, errlen, "backend \"%s\": min_pool_size %d is larger than %d",
			         b->name, b->min_pool_size, trial.default_pool_size);
			rep.failed = true;
		}
	}
	if (rep.failed) {
		value_free(k, &v);
		return false;
	}
	value_store(k, cfg, &v);
	for (int i = 0; pool_default && i < cfg->n_backends; i++)
		if (cfg->backends[i].pool_size_inherited)
			cfg->backends[i].pool_size = cfg->default_pool_size;
	return true;
}

/* ---------------------------------------------------------------------- */
/* Resolved per-tenant values                                             */
/* ---------------------------------------------------------------------- */

PoolMode config_tenant_pool_mode(const Config *cfg, const TenantConf *t)
{
	return t->pool_mode >= 0 ? (PoolMode)t->pool_mode : cfg->pool_mode;
}

int config_tenant_pool_size(const Config *cfg, const TenantConf *t)
{
	if (t->pool_size >= 0)
		return t->pool_size;
	if (t->mode == TENANT_MODE_DATABASE && t->backend_index >= 0 &&
	    t->backend_index < cfg->n_backends) {
		int b = cfg->backends[t->backend_index].pool_size;
		return b >= 0 ? b : cfg->default_pool_size;
	}
	return cfg->tenant_pool_size;
}

usec_t config_tenant_query_timeout(const Config *cfg, const TenantConf *t)
{
	return t->query_timeout >= 0 ? t->query_timeout : cfg->query_timeout;
}

usec_t config_tenant_query_wait_timeout(const Config *cfg, const TenantConf *t)
{
	return t->query_wait_timeout >= 0 ? t->query_wait_timeout : cfg->query_wait_timeout;
}

usec_t config_tenant_idle_transaction_timeout(const Config *cfg, const TenantConf *t)
{
	return t->idle_transaction_timeout >= 0 ? t->idle_transaction_timeout
	                                        : cfg->idle_transaction_timeout;
}

usec_t config_tenant_client_idle_timeout(const Config *cfg, const TenantConf *t)
{
	return t->client_idle_timeout >= 0 ? t->client_idle_timeout : cfg->client_idle_timeout;
}

ReadRouting config_tenant_read_routing(const Config *cfg, const TenantConf *t)
{
	return t->read_routing >= 0 ? (ReadRouting)t->read_routing : cfg->read_routing;
}

const char *config_tenant_schema(const TenantConf *t)
{
	return t->schema ? t->schema : t->name;
}

const char *config_tenant_shared_schemas(const TenantConf *t)
{
	return t->shared_schemas ? t->shared_schemas : "public";
}

const char *config_tenant_id(const TenantConf *t)
{
	return t->tenant_id ? t->tenant_id : t->name;
}

const char *config_tenant_users(const Config *cfg, const TenantConf *t)
{
	if (t->users)
		return t->users;
	return cfg->tenant_users ? cfg->tenant_users : "";
}

const BackendConf *config_tenant_backend(const Config *cfg, const TenantConf *t)
{
	if (t->backend_index >= 0 && t->backend_index < cfg->n_backends)
		return &cfg->backends[t->backend_index];
	return NULL;
}

const char *config_tenant_dbname(const Config *cfg, const TenantConf *t)
{
	const BackendConf *b = config_tenant_backend(cfg, t);
	if (t->dbname)
		return t->dbname;
	return b ? b->dbname : NULL;
}

const char *config_tenant_server_user(const Config *cfg, const TenantConf *t)
{
	const BackendConf *b = config_tenant_backend(cfg, t);
	if (t->server_user)
		return t->server_user;
	return b ? b->user : NULL;
}

const char *config_tenant_server_password(const Config *cfg, const TenantConf *t)
{
	const BackendConf *b = config_tenant_backend(cfg, t);
	/* a tenant's own role never borrows the backend role's password */
	if (t->server_user)
		return t->server_password;
	return b ? b->password : NULL;
}

usec_t config_read_your_writes(const Config *cfg)
{
	return cfg->read_your_writes >= 0 ? cfg->read_your_writes : cfg->max_replica_lag;
}

int config_backend_replica_pool_size(const BackendConf *b)
{
	return b->replica_pool_size >= 0 ? b->replica_pool_size : b->pool_size;
}

ServerTlsMode config_backend_server_tls_mode(const Config *cfg, const BackendConf *b)
{
	return b->server_tls_mode >= 0 ? (ServerTlsMode)b->server_tls_mode : cfg->server_tls_mode;
}
