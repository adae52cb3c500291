/*
 * admin: see include/admin.h.
 *
 * Input is framed here from the console client's buffer: every message is
 * length-checked and copied out before it is acted on, because a command
 * (KILL, SHUTDOWN) may close connections and the buffer with them.
 *
 * Simple Query: each ';'-separated command answers in turn, then one
 * ReadyForQuery; an error ends the string. Extended protocol (what drivers
 * such as psycopg send even without parameters): Parse stores the text,
 * Bind makes a portal, Describe of a SHOW portal runs it and keeps the rows
 * for Execute; any other command runs at Execute. After an error,
 * messages are dropped until Sync, as PostgreSQL does.
 *
 * PAUSE and WAIT_CLOSE answer later: the session is marked waiting, no
 * further input is read until control.c calls admin_command_done(), and
 * then the rest of the Query string (or the buffered messages) go on.
 *
 * Per-console state lives in a small list here, not in Client: sessions
 * are matched by pointer and cancel key, and ones whose client left the
 * console list are dropped on the next call.
 */
#include "admin.h"

#include "audit.h"
#include "client.h"
#include "config.h"
#include "control.h"
#include "health.h"
#include "log.h"
#include "onboard.h"
#include "pgtenant.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "stats.h"
#include "tenant.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The console takes short commands; anything larger is a broken or hostile client. */
#define ADMIN_MAX_MSG (1024 * 1024)
/* Stop reading from a console that keeps sending while a PAUSE is pending. */
#define ADMIN_MAX_PENDING_INPUT (1024 * 1024)
#define ADMIN_MAX_STMTS         256
#define ADMIN_MAX_TOKENS        64 /* CREATE TENANT ... WITH (...) is the longest */
#define ADMIN_LOG_CMD_MAX       1000

#define OID_INT8 20
#define OID_TEXT 25

typedef struct AdminStmt {
	struct AdminStmt *next;
	char *name;
	char *sql;
} AdminStmt;

typedef struct AdminPortal {
	struct AdminPortal *next;
	char *name;
	char *sql;
	Buf result; /* DataRows and CommandComplete of a SHOW already run by Describe */
	bool has_result;
	bool done; /* executed to completion: a second Execute returns no rows */
} AdminPortal;

typedef struct AdminSession {
	struct AdminSession *next;
	Client *c;
	uint32_t cancel_pid, cancel_key; /* with c: tells a reused Client address apart */
	AdminStmt *stmts;
	int n_stmts;
	AdminPortal *portals;

	/* a command answering later (PAUSE, WAIT_CLOSE) */
	bool waiting;
	bool in_call;   /* inside control_*(): a completion is recorded, not acted on */
	bool completed; /* it completed during that call */
	bool failed;
	char done_tag[32];
	char err_state[6];
	char *err_msg;
	bool from_query;     /* came from a Query message: rest and ReadyForQuery follow */
	char *rest;          /* the Query string's commands after it */
	char *pending_cmd;   /* for the log and the audit record */
	bool shutdown_after; /* SHUTDOWN answered: act once the answer is flushed */
	bool resume_pending; /* answered; the rest of its input waits for on_resume() */
	bool resume_ok;
} AdminSession;

static AdminSession *sessions;
static struct event *resume_ev;

typedef enum { EXEC_OK = 0, EXEC_ERROR, EXEC_PENDING } ExecResult;

static void process_input(AdminSession *s);

/* ---------------------------------------------------------------------------------------
 * Sessions.
 */

static bool session_alive(const AdminSession *s)
{
	const List *it;

	list_for_each(it, &g_console_clients)
	{
		const Client *c = list_entry(it, Client, node);
		if (c == s->c)
			return !c->closing && c->cancel_pid == s->cancel_pid &&
			       c->cancel_key == s->cancel_key;
	}
	return false;
}

static void portal_free(AdminPortal *p)
{
	free(p->name);
	free(p->sql);
	buf_free(&p->result);
	free(p);
}

static void portals_clear(AdminSession *s)
{
	while (s->portals) {
		AdminPortal *p = s->portals;
		s->portals = p->next;
		portal_free(p);
	}
}

static void session_free(AdminSession *s)
{
	while (s->stmts) {
		AdminStmt *st = s->stmts;
		s->stmts = st->next;
		free(st->name);
		free(st->sql);
		free(st);
	}
	portals_clear(s);
	free(s->err_msg);
	free(s->rest);
	free(s->pending_cmd);
	free(s);
}

/* Drops the sessions of consoles that went away (client.c frees Clients on its own). */
static void sessions_prune(void)
{
	for (AdminSession **pp = &sessions; *pp;) {
		if (!session_alive(*pp)) {
			AdminSession *s = *pp;
			*pp = s->next;
			session_free(s);
		} else {
			pp = &(*pp)->next;
		}
	}
}

static AdminSession *session_find(const Client *c)
{
	for (AdminSession *s = sessions; s; s = s->next)
		if (s->c == c && s->cancel_pid == c->cancel_pid && s->cancel_key == c->cancel_key)
			return s;
	return NULL;
}

static AdminSession *session_get(Client *c)
{
	AdminSession *s;

	sessions_prune();
	s = session_find(c);
	if (s)
		return s;
	s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->cancel_pid = c->cancel_pid;
	s->cancel_key = c->cancel_key;
	s->next = sessions;
	sessions = s;
	return s;
}

static void session_drop(AdminSession *s)
{
	for (AdminSession **pp = &sessions; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			session_free(s);
			return;
		}
	}
}

/* ---------------------------------------------------------------------------------------
 * Result sets.
 */

typedef struct AdminCol {
	const char *name;
	bool num; /* int8, else text */
	bool dbl; /* float8 (milliseconds with fractions) */
} AdminCol;

#define OID_FLOAT8 701

typedef struct ResultSet {
	Buf *out;
	int ncols;
	int nrows;
	int col;       /* values written in the current row */
	size_t row_at; /* pkt_begin offset of the current DataRow */
} ResultSet;

static void rs_begin(ResultSet *rs, Buf *out, const AdminCol *cols, int ncols, bool rowdesc)
{
	size_t start;

	rs->out = out;
	rs->ncols = ncols;
	rs->nrows = 0;
	rs->col = 0;
	if (!rowdesc)
		return;
	pkt_begin(out, 'T', &start);
	pkt_put_u16(out, (uint16_t)ncols);
	for (int i = 0; i < ncols; i++) {
		pkt_put_cstr(out, cols[i].name);
		pkt_put_u32(out, 0); /* table */
		pkt_put_u16(out, 0); /* column */
		pkt_put_u32(out, cols[i].dbl ? OID_FLOAT8 : cols[i].num ? OID_INT8 : OID_TEXT);
		pkt_put_u16(out, cols[i].num || cols[i].dbl ? 8 : 0xffff); /* 8, or -1 (varlena) */
		pkt_put_u32(out, 0xffffffffu);                             /* typmod -1 */
		pkt_put_u16(out, 0);                                       /* text format */
	}
	pkt_finish(out, start);
}

static void rs_row(ResultSet *rs)
{
	pkt_begin(rs->out, 'D', &rs->row_at);
	pkt_put_u16(rs->out, (uint16_t)rs->ncols);
	rs->col = 0;
}

static void rs_str(ResultSet *rs, const char *v)
{
	if (!v) {
		pkt_put_u32(rs->out, 0xffffffffu);
	} else {
		size_t n = strlen(v);
		pkt_put_u32(rs->out, (uint32_t)n);
		pkt_put_bytes(rs->out, v, n);
	}
	rs->col++;
}

static void rs_int(ResultSet *rs, int64_t v)
{
	char num[24];
	snprintf(num, sizeof(num), "%lld", (long long)v);
	rs_str(rs, num);
}

static void rs_ms(ResultSet *rs, double ms)
{
	char num[32];
	snprintf(num, sizeof(num), "%.3f", ms);
	rs_str(rs, num);
}

/* p50, p95 and p99 of h, in milliseconds. */
static void rs_quantiles(ResultSet *rs, const Hist *h)
{
	rs_ms(rs, hist_quantile_ms(h, 0.50));
	rs_ms(rs, hist_quantile_ms(h, 0.95));
	rs_ms(rs, hist_quantile_ms(h, 0.99));
}

static void rs_row_end(ResultSet *rs)
{
	/* a column missed or added is a bug here, and would desynchronise the client */
	if (rs->col != rs->ncols)
		log_error("admin: row with %d values for %d columns", rs->col, rs->ncols);
	pkt_finish(rs->out, rs->row_at);
	rs->nrows++;
}

static void put_complete(Buf *out, const char *tag)
{
	size_t start;
	pkt_begin(out, 'C', &start);
	pkt_put_cstr(out, tag);
	pkt_finish(out, start);
}

static void put_simple(Buf *out, uint8_t type)
{
	size_t start;
	pkt_begin(out, type, &start);
	pkt_finish(out, start);
}

static void rs_end(ResultSet *rs)
{
	put_complete(rs->out, "SHOW");
}

/* Wall-clock time of a monotonic timestamp, as PostgreSQL prints timestamptz in UTC. */
static void format_mono_time(usec_t mono, char *out, size_t outlen)
{
	time_t secs = (time_t)((time_wall_usec() - (g_now - mono)) / USEC_PER_SEC);
	struct tm tm;

	gmtime_r(&secs, &tm);
	strftime(out, outlen, "%Y-%m-%d %H:%M:%S+00", &tm);
}

static int list_len(const List *l)
{
	const List *it;
	int n = 0;
	list_for_each(it, l) n++;
	return n;
}

/* ---------------------------------------------------------------------------------------
 * Tenants, sorted by name, with the client and server counts each Tenant keeps.
 */

typedef struct TenantRow {
	Tenant *t;
	int64_t cl_active, cl_waiting, cl_idle, sv_active;
} TenantRow;

typedef struct TenantTable {
	TenantRow *rows;
	int n, cap;
} TenantTable;

static void collect_tenant(Tenant *t, void *arg)
{
	TenantTable *tt = arg;
	if (tt->n == tt->cap) {
		tt->cap = tt->cap ? tt->cap * 2 : 64;
		tt->rows = xrealloc(tt->rows, (size_t)tt->cap * sizeof(*tt->rows));
	}
	tt->rows[tt->n++] = (TenantRow){.t = t,
	                                .cl_active = t->cl_active,
	                                .cl_waiting = t->cl_waiting,
	                                .cl_idle = t->cl_idle,
	                                .sv_active = t->n_servers};
}

static int cmp_row_name(const void *a, const void *b)
{
	return strcmp(((const TenantRow *)a)->t->name, ((const TenantRow *)b)->t->name);
}

static void tenant_table(TenantTable *tt)
{
	memset(tt, 0, sizeof(*tt));
	tenant_foreach(collect_tenant, tt);
	if (tt->n > 0)
		qsort(tt->rows, (size_t)tt->n, sizeof(TenantRow), cmp_row_name);
}

/* ---------------------------------------------------------------------------------------
 * SHOW.
 */

static const struct {
	const char *command;
	const char *description;
} help_rows[] = {
        {"SHOW HELP", "this list"},
        {"SHOW VERSION", "pgtenant's version"},
        {"SHOW CONFIG", "global settings in force: key, value, default, reloadable"},
        {"SHOW TENANTS", "each tenant: state, clients, servers, limits, counters"},
        {"SHOW POOLS",
         "each server pool: backend, role, server user, connections, waiting clients"},
        {"SHOW BACKENDS", "each backend: address, state, replica lag"},
        {"SHOW CLIENTS", "each tenant client connection"},
        {"SHOW SERVERS", "each server connection"},
        {"SHOW STATS", "per-tenant totals and averages"},
        {"SHOW LISTS", "sizes of the internal lists"},
        {"SHOW MEM", "memory held by connection objects and buffers"},
        {"SHOW QUERIES [tenant]",
         "each tenant's normalised statements by total time: calls, times, errors, rows"},
        {"SHOW TOP TENANTS", "tenants with the most query and wait time, last minute and total"},
        {"RESET QUERIES [tenant]", "forget the statement statistics of a tenant (or all)"},
        {"SHOW DATABASES", "PgBouncer's view: one row per tenant, its server, limits, state"},
        {"SHOW USERS", "PgBouncer's view: the users of auth_file and their pool mode"},
        {"RELOAD", "re-read the configuration; on a problem nothing changes"},
        {"PAUSE [tenant]", "wait for running transactions to finish, then hold new ones"},
        {"RESUME [tenant]", "release paused transactions"},
        {"DISABLE tenant", "refuse new logins; close clients after their transaction"},
        {"ENABLE tenant", "accept logins again"},
        {"KILL tenant", "close the tenant's clients and server connections now"},
        {"RECONNECT [tenant]", "close server connections once released; new ones are opened"},
        {"WAIT_CLOSE [tenant]", "answer when the connections marked by RECONNECT have closed"},
        {"SET key = value", "change a reloadable global setting until the next RELOAD"},
        {"CREATE TENANT name [TEMPLATE t | MODE m BACKEND b] [WITH (key = value, ...)]",
         "create its schema or database, migrate it, write its section to include_dir, reload"},
        {"DROP TENANT name [DROP DATA]",
         "disable it, wait for its clients, remove its section (and its schema or database)"},
        {"SHUTDOWN", "stop accepting, let transactions finish, exit"},
};

static void show_help(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {{"command", false}, {"description", false}};
	ResultSet rs;

	rs_begin(&rs, out, cols, 2, rowdesc);
	for (size_t i = 0; i < ARRAY_SIZE(help_rows); i++) {
		rs_row(&rs);
		rs_str(&rs, help_rows[i].command);
		rs_str(&rs, help_rows[i].description);
		rs_row_end(&rs);
	}
	rs_end(&rs);
}

static void show_version(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {{"version", false}};
	ResultSet rs;

	rs_begin(&rs, out, cols, 1, rowdesc);
	rs_row(&rs);
	rs_str(&rs, "pgtenant " PGTENANT_VERSION);
	rs_row_end(&rs);
	rs_end(&rs);
}

static void show_config(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {{"key", false},         {"value", false},
	                                {"default", false},     {"reloadable", false},
	                                {"description", false}, {"pending", false}};
	ResultSet rs;
	char value[1024];

	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	for (int i = 0; i < config_n_keys; i++) {
		const ConfigKey *k = &config_keys[i];
		if (k->section != SECTION_GLOBAL)
			continue;
		config_format_value(g_cfg, k, value, sizeof(value));
		rs_row(&rs);
		rs_str(&rs, k->name);
		rs_str(&rs, value);
		rs_str(&rs, k->def ? k->def : "");
		rs_str(&rs, k->reloadable ? "yes" : "no");
		rs_str(&rs, k->help ? k->help : "");
		/* a restart-only key changed in the file: value is what runs, pending what waits */
		rs_str(&rs, config_pending_value(k) ? config_pending_value(k) : "");
		rs_row_end(&rs);
	}
	rs_end(&rs);
}

static void show_tenants(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {
	        {"tenant", false},
	        {"mode", false},
	        {"backend", false},
	        {"state", false},
	        {"cl_active", true},
	        {"cl_waiting", true},
	        {"sv_active", true},
	        {"pool_size", true},
	        {"max_client_conn", true},
	        {"queries", true},
	        {"xacts", true},
	        {"avg_query_us", true},
	        {"avg_wait_us", true},
	        {"query_timeouts", true},
	        {"rate_limited", true},
	        {"cl_idle", true},
	        {"refused", true},
	        {"weight", true},
	        {"auth_failures", true},
	        {"state_failures", true},
	        {"p50_ms", false, true},
	        {"p95_ms", false, true},
	        {"p99_ms", false, true},
	        {"wait_p95_ms", false, true},
	        {"xact_p95_ms", false, true},
	};
	ResultSet rs;
	TenantTable tt;

	tenant_table(&tt);
	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	for (int i = 0; i < tt.n; i++) {
		const TenantRow *r = &tt.rows[i];
		const Tenant *t = r->t;
		const TenantStats *st = &t->stats;
		rs_row(&rs);
		rs_str(&rs, t->name);
		rs_str(&rs, tenant_mode_name(t->conf->mode));
		rs_str(&rs, t->conf->backend);
		rs_str(&rs, tenant_state_name(t));
		rs_int(&rs, r->cl_active);
		rs_int(&rs, r->cl_waiting);
		rs_int(&rs, r->sv_active);
		rs_int(&rs, config_tenant_pool_size(g_cfg, t->conf));
		rs_int(&rs, t->conf->max_client_conn);
		rs_int(&rs, (int64_t)st->queries);
		rs_int(&rs, (int64_t)st->xacts);
		rs_int(&rs, st->queries ? (int64_t)(st->query_time_us / st->queries) : 0);
		rs_int(&rs, st->waits ? (int64_t)(st->wait_time_us / st->waits) : 0);
		rs_int(&rs, (int64_t)st->query_timeouts);
		rs_int(&rs, (int64_t)st->rate_limited);
		rs_int(&rs, r->cl_idle);
		rs_int(&rs, (int64_t)st->refused);
		rs_int(&rs, t->conf->weight);
		rs_int(&rs, (int64_t)st->auth_failures);
		rs_int(&rs, (int64_t)st->state_failures);
		rs_quantiles(&rs, &t->hist.query);
		rs_ms(&rs, hist_quantile_ms(&t->hist.wait, 0.95));
		rs_ms(&rs, hist_quantile_ms(&t->hist.xact, 0.95));
		rs_row_end(&rs);
	}
	rs_end(&rs);
	free(tt.rows);
}

static void show_stats(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {
	        {"tenant", false},
	        {"total_xact_count", true},
	        {"total_query_count", true},
	        {"total_received", true},
	        {"total_sent", true},
	        {"total_xact_time", true},
	        {"total_query_time", true},
	        {"total_wait_time", true},
	        {"avg_query_us", true},
	        {"avg_wait_us", true},
	        {"total_wait_count", true},
	        {"total_query_timeouts", true},
	        {"total_rate_limited", true},
	        {"total_refused", true},
	        {"total_auth_failures", true},
	        {"p50_ms", false, true},
	        {"p95_ms", false, true},
	        {"p99_ms", false, true},
	        {"xact_p50_ms", false, true},
	        {"xact_p95_ms", false, true},
	        {"xact_p99_ms", false, true},
	        {"wait_p50_ms", false, true},
	        {"wait_p95_ms", false, true},
	        {"wait_p99_ms", false, true},
	};
	ResultSet rs;
	TenantTable tt;

	tenant_table(&tt);
	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	for (int i = 0; i < tt.n; i++) {
		const Tenant *t = tt.rows[i].t;
		const TenantStats *st = &t->stats;
		rs_row(&rs);
		rs_str(&rs, t->name);
		rs_int(&rs, (int64_t)st->xacts);
		rs_int(&rs, (int64_t)st->queries);
		rs_int(&rs, (int64_t)st->bytes_in);
		rs_int(&rs, (int64_t)st->bytes_out);
		rs_int(&rs, (int64_t)st->xact_time_us);
		rs_int(&rs, (int64_t)st->query_time_us);
		rs_int(&rs, (int64_t)st->wait_time_us);
		rs_int(&rs, st->queries ? (int64_t)(st->query_time_us / st->queries) : 0);
		rs_int(&rs, st->waits ? (int64_t)(st->wait_time_us / st->waits) : 0);
		rs_int(&rs, (int64_t)st->waits);
		rs_int(&rs, (int64_t)st->query_timeouts);
		rs_int(&rs, (int64_t)st->rate_limited);
		rs_int(&rs, (int64_t)st->refused);
		rs_int(&rs, (int64_t)st->auth_failures);
		rs_quantiles(&rs, &t->hist.query);
		rs_quantiles(&rs, &t->hist.xact);
		rs_quantiles(&rs, &t->hist.wait);
		rs_row_end(&rs);
	}
	rs_end(&rs);
	free(tt.rows);
}

/* SHOW QUERIES [tenant]: each tenant's normalised statements, heaviest first. */
static void show_queries(Buf *out, bool rowdesc, const Tenant *only)
{
	static const AdminCol cols[] = {
	        {"tenant", false},         {"query", false},         {"calls", true},
	        {"total_ms", false, true}, {"mean_ms", false, true}, {"max_ms", false, true},
	        {"errors", true},          {"rows", true},
	};
	ResultSet rs;
	TenantTable tt;

	tenant_table(&tt);
	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	for (int i = 0; i < tt.n; i++) {
		const Tenant *t = tt.rows[i].t;
		int n;
		if (only && t != only)
			continue;
		QueryEntry *q = stats_queries_copy(t, &n);
		for (int k = 0; k < n; k++) {
			rs_row(&rs);
			rs_str(&rs, t->name);
			rs_str(&rs, q[k].text);
			rs_int(&rs, (int64_t)q[k].calls);
			rs_ms(&rs, (double)q[k].total_us / 1000.0);
			rs_ms(&rs, (double)q[k].total_us / 1000.0 / (double)q[k].calls);
			rs_ms(&rs, (double)q[k].max_us / 1000.0);
			rs_int(&rs, (int64_t)q[k].errors);
			rs_int(&rs, (int64_t)q[k].rows);
			rs_row_end(&rs);
		}
		free(q);
	}
	rs_end(&rs);
	free(tt.rows);
}

typedef struct TopRow {
	const Tenant *t;
	uint64_t us, n;
} TopRow;

static int cmp_top(const void *a, const void *b)
{
	const TopRow *x = a, *y = b;
	if (x->us != y->us)
		return x->us > y->us ? -1 : 1;
	return strcmp(x->t->name, y->t->name);
}

#define TOP_TENANTS 10

/*
 * SHOW TOP TENANTS: the ten tenants with the most query time and the most
 * wait time, over the last minute and since start, one ranking after another.
 */
static void show_top_tenants(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {
	        {"ranking", false},       {"rank", true},  {"tenant", false},
	        {"time_ms", false, true}, {"count", true}, {"avg_ms", false, true},
	};
	static const char *const names[] = {"query_time_1min", "wait_time_1min", "query_time_total",
	                                    "wait_time_total"};
	ResultSet rs;
	TenantTable tt;

	tenant_table(&tt);
	TopRow *rows = xcalloc((size_t)(tt.n ? tt.n : 1), sizeof(TopRow));
	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	for (int r = 0; r < 4; r++) {
		int n = 0;
		for (int i = 0; i < tt.n; i++) {
			const Tenant *t = tt.rows[i].t;
			uint64_t q_us, q_n, w_us, w_n;
			if (r < 2) {
				stats_tenant_window(t, &q_us, &q_n, &w_us, &w_n);
			} else {
				q_us = t->stats.query_time_us;
				q_n = t->stats.queries;
				w_us = t->stats.wait_time_us;
				w_n = t->stats.waits;
			}
			uint64_t us = r % 2 == 0 ? q_us : w_us;
			if (!us)
				continue;
			rows[n++] = (TopRow){t, us, r % 2 == 0 ? q_n : w_n};
		}
		qsort(rows, (size_t)n, sizeof(TopRow), cmp_top);
		for (int i = 0; i < n && i < TOP_TENANTS; i++) {
			rs_row(&rs);
			rs_str(&rs, names[r]);
			rs_int(&rs, i + 1);
			rs_str(&rs, rows[i].t->name);
			rs_ms(&rs, (double)rows[i].us / 1000.0);
			rs_int(&rs, (int64_t)rows[i].n);
			rs_ms(&rs, rows[i].n ? (double)rows[i].us / 1000.0 / (double)rows[i].n : 0);
			rs_row_end(&rs);
		}
	}
	rs_end(&rs);
	free(rows);
	free(tt.rows);
}

static const char *pool_mode_name(PoolMode m)
{
	return m == POOL_MODE_SESSION ? "session" : "transaction";
}

/*
 * PgBouncer's SHOW DATABASES, one row per tenant: what a PgBouncer user
 * reads as "a database entry" is what pgtenant calls a tenant (a name
 * clients connect to, mapped onto a server, database and role). The
 * connection columns keep PgBouncer's meaning: max_connections and
 * current_connections count server connections (the tenant's pool_size and
 * those its clients hold), the *_client_connections columns (PgBouncer
 * 1.24) count clients.
 */
static void show_databases(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {
	        {"name", false},
	        {"host", false},
	        {"port", true},
	        {"database", false},
	        {"force_user", false},
	        {"pool_size", true},
	        {"min_pool_size", true},
	        {"reserve_pool", true},
	        {"pool_mode", false},
	        {"max_connections", true},
	        {"current_connections", true},
	        {"paused", true},
	        {"disabled", true},
	        {"max_client_connections", true},
	        {"current_client_connections", true},
	        {"mode", false},
	        {"backend", false},
	};
	ResultSet rs;
	TenantTable tt;

	tenant_table(&tt);
	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	for (int i = 0; i < tt.n; i++) {
		const Tenant *t = tt.rows[i].t;
		const BackendConf *bc = config_tenant_backend(g_cfg, t->conf);
		const Backend *be = pool_backend(t->conf->backend);

		rs_row(&rs);
		rs_str(&rs, t->name);
		rs_str(&rs, be ? be->host : bc ? bc->host : NULL);
		rs_int(&rs, be ? be->port : bc ? bc->port : 0);
		/* NULL database or force_user: the client's own user name, as libpq does */
		rs_str(&rs, config_tenant_dbname(g_cfg, t->conf));
		rs_str(&rs, config_tenant_server_user(g_cfg, t->conf));
		rs_int(&rs, t->pool_size);
		rs_int(&rs, be ? be->min_pool_size : bc ? bc->min_pool_size : 0);
		rs_int(&rs, t->reserved_conns);
		rs_str(&rs, pool_mode_name((PoolMode)t->pool_mode));
		rs_int(&rs, t->pool_size);
		rs_int(&rs, t->n_servers);
		rs_int(&rs, control_is_paused(t) ? 1 : 0);
		rs_int(&rs, t->disabled ? 1 : 0);
		rs_int(&rs, t->conf->max_client_conn);
		rs_int(&rs, t->n_clients);
		rs_str(&rs, tenant_mode_name(t->conf->mode));
		rs_str(&rs, t->conf->backend);
		rs_row_end(&rs);
	}
	rs_end(&rs);
	free(tt.rows);
}

typedef struct UserList {
	const char **names;
	int n, cap;
} UserList;

static void collect_user(const char *user, void *arg)
{
	UserList *ul = arg;
	if (ul->n == ul->cap) {
		ul->cap = ul->cap ? ul->cap * 2 : 64;
		ul->names = xrealloc(ul->names, (size_t)ul->cap * sizeof(*ul->names));
	}
	ul->names[ul->n++] = user;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * PgBouncer's SHOW USERS: the users of auth_file, sorted. pgtenant has no
 * per-user pool mode, so pool_mode is the global one (each tenant's own is
 * in SHOW DATABASES); users found only through auth_query are not listed.
 */
static void show_users(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {{"name", false}, {"pool_mode", false}, {"console", false}};
	UserList ul = {0};
	ResultSet rs;

	if (g_auth)
		authfile_foreach(g_auth, collect_user, &ul);
	if (ul.n > 0)
		qsort(ul.names, (size_t)ul.n, sizeof(*ul.names), cmp_str);
	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	for (int i = 0; i < ul.n; i++) {
		const char *console = NULL;
		if (config_list_contains(g_cfg->admin_users, ul.names[i]))
			console = "admin";
		else if (config_list_contains(g_cfg->stats_users, ul.names[i]))
			console = "stats";
		rs_row(&rs);
		rs_str(&rs, ul.names[i]);
		rs_str(&rs, pool_mode_name(g_cfg->pool_mode));
		rs_str(&rs, console);
		rs_row_end(&rs);
	}
	rs_end(&rs);
	free(ul.names);
}

/* A wall-clock time as SHOW shows it, or NULL when there is none. */
static const char *wall_time_text(usec_t when, char *buf, size_t len)
{
	if (!when)
		return NULL;
	time_t secs = (time_t)(when / USEC_PER_SEC);
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S+00", &tm);
	return buf;
}

static void show_backends(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {
	        {"backend", false},    {"role", false},     {"host", false},
	        {"port", true},        {"state", false},    {"lag_ms", true},
	        {"last_check", false}, {"pool_size", true}, {"sv_total", true},
	        {"last_error", false},
	};
	ResultSet rs;

	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	for (int i = 0; i < g_cfg->n_backends; i++) {
		const BackendConf *bc = &g_cfg->backends[i];
		const Backend *be = pool_backend(bc->name);
		char when[40];

		rs_row(&rs);
		rs_str(&rs, bc->name);
		rs_str(&rs, "primary");
		rs_str(&rs, be ? be->host : bc->host);
		rs_int(&rs, be ? be->port : bc->port);
		rs_str(&rs, !be || health_primary_up(be) ? "up" : "down");
		rs_int(&rs, 0);
		rs_str(&rs, be ? wall_time_text(be->primary_checked, when, sizeof(when)) : NULL);
		rs_int(&rs, be ? be->pool_size : bc->pool_size);
		rs_int(&rs, be ? be->n_servers : 0);
		rs_str(&rs, be ? health_primary_error(be) : NULL);
		rs_row_end(&rs);
		for (int r = 0; be && r < be->n_replicas; r++) {
			const Replica *rep = be->replicas[r];
			if (!rep->configured)
				continue;
			rs_row(&rs);
			rs_str(&rs, bc->name);
			rs_str(&rs, "replica");
			rs_str(&rs, rep->host);
			rs_int(&rs, rep->port);
			rs_str(&rs, health_state_name(rep->state));
			rs_int(&rs, rep->lag_us / USEC_PER_MS);
			rs_str(&rs, wall_time_text(rep->last_check, when, sizeof(when)));
			rs_int(&rs, rep->pool_size);
			rs_int(&rs, rep->n_servers);
			rs_str(&rs, NULL);
			rs_row_end(&rs);
		}
	}
	rs_end(&rs);
}

static void show_pools(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {
	        {"backend", false},  {"role", false},        {"host", false},
	        {"port", true},      {"server_user", false}, {"sv_active", true},
	        {"sv_idle", true},   {"sv_login", true},     {"cl_waiting", true},
	        {"pool_size", true}, {"database", false},    {"sv_busy", true},
	        {"state", false},
	};
	ResultSet rs;
	const List *it;

	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	list_for_each(it, &g_pools)
	{
		const Pool *p = list_entry(it, Pool, node);
		rs_row(&rs);
		rs_str(&rs, p->backend->name);
		rs_str(&rs, p->replica ? "replica" : "primary");
		rs_str(&rs, pool_host(p));
		rs_int(&rs, pool_port(p));
		rs_str(&rs, p->user);
		rs_int(&rs, list_len(&p->active));
		rs_int(&rs, list_len(&p->idle));
		rs_int(&rs, list_len(&p->login));
		rs_int(&rs, list_len(&p->waiting) + list_len(&p->welcome_wait));
		rs_int(&rs, p->backend->pool_size);
		rs_str(&rs, p->dbname);
		rs_int(&rs, list_len(&p->busy));
		rs_str(&rs, p->failing ? "down" : "up");
		rs_row_end(&rs);
	}
	rs_end(&rs);
}

static void client_row(ResultSet *rs, const Client *c, const char *state)
{
	char when[64];

	format_mono_time(c->connect_time, when, sizeof(when));
	rs_row(rs);
	rs_str(rs, c->tenant ? c->tenant->name : NULL);
	rs_str(rs, c->user);
	rs_str(rs, c->addr);
	rs_int(rs, c->port);
	rs_str(rs, state);
	rs_str(rs, conn_is_tls(&c->conn) ? "yes" : "no");
	rs_str(rs, when);
	rs_int(rs, strcmp(state, "waiting") == 0 ? (int64_t)(g_now - c->wait_start) : 0);
	rs_str(rs, c->pool ? c->pool->dbname : NULL);
	rs_int(rs, c->server ? (int64_t)c->server->be_pid : 0);
	rs_row_end(rs);
}

static void show_clients(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {
	        {"tenant", false},       {"user", false},   {"addr", false},
	        {"port", true},          {"state", false},  {"tls", false},
	        {"connect_time", false}, {"wait_us", true}, {"database", false},
	        {"server_pid", true},
	};
	ResultSet rs;
	const List *it, *cit;

	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	list_for_each(it, &g_active_clients)
	        client_row(&rs, list_entry(it, Client, node), "active");
	list_for_each(it, &g_pools)
	{
		const Pool *p = list_entry(it, Pool, node);
		list_for_each(cit, &p->waiting)
		        client_row(&rs, list_entry(cit, Client, node), "waiting");
		list_for_each(cit, &p->welcome_wait)
		        client_row(&rs, list_entry(cit, Client, node), "waiting");
	}
	list_for_each(it, &g_idle_clients) client_row(&rs, list_entry(it, Client, node), "idle");
	rs_end(&rs);
}

static void show_servers(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {
	        {"backend", false}, {"role", false},         {"host", false},
	        {"port", true},     {"server_user", false},  {"tenant", false},
	        {"state", false},   {"connect_time", false}, {"database", false},
	        {"pid", true},      {"client_addr", false},  {"client_port", true},
	};
	ResultSet rs;
	const List *it, *sit;
	char when[64];

	rs_begin(&rs, out, cols, (int)ARRAY_SIZE(cols), rowdesc);
	list_for_each(it, &g_pools)
	{
		const Pool *p = list_entry(it, Pool, node);
		const List *lists[] = {&p->active, &p->idle, &p->login, &p->busy};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
			list_for_each(sit, lists[i])
			{
				const ServerConn *s = list_entry(sit, ServerConn, node);
				format_mono_time(s->connect_time, when, sizeof(when));
				rs_row(&rs);
				rs_str(&rs, p->backend->name);
				rs_str(&rs, p->replica ? "replica" : "primary");
				rs_str(&rs, pool_host(p));
				rs_int(&rs, pool_port(p));
				rs_str(&rs, p->user);
				rs_str(&rs, s->tenant ? s->tenant->name : NULL);
				rs_str(&rs, server_state_name(s->state));
				rs_str(&rs, when);
				rs_str(&rs, p->dbname);
				rs_int(&rs, s->be_pid);
				rs_str(&rs, s->client ? s->client->addr : NULL);
				rs_int(&rs, s->client ? s->client->port : 0);
				rs_row_end(&rs);
			}
		}
	}
	rs_end(&rs);
}

static void list_row(ResultSet *rs, const char *name, int64_t n)
{
	rs_row(rs);
	rs_str(rs, name);
	rs_int(rs, n);
	rs_row_end(rs);
}

static void show_lists(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {{"list", false}, {"items", true}};
	ResultSet rs;
	const List *it;
	int64_t pools = 0, waiting = 0, welcome = 0, sv_idle = 0, sv_active = 0, sv_login = 0,
	        sv_busy = 0, backends = 0;

	list_for_each(it, &g_pools)
	{
		const Pool *p = list_entry(it, Pool, node);
		pools++;
		waiting += list_len(&p->waiting);
		welcome += list_len(&p->welcome_wait);
		sv_idle += list_len(&p->idle);
		sv_active += list_len(&p->active);
		sv_login += list_len(&p->login);
		sv_busy += list_len(&p->busy);
	}
	for (int i = 0; i < g_cfg->n_backends; i++)
		if (pool_backend(g_cfg->backends[i].name))
			backends++;
	rs_begin(&rs, out, cols, 2, rowdesc);
	list_row(&rs, "tenants", tenant_count());
	list_row(&rs, "backends", backends);
	list_row(&rs, "pools", pools);
	list_row(&rs, "clients", g_n_clients);
	list_row(&rs, "login_clients", list_len(&g_login_clients));
	list_row(&rs, "welcome_clients", welcome);
	list_row(&rs, "idle_clients", list_len(&g_idle_clients));
	list_row(&rs, "waiting_clients", waiting);
	list_row(&rs, "active_clients", list_len(&g_active_clients));
	list_row(&rs, "console_clients", list_len(&g_console_clients));
	list_row(&rs, "servers", sv_idle + sv_active + sv_login + sv_busy);
	list_row(&rs, "idle_servers", sv_idle);
	list_row(&rs, "active_servers", sv_active);
	list_row(&rs, "login_servers", sv_login);
	list_row(&rs, "busy_servers", sv_busy);
	rs_end(&rs);
}

static void add_conn_bufs(const Conn *conn, int64_t *bytes)
{
	*bytes += (int64_t)(conn->in.cap + conn->out.cap);
}

static void mem_row(ResultSet *rs, const char *name, int64_t size, int64_t used, int64_t total)
{
	rs_row(rs);
	rs_str(rs, name);
	if (size >= 0)
		rs_int(rs, size);
	else
		rs_str(rs, NULL);
	rs_int(rs, used);
	rs_int(rs, total);
	rs_row_end(rs);
}

static void show_mem(Buf *out, bool rowdesc)
{
	static const AdminCol cols[] = {
	        {"name", false}, {"size", true}, {"used", true}, {"memtotal", true}};
	ResultSet rs;
	const List *it, *sit;
	int64_t n_clients = 0, n_servers = 0, n_pools = 0, client_bufs = 0, server_bufs = 0;
	const List *client_lists[] = {&g_login_clients, &g_idle_clients, &g_active_clients,
	                              &g_console_clients};

	for (size_t i = 0; i < ARRAY_SIZE(client_lists); i++) {
		list_for_each(it, client_lists[i])
		{
			n_clients++;
			add_conn_bufs(&list_entry(it, Client, node)->conn, &client_bufs);
		}
	}
	list_for_each(it, &g_pools)
	{
		const Pool *p = list_entry(it, Pool, node);
		const List *clists[] = {&p->waiting, &p->welcome_wait};
		const List *slists[] = {&p->active, &p->idle, &p->login, &p->busy};
		n_pools++;
		for (size_t i = 0; i < ARRAY_SIZE(clists); i++) {
			list_for_each(sit, clists[i])
			{
				n_clients++;
				add_conn_bufs(&list_entry(sit, Client, node)->conn, &client_bufs);
			}
		}
		for (size_t i = 0; i < ARRAY_SIZE(slists); i++) {
			list_for_each(sit, slists[i])
			{
				n_servers++;
				add_conn_bufs(&list_entry(sit, ServerConn, node)->conn,
				              &server_bufs);
			}
		}
	}
	rs_begin(&rs, out, cols, 4, rowdesc);
	mem_row(&rs, "client", (int64_t)sizeof(Client), n_clients,
	        n_clients * (int64_t)sizeof(Client));
	mem_row(&rs, "server", (int64_t)sizeof(ServerConn), n_servers,
	        n_servers * (int64_t)sizeof(ServerConn));
	mem_row(&rs, "pool", (int64_t)sizeof(Pool), n_pools, n_pools * (int64_t)sizeof(Pool));
	mem_row(&rs, "tenant", (int64_t)sizeof(Tenant), tenant_count(),
	        tenant_count() * (int64_t)sizeof(Tenant));
	mem_row(&rs, "client_buffers", -1, n_clients, client_bufs);
	mem_row(&rs, "server_buffers", -1, n_servers, server_bufs);
	StatsMem sm;
	stats_mem(&sm);
	/* used: statements held; memtotal: bytes of all tenants' tables (under query_stats_memory)
	 */
	mem_row(&rs, "query_stats", (int64_t)sizeof(QueryEntry), sm.entries, sm.bytes);
	mem_row(&rs, "query_stats_tables", -1, sm.tables, sm.bytes);
	mem_row(&rs, "query_stats_limit", -1, g_cfg->query_stats_max, sm.limit);
	mem_row(&rs, "query_stats_dropped", -1, sm.dropped, 0);
	mem_row(&rs, "query_stats_clients", -1, sm.clients, sm.client_bytes);
	rs_end(&rs);
}

/* ---------------------------------------------------------------------------------------
 * Command parsing.
 */

typedef enum { TOK_WORD, TOK_QUOTED, TOK_STRING, TOK_EQ, TOK_OTHER } TokKind;

typedef struct Tok {
	TokKind kind;
	char text[256];
	size_t start, end; /* offsets in the command */
} Tok;

/* Splits a command into words, "quoted names", 'strings' and '='. false: unterminated quote. */
static bool tokenize(const char *cmd, Tok *toks, int *ntoks)
{
	size_t i = 0, n = strlen(cmd);

	*ntoks = 0;
	while (i < n) {
		Tok *t;
		size_t len = 0;
		if (isspace((unsigned char)cmd[i])) {
			i++;
			continue;
		}
		if (*ntoks == ADMIN_MAX_TOKENS) {
			(*ntoks)++; /* too many: the caller reports a syntax error */
			return true;
		}
		t = &toks[(*ntoks)++];
		t->start = i;
		if (cmd[i] == '"' || cmd[i] == '\'') {
			char q = cmd[i++];
			t->kind = q == '"' ? TOK_QUOTED : TOK_STRING;
			for (;;) {
				if (i >= n)
					return false;
				if (cmd[i] == q) {
					if (i + 1 < n && cmd[i + 1] == q) {
						i++;
					} else {
						i++;
						break;
					}
				}
				if (len < sizeof(t->text) - 1)
					t->text[len++] = cmd[i];
				i++;
			}
		} else if (cmd[i] == '=') {
			t->kind = TOK_EQ;
			t->text[len++] = cmd[i++];
		} else {
			t->kind = TOK_WORD;
			while (i < n && !isspace((unsigned char)cmd[i]) && cmd[i] != '=' &&
			       cmd[i] != '"' && cmd[i] != '\'') {
				if (len < sizeof(t->text) - 1)
					t->text[len++] = cmd[i];
				i++;
			}
		}
		t->text[len] = '\0';
		t->end = i;
	}
	return true;
}

static bool tok_is(const Tok *t, const char *word)
{
	return t->kind == TOK_WORD && strcasecmp(t->text, word) == 0;
}

/*
 * Splits a Query string at top-level ';' (outside quotes and comments).
 * Returns the length of the first command; *next is where the rest starts
 * (NULL at the end). Comments are blanked in place so tokenize() skips them.
 */
static size_t split_command(char *sql, char **next)
{
	size_t i = 0;
	char q = 0;

	for (; sql[i]; i++) {
		char ch = sql[i];
		if (q) {
			if (ch == q)
				q = 0;
			continue;
		}
		if (ch == '\'' || ch == '"') {
			q = ch;
		} else if (ch == '-' && sql[i + 1] == '-') {
			while (sql[i] && sql[i] != '\n')
				sql[i++] = ' ';
			if (!sql[i])
				break;
		} else if (ch == '/' && sql[i + 1] == '*') {
			size_t j = i + 2;
			while (sql[j] && !(sql[j] == '*' && sql[j + 1] == '/'))
				j++;
			if (sql[j])
				j += 2;
			while (i < j)
				sql[i++] = ' ';
			i--;
		} else if (ch == ';') {
			*next = sql + i + 1;
			return i;
		}
	}
	*next = NULL;
	return i;
}

static bool is_blank(const char *s)
{
	for (; *s; s++)
		if (!isspace((unsigned char)*s))
			return false;
	return true;
}

/* ---------------------------------------------------------------------------------------
 * Execution.
 */

typedef struct ExecCtx {
	AdminSession *s;
	Client *c;
	Buf *out;
	bool rowdesc;
	const char *cmd;  /* as typed, trimmed */
	char result[256]; /* tag or error, for the audit record */
	bool ok;
} ExecCtx;

static ExecResult fail(ExecCtx *x, const char *sqlstate, const char *msg, const char *hint)
{
	proto_error(x->out, "ERROR", sqlstate, msg, hint);
	snprintf(x->result, sizeof(x->result), "%.5s: %.200s", sqlstate, msg);
	x->ok = false;
	return EXEC_ERROR;
}

static ExecResult done(ExecCtx *x, const char *tag)
{
	put_complete(x->out, tag);
	snprintf(x->result, sizeof(x->result), "%.200s", tag);
	x->ok = true;
	return EXEC_OK;
}

static ExecResult syntax_error(ExecCtx *x)
{
	char msg[300];
	snprintf(msg, sizeof(msg), "unrecognized console command \"%.200s\"", x->cmd);
	return fail(x, "42601", msg, "Try SHOW HELP.");
}

/* The tenant a command names; NULL after sending 42704 (or when optional and absent). */
static bool tenant_arg(ExecCtx *x, const Tok *toks, int ntoks, bool required, Tenant **out,
                       ExecResult *res)
{
	char msg[400];

	*out = NULL;
	if (ntoks == 1) {
		if (!required) {
			return true;
		}
		snprintf(msg, sizeof(msg), "%s needs a tenant name", toks[0].text);
		*res = fail(x, "42601", msg, "Try SHOW HELP.");
		return false;
	}
	if (ntoks > 2 || (toks[1].kind != TOK_WORD && toks[1].kind != TOK_QUOTED)) {
		*res = syntax_error(x);
		return false;
	}
	*out = tenant_lookup(toks[1].text);
	if (!*out) {
		snprintf(msg, sizeof(msg), "tenant \"%s\" does not exist", toks[1].text);
		*res = fail(x, "42704", msg, NULL);
		return false;
	}
	return true;
}

static ExecResult exec_show(ExecCtx *x, const Tok *toks, int ntoks)
{
	static const struct {
		const char *what;
		void (*fn)(Buf *out, bool rowdesc);
	} shows[] = {
	        {"help", show_help},       {"version", show_version}, {"config", show_config},
	        {"tenants", show_tenants}, {"pools", show_pools},     {"backends", show_backends},
	        {"clients", show_clients}, {"servers", show_servers}, {"stats", show_stats},
	        {"lists", show_lists},     {"mem", show_mem},         {"databases", show_databases},
	        {"users", show_users},
	};

	if (ntoks >= 2 && tok_is(&toks[1], "queries")) {
		Tenant *t = NULL;
		ExecResult r;
		if (!tenant_arg(x, toks + 1, ntoks - 1, false, &t, &r))
			return r;
		show_queries(x->out, x->rowdesc, t);
		snprintf(x->result, sizeof(x->result), "SHOW");
		x->ok = true;
		return EXEC_OK;
	}
	if (ntoks == 3 && tok_is(&toks[1], "top") && tok_is(&toks[2], "tenants")) {
		show_top_tenants(x->out, x->rowdesc);
		snprintf(x->result, sizeof(x->result), "SHOW");
		x->ok = true;
		return EXEC_OK;
	}
	if (ntoks != 2)
		return syntax_error(x);
	for (size_t i = 0; i < ARRAY_SIZE(shows); i++) {
		if (tok_is(&toks[1], shows[i].what)) {
			shows[i].fn(x->out, x->rowdesc);
			snprintf(x->result, sizeof(x->result), "SHOW");
			x->ok = true;
			return EXEC_OK;
		}
	}
	return syntax_error(x);
}

static ExecResult exec_reload(ExecCtx *x)
{
	ConfigErrors errs = {0};
	Buf msg;
	char head[128];
	ExecResult r;

	if (control_reload(&errs)) {
		char names[512], notice[700];
		config_errors_free(&errs);
		config_pending_names(names, sizeof(names));
		if (names[0]) {
			snprintf(notice, sizeof(notice), "not applied until pgtenant restarts: %s",
			         names);
			proto_error(x->out, "NOTICE", "01000", notice,
			            "SHOW CONFIG shows the running value and, under pending, the "
			            "file's.");
		}
		return done(x, "RELOAD");
	}
	/* every problem, one per line, so psql shows them as --check prints them */
	buf_init(&msg);
	snprintf(head, sizeof(head),
	         "configuration not reloaded (%d problem%s); the old one stays in force", errs.n,
	         errs.n == 1 ? "" : "s");
	buf_append(&msg, head, strlen(head));
	for (int i = 0; i < errs.n && msg.len < 60000; i++) {
		buf_append(&msg, "\n", 1);
		buf_append(&msg, errs.msgs[i], strlen(errs.msgs[i]));
	}
	buf_append(&msg, "", 1);
	r = fail(x, "F0000", (const char *)msg.data, NULL);
	buf_free(&msg);
	config_errors_free(&errs);
	return r;
}

/* Client GUCs drivers SET at connect (JDBC, some ORMs): accepted and ignored by the console. */
static bool client_guc(const char *name)
{
	static const char *const names[] = {
	        "client_encoding", "application_name",  "extra_float_digits",
	        "datestyle",       "timezone",          "intervalstyle",
	        "search_path",     "statement_timeout", "lock_timeout"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcasecmp(name, names[i]) == 0)
			return true;
	return false;
}

static ExecResult exec_set(ExecCtx *x, const Tok *toks, int ntoks)
{
	const ConfigKey *k;
	char value[1024], err[300], msg[400];
	const char *raw;
	size_t n;

	if (ntoks < 3 || (toks[1].kind != TOK_WORD && toks[1].kind != TOK_QUOTED) ||
	    !(toks[2].kind == TOK_EQ || tok_is(&toks[2], "to")))
		return syntax_error(x);
	if (client_guc(toks[1].text))
		return done(x, "SET");
	if (!x->c->console_admin)
		return fail(x, "42501", "permission denied: stats users may only use SHOW", NULL);
	k = config_find_key(SECTION_GLOBAL, toks[1].text);
	if (!k) {
		snprintf(msg, sizeof(msg), "unrecognized configuration parameter \"%s\"",
		         toks[1].text);
		return fail(x, "42704", msg, "SHOW CONFIG lists the settings.");
	}
	if (!k->reloadable) {
		snprintf(msg, sizeof(msg),
		         "parameter \"%s\" cannot be changed without restarting pgtenant", k->name);
		return fail(x, "55P02", msg, NULL);
	}
	/* the value is the rest of the command: a 'string', or the raw text (comma lists) */
	if (ntoks == 4 && toks[3].kind == TOK_STRING) {
		snprintf(value, sizeof(value), "%s", toks[3].text);
	} else if (ntoks >= 4) {
		raw = x->cmd + toks[3].start;
		n = strlen(raw);
		while (n > 0 && isspace((unsigned char)raw[n - 1]))
			n--;
		if (n >= sizeof(value))
			return fail(x, "22023", "value too long", NULL);
		memcpy(value, raw, n);
		value[n] = '\0';
	} else {
		return syntax_error(x);
	}
	if (!config_set_global(g_cfg, k->name, value, err, sizeof(err))) {
		/* most of config's messages name the key already: say it once */
		if (strstr(err, k->name))
			return fail(x, "22023", err, NULL);
		snprintf(msg, sizeof(msg), "invalid value for %s: %s", k->name, err);
		return fail(x, "22023", msg, NULL);
	}
	/* settings backends and tenants resolved from the globals */
	pool_backends_build(g_cfg);
	tenant_resolve_all(g_cfg);
	return done(x, "SET");
}

/* A command that may answer later is about to start (exec_later_end follows). */
static void exec_later_begin(ExecCtx *x)
{
	AdminSession *s = x->s;

	s->waiting = true;
	s->in_call = true;
	s->completed = false;
	s->failed = false;
	free(s->pending_cmd);
	s->pending_cmd = xstrdup(x->cmd);
}

/* It has started: answered now if it completed already, else later. */
static ExecResult exec_later_end(ExecCtx *x)
{
	AdminSession *s = x->s;

	s->in_call = false;
	if (!s->completed)
		return EXEC_PENDING;
	s->waiting = false;
	if (s->failed)
		return fail(x, s->err_state, s->err_msg ? s->err_msg : "failed", NULL);
	return done(x, s->done_tag);
}

/* PAUSE / WAIT_CLOSE: answered now if control.c completes at once, else later. */
static ExecResult exec_later(ExecCtx *x, Tenant *t, bool pause)
{
	exec_later_begin(x);
	if (pause)
		control_pause(t, x->c);
	else
		control_wait_close(t, x->c);
	return exec_later_end(x);
}

/* WITH ( key = value [, ...] ) from the raw text at p; values bare or 'quoted'. */
static bool parse_with(const char *p, OnboardRequest *req)
{
	while (isspace((unsigned char)*p))
		p++;
	if (*p++ != '(')
		return false;
	for (;;) {
		char key[64], value[1024];
		size_t kn = 0, vn = 0;
		while (isspace((unsigned char)*p))
			p++;
		while ((isalnum((unsigned char)*p) || *p == '_') && kn < sizeof(key) - 1)
			key[kn++] = *p++;
		key[kn] = '\0';
		while (isspace((unsigned char)*p))
			p++;
		if (!kn || *p++ != '=')
			return false;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\'') {
			for (p++;; p++) {
				if (!*p)
					return false;
				if (*p == '\'' && p[1] != '\'')
					break;
				if (*p == '\'')
					p++;
				if (vn < sizeof(value) - 1)
					value[vn++] = *p;
			}
			p++;
		} else {
			while (*p && *p != ',' && *p != ')' && vn < sizeof(value) - 1)
				value[vn++] = *p++;
			while (vn > 0 && isspace((unsigned char)value[vn - 1]))
				vn--;
		}
		value[vn] = '\0';
		if (req->n_with == ONBOARD_MAX_WITH)
			return false;
		req->with_keys[req->n_with] = xstrdup(key);
		req->with_values[req->n_with++] = xstrdup(value);
		while (isspace((unsigned char)*p))
			p++;
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p++ != ')')
			return false;
		while (isspace((unsigned char)*p))
			p++;
		return !*p;
	}
}

/*
 * CREATE TENANT name [TEMPLATE t | MODE m BACKEND b] [WITH (key = value, ...)]
 * DROP TENANT name [DROP DATA]
 */
static ExecResult exec_tenant_ddl(ExecCtx *x, const Tok *toks, int ntoks, bool drop)
{
	OnboardRequest *req;
	int i = 3;

	if (ntoks < 3 || !tok_is(&toks[1], "tenant") ||
	    (toks[2].kind != TOK_WORD && toks[2].kind != TOK_QUOTED))
		return syntax_error(x);
	req = xcalloc(1, sizeof(*req));
	req->drop = drop;
	req->mode = -1;
	snprintf(req->name, sizeof(req->name), "%.*s", CONFIG_NAME_MAX, toks[2].text);
	if (strlen(toks[2].text) > CONFIG_NAME_MAX)
		req->name[0] = '\0'; /* reported as an invalid name */
	if (drop) {
		if (ntoks == 5 && tok_is(&toks[3], "drop") && tok_is(&toks[4], "data"))
			req->drop_data = true;
		else if (ntoks != 3)
			goto bad;
	} else {
		if (i + 1 < ntoks && tok_is(&toks[i], "template")) {
			snprintf(req->tmpl, sizeof(req->tmpl), "%.*s", CONFIG_NAME_MAX,
			         toks[i + 1].text);
			i += 2;
		} else if (i + 3 < ntoks && tok_is(&toks[i], "mode") &&
		           tok_is(&toks[i + 2], "backend")) {
			static const char *const modes[] = {"shared", "schema", "database"};
			for (int m = 0; m < 3; m++)
				if (strcasecmp(toks[i + 1].text, modes[m]) == 0)
					req->mode = m;
			if (req->mode < 0) {
				onboard_request_free(req);
				return fail(x, "22023", "MODE is shared, schema or database", NULL);
			}
			snprintf(req->backend, sizeof(req->backend), "%.*s", CONFIG_NAME_MAX,
			         toks[i + 3].text);
			i += 4;
		}
		if (i < ntoks) {
			if (!tok_is(&toks[i], "with") || !parse_with(x->cmd + toks[i].end, req))
				goto bad;
		}
	}
	exec_later_begin(x);
	onboard_start(x->c, req);
	return exec_later_end(x);
bad:
	onboard_request_free(req);
	return syntax_error(x);
}

static void reset_queries_one(Tenant *t, void *arg)
{
	stats_queries_reset(t);
}

static ExecResult exec_command(ExecCtx *x)
{
	Tok toks[ADMIN_MAX_TOKENS];
	int ntoks;
	Tenant *t;
	ExecResult r;
	const char *verb;

	if (!tokenize(x->cmd, toks, &ntoks))
		return fail(x, "42601", "unterminated quoted string or name", NULL);
	if (ntoks == 0)
		return EXEC_OK; /* nothing between two ';' */
	if (ntoks > ADMIN_MAX_TOKENS || toks[0].kind != TOK_WORD)
		return syntax_error(x);
	verb = toks[0].text;

	if (strcasecmp(verb, "show") == 0)
		return exec_show(x, toks, ntoks);
	if (strcasecmp(verb, "set") == 0)
		return exec_set(x, toks, ntoks);
	/* drivers wrap statements in transactions; the console has none, so these are no-ops */
	if (ntoks <= 2 && (strcasecmp(verb, "begin") == 0 || strcasecmp(verb, "commit") == 0 ||
	                   strcasecmp(verb, "rollback") == 0 || strcasecmp(verb, "end") == 0 ||
	                   strcasecmp(verb, "abort") == 0)) {
		if (strcasecmp(verb, "end") == 0)
			return done(x, "COMMIT");
		if (strcasecmp(verb, "abort") == 0)
			return done(x, "ROLLBACK");
		char tag[32];
		snprintf(tag, sizeof(tag), "%.31s", verb);
		for (char *p = tag; *p; p++)
			*p = (char)toupper((unsigned char)*p);
		return done(x, tag);
	}

	static const char *const known[] = {"reload",   "pause", "resume",    "disable",
	                                    "enable",   "kill",  "reconnect", "wait_close",
	                                    "shutdown", "reset", "create",    "drop"};
	bool is_known = false;
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (strcasecmp(verb, known[i]) == 0)
			is_known = true;
	if (!is_known)
		return syntax_error(x);
	if (!x->c->console_admin)
		return fail(x, "42501", "permission denied: stats users may only use SHOW", NULL);

	if (strcasecmp(verb, "reload") == 0) {
		if (ntoks != 1)
			return syntax_error(x);
		return exec_reload(x);
	}
	if (strcasecmp(verb, "create") == 0 || strcasecmp(verb, "drop") == 0)
		return exec_tenant_ddl(x, toks, ntoks, strcasecmp(verb, "drop") == 0);
	if (strcasecmp(verb, "shutdown") == 0) {
		if (ntoks != 1)
			return syntax_error(x);
		/* acted on after the answer is flushed: shutdown may close this console */
		x->s->shutdown_after = true;
		return done(x, "SHUTDOWN");
	}
	if (strcasecmp(verb, "pause") == 0) {
		if (!tenant_arg(x, toks, ntoks, false, &t, &r))
			return r;
		return exec_later(x, t, true);
	}
	if (strcasecmp(verb, "wait_close") == 0) {
		if (!tenant_arg(x, toks, ntoks, false, &t, &r))
			return r;
		return exec_later(x, t, false);
	}
	if (strcasecmp(verb, "resume") == 0) {
		if (!tenant_arg(x, toks, ntoks, false, &t, &r))
			return r;
		control_resume(t);
		return done(x, "RESUME");
	}
	if (strcasecmp(verb, "reset") == 0) {
		/* RESET QUERIES [tenant]: forget the statement statistics */
		if (ntoks < 2 || !tok_is(&toks[1], "queries"))
			return syntax_error(x);
		if (!tenant_arg(x, toks + 1, ntoks - 1, false, &t, &r))
			return r;
		if (t)
			stats_queries_reset(t);
		else
			tenant_foreach(reset_queries_one, NULL);
		return done(x, "RESET");
	}
	if (strcasecmp(verb, "reconnect") == 0) {
		if (!tenant_arg(x, toks, ntoks, false, &t, &r))
			return r;
		control_reconnect(t);
		return done(x, "RECONNECT");
	}
	if (!tenant_arg(x, toks, ntoks, true, &t, &r))
		return r;
	if (strcasecmp(verb, "disable") == 0) {
		control_disable(t);
		return done(x, "DISABLE");
	}
	if (strcasecmp(verb, "enable") == 0) {
		control_enable(t);
		return done(x, "ENABLE");
	}
	control_kill(t);
	return done(x, "KILL");
}

/*
 * Runs one command with logging and auditing around it. quiet: only to
 * describe a prepared statement's columns, not a run the user asked for.
 */
static ExecResult run_command(AdminSession *s, const char *cmd, Buf *out, bool rowdesc, bool quiet)
{
	Client *c = s->c;
	ExecCtx x;
	ExecResult r;
	char *trimmed;
	size_t n;

	while (isspace((unsigned char)*cmd))
		cmd++;
	n = strlen(cmd);
	while (n > 0 && isspace((unsigned char)cmd[n - 1]))
		n--;
	trimmed = xstrndup(cmd, n);
	memset(&x, 0, sizeof(x));
	x.s = s;
	x.c = c;
	x.out = out;
	x.rowdesc = rowdesc;
	x.cmd = trimmed;
	if (!quiet)
		log_info("console %s@%s:%d: %.*s", c->user, c->addr, c->port, ADMIN_LOG_CMD_MAX,
		         trimmed);
	r = exec_command(&x);
	if (r == EXEC_ERROR && !quiet)
		log_info("console %s@%s:%d: %s", c->user, c->addr, c->port, x.result);
	if (r != EXEC_PENDING && n > 0 && !quiet)
		audit_console(c->user, trimmed, x.ok, x.result);
	free(trimmed);
	return r;
}

static bool is_show(const char *sql)
{
	Tok toks[ADMIN_MAX_TOKENS];
	int ntoks;
	char *copy = xstrdup(sql), *next;
	bool yes;

	copy[split_command(copy, &next)] = '\0';
	yes = tokenize(copy, toks, &ntoks) && ntoks >= 1 && tok_is(&toks[0], "show");
	free(copy);
	return yes;
}

/* ---------------------------------------------------------------------------------------
 * Simple Query.
 */

/* Runs the commands of sql from the first; false when one is pending (answers later). */
static bool run_query_string(AdminSession *s, char *sql, bool *any)
{
	Buf *out = &s->c->conn.out;
	char *cmd = sql, *next;

	while (cmd) {
		size_t n = split_command(cmd, &next);
		cmd[n] = '\0';
		if (!is_blank(cmd)) {
			ExecResult r;
			*any = true;
			r = run_command(s, cmd, out, true, false);
			if (s->c->closing)
				return true;
			if (r == EXEC_ERROR)
				break;
			if (r == EXEC_PENDING) {
				free(s->rest);
				s->rest = next ? xstrdup(next) : NULL;
				s->from_query = true;
				return false;
			}
		}
		cmd = next;
	}
	return true;
}

static void handle_query(AdminSession *s, const char *text)
{
	char *sql = xstrdup(text);
	bool any = false;

	if (run_query_string(s, sql, &any)) {
		if (!any)
			put_simple(&s->c->conn.out, 'I'); /* EmptyQueryResponse */
		proto_ready(&s->c->conn.out, 'I');
	}
	free(sql);
}

/* ---------------------------------------------------------------------------------------
 * Extended protocol.
 */

static AdminStmt *stmt_find(AdminSession *s, const char *name)
{
	for (AdminStmt *st = s->stmts; st; st = st->next)
		if (strcmp(st->name, name) == 0)
			return st;
	return NULL;
}

static AdminPortal *portal_find(AdminSession *s, const char *name)
{
	for (AdminPortal *p = s->portals; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

static void stmt_remove(AdminSession *s, const char *name)
{
	for (AdminStmt **pp = &s->stmts; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, name) == 0) {
			AdminStmt *st = *pp;
			*pp = st->next;
			free(st->name);
			free(st->sql);
			free(st);
			s->n_stmts--;
			return;
		}
	}
}

static void portal_remove(AdminSession *s, const char *name)
{
	for (AdminPortal **pp = &s->portals; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, name) == 0) {
			AdminPortal *p = *pp;
			*pp = p->next;
			portal_free(p);
			return;
		}
	}
}

/* An error inside an extended-protocol batch: report it, then drop messages until Sync. */
static void ext_error(AdminSession *s, const char *sqlstate, const char *msg)
{
	proto_error(&s->c->conn.out, "ERROR", sqlstate, msg, NULL);
	s->c->skip_until_sync = true;
}

/* One statement per prepared statement, as PostgreSQL requires. */
static bool single_command(const char *sql)
{
	char *copy = xstrdup(sql), *next;
	bool ok;

	split_command(copy, &next);
	ok = !next || is_blank(next);
	free(copy);
	return ok;
}

static void handle_parse(AdminSession *s, MsgReader *r)
{
	const char *name, *sql;
	uint16_t nparams;
	AdminStmt *st;
	char msg[300];

	if (!msg_get_cstr(r, &name) || !msg_get_cstr(r, &sql) || !msg_get_u16(r, &nparams) ||
	    msg_remaining(r) != (size_t)nparams * 4) {
		client_fatal(s->c, "08P01", "invalid Parse message", NULL);
		return;
	}
	if (!single_command(sql)) {
		ext_error(s, "42601", "cannot insert multiple commands into a prepared statement");
		return;
	}
	if (*name && stmt_find(s, name)) {
		snprintf(msg, sizeof(msg), "prepared statement \"%.200s\" already exists", name);
		ext_error(s, "42P05", msg);
		return;
	}
	if (!*name)
		stmt_remove(s, "");
	if (s->n_stmts >= ADMIN_MAX_STMTS) {
		ext_error(s, "53400", "too many prepared statements on the console");
		return;
	}
	st = xcalloc(1, sizeof(*st));
	st->name = xstrdup(name);
	st->sql = xstrdup(sql);
	/* the text may end in ';' (a single command): keep only the command */
	{
		char *next;
		st->sql[split_command(st->sql, &next)] = '\0';
	}
	st->next = s->stmts;
	s->stmts = st;
	s->n_stmts++;
	put_simple(&s->c->conn.out, '1');
}

static void handle_bind(AdminSession *s, MsgReader *r)
{
	const char *portal, *stmt_name;
	uint16_t nfmt, nparams, nres, v;
	AdminStmt *st;
	AdminPortal *p;
	char msg[300];

	if (!msg_get_cstr(r, &portal) || !msg_get_cstr(r, &stmt_name) || !msg_get_u16(r, &nfmt))
		goto bad;
	for (int i = 0; i < nfmt; i++)
		if (!msg_get_u16(r, &v))
			goto bad;
	if (!msg_get_u16(r, &nparams))
		goto bad;
	for (int i = 0; i < nparams; i++) {
		uint32_t len;
		const uint8_t *bytes;
		if (!msg_get_u32(r, &len))
			goto bad;
		if (len != 0xffffffffu && !msg_get_bytes(r, len, &bytes))
			goto bad;
	}
	if (!msg_get_u16(r, &nres))
		goto bad;
	bool binary = false;
	for (int i = 0; i < nres; i++) {
		if (!msg_get_u16(r, &v))
			goto bad;
		if (v != 0)
			binary = true;
	}
	if (msg_remaining(r) != 0)
		goto bad;

	st = stmt_find(s, stmt_name);
	if (!st) {
		snprintf(msg, sizeof(msg), "prepared statement \"%.200s\" does not exist",
		         stmt_name);
		ext_error(s, "26000", msg);
		return;
	}
	if (nparams > 0) {
		ext_error(s, "0A000", "console commands take no parameters");
		return;
	}
	if (binary) {
		ext_error(s, "0A000", "the console answers in text format only");
		return;
	}
	if (*portal && portal_find(s, portal)) {
		snprintf(msg, sizeof(msg), "cursor \"%.200s\" already exists", portal);
		ext_error(s, "42P03", msg);
		return;
	}
	if (!*portal)
		portal_remove(s, "");
	p = xcalloc(1, sizeof(*p));
	p->name = xstrdup(portal);
	p->sql = xstrdup(st->sql);
	buf_init(&p->result);
	p->next = s->portals;
	s->portals = p;
	put_simple(&s->c->conn.out, '2');
	return;
bad:
	client_fatal(s->c, "08P01", "invalid Bind message", NULL);
}

/*
 * Runs a SHOW for Describe: sends its RowDescription now; the rest (rows
 * and tag) goes to *rest when given. An error is sent and skips to Sync.
 */
static bool describe_show(AdminSession *s, const char *sql, Buf *rest)
{
	Buf tmp;
	ExecResult r;
	bool ok = true;

	buf_init(&tmp);
	r = run_command(s, sql, &tmp, true, rest == NULL);
	if (r == EXEC_ERROR) {
		buf_append(&s->c->conn.out, buf_head(&tmp), buf_avail(&tmp));
		s->c->skip_until_sync = true;
		ok = false;
	} else if (buf_avail(&tmp) >= MSG_HEADER_LEN && buf_head(&tmp)[0] == 'T') {
		size_t tlen = 1 + (size_t)read_u32be(buf_head(&tmp) + 1);
		buf_append(&s->c->conn.out, buf_head(&tmp), tlen);
		if (rest)
			buf_append(rest, buf_head(&tmp) + tlen, buf_avail(&tmp) - tlen);
	}
	buf_free(&tmp);
	return ok;
}

static void handle_describe(AdminSession *s, MsgReader *r)
{
	uint8_t kind;
	const char *name;
	char msg[300];

	if (!msg_get_u8(r, &kind) || !msg_get_cstr(r, &name) || msg_remaining(r) != 0 ||
	    (kind != 'S' && kind != 'P')) {
		client_fatal(s->c, "08P01", "invalid Describe message", NULL);
		return;
	}
	if (kind == 'S') {
		AdminStmt *st = stmt_find(s, name);
		size_t start;
		if (!st) {
			snprintf(msg, sizeof(msg), "prepared statement \"%.200s\" does not exist",
			         name);
			ext_error(s, "26000", msg);
			return;
		}
		pkt_begin(&s->c->conn.out, 't', &start); /* ParameterDescription: none */
		pkt_put_u16(&s->c->conn.out, 0);
		pkt_finish(&s->c->conn.out, start);
		if (is_show(st->sql))
			describe_show(s, st->sql, NULL);
		else
			put_simple(&s->c->conn.out, 'n');
		return;
	}
	AdminPortal *p = portal_find(s, name);
	if (!p) {
		snprintf(msg, sizeof(msg), "portal \"%.200s\" does not exist", name);
		ext_error(s, "34000", msg);
		return;
	}
	if (!is_show(p->sql) || p->has_result || p->done) {
		put_simple(&s->c->conn.out, 'n');
		return;
	}
	/* run now and keep the rows, so the columns described are the ones Execute sends */
	if (describe_show(s, p->sql, &p->result))
		p->has_result = true;
}

static void handle_execute(AdminSession *s, MsgReader *r)
{
	const char *name;
	uint32_t max_rows;
	AdminPortal *p;
	char msg[300];
	ExecResult res;

	if (!msg_get_cstr(r, &name) || !msg_get_u32(r, &max_rows) || msg_remaining(r) != 0) {
		client_fatal(s->c, "08P01", "invalid Execute message", NULL);
		return;
	}
	p = portal_find(s, name);
	if (!p) {
		snprintf(msg, sizeof(msg), "portal \"%.200s\" does not exist", name);
		ext_error(s, "34000", msg);
		return;
	}
	if (p->done) {
		put_complete(&s->c->conn.out, "SHOW");
		return;
	}
	if (p->has_result) {
		buf_append(&s->c->conn.out, buf_head(&p->result), buf_avail(&p->result));
		buf_reset(&p->result, 0);
		p->has_result = false;
		p->done = true;
		return;
	}
	if (is_blank(p->sql)) {
		put_simple(&s->c->conn.out, 'I');
		return;
	}
	p->done = true;
	res = run_command(s, p->sql, &s->c->conn.out, false, false);
	if (s->c->closing)
		return;
	if (res == EXEC_ERROR)
		s->c->skip_until_sync = true;
	else if (res == EXEC_PENDING)
		s->from_query = false;
}

static void handle_close(AdminSession *s, MsgReader *r)
{
	uint8_t kind;
	const char *name;

	if (!msg_get_u8(r, &kind) || !msg_get_cstr(r, &name) || msg_remaining(r) != 0 ||
	    (kind != 'S' && kind != 'P')) {
		client_fatal(s->c, "08P01", "invalid Close message", NULL);
		return;
	}
	if (kind == 'S')
		stmt_remove(s, name);
	else
		portal_remove(s, name);
	put_simple(&s->c->conn.out, '3');
}

/* ---------------------------------------------------------------------------------------
 * Framing.
 */

static void dispatch(AdminSession *s, uint8_t type, const uint8_t *body, size_t len)
{
	Client *c = s->c;
	MsgReader r;

	msg_reader_init(&r, body, len);
	if (type == 'X') {
		client_close(c, NULL);
		return;
	}
	if (c->skip_until_sync && type != 'S')
		return;
	switch (type) {
	case 'Q': {
		const char *sql;
		if (!msg_get_cstr(&r, &sql) || msg_remaining(&r) != 0) {
			client_fatal(c, "08P01", "invalid Query message", NULL);
			return;
		}
		handle_query(s, sql);
		break;
	}
	case 'P':
		handle_parse(s, &r);
		break;
	case 'B':
		handle_bind(s, &r);
		break;
	case 'D':
		handle_describe(s, &r);
		break;
	case 'E':
		handle_execute(s, &r);
		break;
	case 'C':
		handle_close(s, &r);
		break;
	case 'S':
		c->skip_until_sync = false;
		portals_clear(s); /* portals live until the end of the (implicit) transaction */
		proto_ready(&c->conn.out, 'I');
		break;
	case 'H':
		break; /* everything is flushed after each batch of input anyway */
	case 'd':
	case 'c':
	case 'f':
		break; /* COPY messages outside COPY are ignored, as PostgreSQL does */
	default: {
		char msg[64];
		snprintf(msg, sizeof(msg), "invalid frontend message type %d", type);
		client_fatal(c, "08P01", msg, NULL);
		break;
	}
	}
}

static void process_input(AdminSession *s)
{
	Client *c = s->c;
	Buf *in = &c->conn.in;

	while (!c->closing && !s->waiting && buf_avail(in) >= MSG_HEADER_LEN) {
		uint8_t type = buf_head(in)[0];
		uint32_t len = read_u32be(buf_head(in) + 1);
		uint8_t *body;

		if (len < 4 || len > ADMIN_MAX_MSG) {
			client_fatal(c, "08P01", "invalid message length on the console", NULL);
			return;
		}
		if (buf_avail(in) < 1 + (size_t)len)
			break;
		/* a copy: the command may close connections, and this one's buffers with them */
		body = xmalloc(len - 4 + 1);
		memcpy(body, buf_head(in) + MSG_HEADER_LEN, len - 4);
		body[len - 4] = '\0';
		buf_consume(in, 1 + (size_t)len);
		dispatch(s, type, body, len - 4);
		free(body);
	}
}

/* Sends what was produced; then acts on a SHUTDOWN that was just answered. */
static void flush_and_finish(AdminSession *s)
{
	Client *c = s->c;
	bool shutdown = s->shutdown_after;

	s->shutdown_after = false;
	if (!c->closing)
		client_flush(c);
	if (shutdown)
		control_shutdown();
}

void admin_process(Client *c)
{
	AdminSession *s;

	if (c->closing)
		return;
	s = session_get(c);
	if (s->waiting || s->resume_pending) {
		/* the answer to PAUSE/WAIT_CLOSE comes first; hold input, but not without bound */
		if (buf_avail(&c->conn.in) > ADMIN_MAX_PENDING_INPUT)
			conn_want_read(&c->conn, false);
		return;
	}
	process_input(s);
	if (c->closing) {
		session_drop(s);
		return;
	}
	flush_and_finish(s);
}

/*
 * Carries on after a PAUSE / WAIT_CLOSE answer: the rest of its Query
 * string, then buffered input. This runs from its own event, never inside
 * control_maintain(): the next command may be another PAUSE, and control.c
 * must not be re-entered while it walks its waiters.
 */
static void resume_session(AdminSession *s)
{
	Client *c = s->c;
	Buf *out = &c->conn.out;

	s->resume_pending = false;
	if (s->from_query) {
		bool finished = true;
		char *rest = s->rest;
		/* run_query_string() sets s->rest again when another command waits */
		s->rest = NULL;
		if (s->resume_ok && rest) {
			bool any = false;
			finished = run_query_string(s, rest, &any);
		}
		free(rest);
		if (c->closing)
			return;
		if (finished)
			proto_ready(out, 'I');
	} else if (!s->resume_ok) {
		c->skip_until_sync = true;
	}
	conn_want_read(&c->conn, true);
	process_input(s);
	if (c->closing)
		return;
	flush_and_finish(s);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	bool again = true;

	time_update();
	/* a resumed session may pause again and another finish meanwhile: loop until none is left
	 */
	while (again) {
		again = false;
		sessions_prune();
		for (AdminSession *s = sessions; s; s = s->next) {
			if (s->resume_pending && !s->waiting) {
				resume_session(s);
				again = true;
				break; /* the list may have changed */
			}
		}
	}
	sessions_prune();
	client_maintain();
}

/* The pending PAUSE / WAIT_CLOSE finished (ok) or failed: answer now, carry on soon. */
static void pending_finished(Client *c, bool ok, const char *tag, const char *sqlstate,
                             const char *msg)
{
	AdminSession *s;
	Buf *out;

	if (!c || c->closing)
		return;
	s = session_find(c);
	if (!s || !s->waiting)
		return;
	if (s->in_call) {
		/* completed inside control_pause()/control_wait_close(): exec_later answers */
		s->completed = true;
		s->failed = !ok;
		snprintf(s->done_tag, sizeof(s->done_tag), "%.31s", tag ? tag : "");
		snprintf(s->err_state, sizeof(s->err_state), "%.5s", sqlstate ? sqlstate : "XX000");
		free(s->err_msg);
		s->err_msg = msg ? xstrdup(msg) : NULL;
		return;
	}
	out = &c->conn.out;
	s->waiting = false;
	if (ok)
		put_complete(out, tag);
	else
		proto_error(out, "ERROR", sqlstate, msg, NULL);
	log_info("console %s@%s:%d: %s %s", c->user, c->addr, c->port,
	         s->pending_cmd ? s->pending_cmd : "?", ok ? "done" : msg);
	audit_console(c->user, s->pending_cmd ? s->pending_cmd : tag, ok, ok ? tag : msg);
	free(s->pending_cmd);
	s->pending_cmd = NULL;
	client_flush(c);
	if (c->closing)
		return;
	s->resume_pending = true;
	s->resume_ok = ok;
	if (!resume_ev)
		resume_ev = event_new(g_base, -1, 0, on_resume, NULL);
	event_active(resume_ev, EV_TIMEOUT, 0);
}

void admin_command_done(Client *c, const char *tag)
{
	pending_finished(c, true, tag, NULL, NULL);
}

void admin_command_failed(Client *c, const char *sqlstate, const char *msg)
{
	pending_finished(c, false, NULL, sqlstate, msg);
}
