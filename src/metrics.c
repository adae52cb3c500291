/*
 * metrics: see include/metrics.h.
 *
 * A scrape reads the client counts each Tenant keeps (cl_active,
 * cl_waiting, cl_idle, maintained as clients change state) and walks the
 * pools' server lists once, so its cost is linear in tenants + servers
 * (plus sorting the tenants by activity), not in clients; nothing is
 * updated on the data path for metrics' sake: the counters exported are
 * the TenantStats the core keeps anyway.
 *
 * Histograms: fixed log-scale buckets (100 µs … 30 s, 1-2-5 steps; stats.h)
 * recorded per tenant and per backend on the data path; a scrape turns them
 * into cumulative _bucket{le} lines, _sum and _count. The _other row adds
 * up the buckets of the tenants folded into it.
 */
#include "metrics.h"

#include "client.h"
#include "dashboard.h"
#include "health.h"
#include "log.h"
#include "net.h"
#include "pgtenant.h"
#include "pool.h"
#include "server.h"
#include "stats.h"
#include "tenant.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t metrics_reloads_ok;
uint64_t metrics_reloads_failed;

static struct evhttp *http;

#define METRICS_OTHER "_other"

void metrics_count_reload(bool ok)
{
	if (ok)
		metrics_reloads_ok++;
	else
		metrics_reloads_failed++;
}

void metrics_escape_label(Buf *out, const char *s)
{
	for (const char *p = s ? s : ""; *p; p++) {
		if (*p == '\\')
			buf_append(out, "\\\\", 2);
		else if (*p == '"')
			buf_append(out, "\\\"", 2);
		else if (*p == '\n')
			buf_append(out, "\\n", 2);
		else
			buf_append(out, p, 1);
	}
}

static void family(Buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP %s ", name);
	buf_puts(out, help);
	buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

/*
 * One sample: name{k1="v1",k2="v2"} value. labels is a NULL-terminated
 * list of name, value pairs.
 */
static void sample_begin(Buf *out, const char *name, const char *const *labels)
{
	buf_puts(out, name);
	if (labels && labels[0]) {
		buf_append(out, "{", 1);
		for (int i = 0; labels[i]; i += 2) {
			if (i)
				buf_append(out, ",", 1);
			buf_puts(out, labels[i]);
			buf_append(out, "=\"", 2);
			metrics_escape_label(out, labels[i + 1]);
			buf_append(out, "\"", 1);
		}
		buf_append(out, "}", 1);
	}
	buf_append(out, " ", 1);
}

static void sample_u64(Buf *out, const char *name, const char *const *labels, uint64_t v)
{
	sample_begin(out, name, labels);
	buf_printf(out, "%llu\n", (unsigned long long)v);
}

static void sample_f(Buf *out, const char *name, const char *const *labels, double v)
{
	sample_begin(out, name, labels);
	buf_printf(out, "%.6f\n", v);
}

/* ---------------------------------------------------------------------------------------
 * Per-tenant rows: the top metrics_tenant_limit tenants by queries, then "_other".
 */

static void collect_tenant(Tenant *t, void *arg)
{
	MetricsTable *tt = arg;

	if (tt->n == tt->cap) {
		tt->cap = tt->cap ? tt->cap * 2 : 64;
		tt->rows = xrealloc(tt->rows, (size_t)tt->cap * sizeof(*tt->rows));
	}
	tt->rows[tt->n++] = (MetricsRow){.t = t,
	                                 .name = t->name,
	                                 .cl_active = (uint64_t)t->cl_active,
	                                 .cl_waiting = (uint64_t)t->cl_waiting,
	                                 .cl_idle = (uint64_t)t->cl_idle,
	                                 .sv_active = (uint64_t)t->n_servers,
	                                 .stats = t->stats,
	                                 .hist = t->hist};
}

/* Most queries first; the name breaks ties so the chosen set is stable between scrapes. */
static int cmp_row_activity(const void *a, const void *b)
{
	const MetricsRow *x = a, *y = b;
	if (x->stats.queries != y->stats.queries)
		return x->stats.queries > y->stats.queries ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void stats_add(TenantStats *dst, const TenantStats *src)
{
	dst->queries += src->queries;
	dst->xacts += src->xacts;
	dst->query_time_us += src->query_time_us;
	dst->xact_time_us += src->xact_time_us;
	dst->wait_time_us += src->wait_time_us;
	dst->waits += src->waits;
	dst->bytes_in += src->bytes_in;
	dst->bytes_out += src->bytes_out;
	dst->query_timeouts += src->query_timeouts;
	dst->state_failures += src->state_failures;
	dst->rate_limited += src->rate_limited;
	dst->refused += src->refused;
	dst->auth_failures += src->auth_failures;
}

int metrics_tenant_rows(MetricsTable *tt)
{
	int limit = g_cfg ? g_cfg->metrics_tenant_limit : 100;

	memset(tt, 0, sizeof(*tt));
	tenant_foreach(collect_tenant, tt);
	tt->total = tt->n;
	if (tt->n == 0)
		return 0;
	qsort(tt->rows, (size_t)tt->n, sizeof(MetricsRow), cmp_row_activity);
	if (limit < 0)
		limit = 0;
	if (tt->n > limit) {
		MetricsRow *other = &tt->rows[limit];
		MetricsRow sum;
		memset(&sum, 0, sizeof(sum));
		sum.name = METRICS_OTHER;
		for (int i = limit; i < tt->n; i++) {
			sum.cl_active += tt->rows[i].cl_active;
			sum.cl_waiting += tt->rows[i].cl_waiting;
			sum.cl_idle += tt->rows[i].cl_idle;
			sum.sv_active += tt->rows[i].sv_active;
			stats_add(&sum.stats, &tt->rows[i].stats);
			hist_add(&sum.hist.query, &tt->rows[i].hist.query);
			hist_add(&sum.hist.xact, &tt->rows[i].hist.xact);
			hist_add(&sum.hist.wait, &tt->rows[i].hist.wait);
		}
		*other = sum;
		tt->n = limit + 1;
	}
	return tt->n;
}

/* ---------------------------------------------------------------------------------------
 * Per-backend server counts.
 */

typedef struct BackendRow {
	const Backend *be;
	uint64_t active, idle, login, busy;
	bool failing;
} BackendRow;

static int list_len(const List *l)
{
	const List *it;
	int n = 0;
	list_for_each(it, l) n++;
	return n;
}

static int backend_rows(BackendRow **out)
{
	BackendRow *rows = NULL;
	int n = 0, cap = 0;
	const List *it;

	/* configured backends first, in file order, so idle ones show up with zeros */
	for (int i = 0; g_cfg && i < g_cfg->n_backends; i++) {
		const Backend *be = pool_backend(g_cfg->backends[i].name);
		if (!be)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			rows = xrealloc(rows, (size_t)cap * sizeof(*rows));
		}
		memset(&rows[n], 0, sizeof(rows[n]));
		rows[n++].be = be;
	}
	list_for_each(it, &g_pools)
	{
		const Pool *p = list_entry(it, Pool, node);
		BackendRow *r = NULL;
		for (int i = 0; i < n; i++)
			if (rows[i].be == p->backend)
				r = &rows[i];
		if (!r) {
			/* a backend removed by a reload whose pool still drains */
			if (n == cap) {
				cap = cap ? cap * 2 : 8;
				rows = xrealloc(rows, (size_t)cap * sizeof(*rows));
			}
			r = &rows[n++];
			memset(r, 0, sizeof(*r));
			r->be = p->backend;
		}
		r->active += (uint64_t)list_len(&p->active);
		r->idle += (uint64_t)list_len(&p->idle);
		r->login += (uint64_t)list_len(&p->login);
		r->busy += (uint64_t)list_len(&p->busy);
		r->failing |= p->failing;
	}
	*out = rows;
	return n;
}

/* ---------------------------------------------------------------------------------------
 * The page.
 */

static void render_tenant_counter(Buf *out, const MetricsTable *tt, const char *name,
                                  const char *help, size_t offset)
{
	family(out, name, "counter", help);
	for (int i = 0; i < tt->n; i++) {
		const char *labels[] = {"tenant", tt->rows[i].name, NULL};
		uint64_t v = *(const uint64_t *)((const char *)&tt->rows[i].stats + offset);
		sample_u64(out, name, labels, v);
	}
}

/* One histogram's samples: cumulative buckets, +Inf, _sum (seconds) and _count. */
static void histogram_samples(Buf *out, const char *name, const char *label, const char *value,
                              const Hist *h)
{
	char bucket[128], sum[128], count[128], le[32];
	uint64_t cum = 0;

	snprintf(bucket, sizeof(bucket), "%s_bucket", name);
	snprintf(sum, sizeof(sum), "%s_sum", name);
	snprintf(count, sizeof(count), "%s_count", name);
	for (int b = 0; b < HIST_BUCKETS; b++) {
		cum += h->b[b];
		if (b < HIST_BOUNDS)
			snprintf(le, sizeof(le), "%g", (double)hist_bounds_us[b] / 1e6);
		else
			snprintf(le, sizeof(le), "+Inf");
		const char *bl[] = {label, value, "le", le, NULL};
		sample_u64(out, bucket, bl, cum);
	}
	const char *l[] = {label, value, NULL};
	sample_f(out, sum, l, (double)h->sum_us / 1e6);
	sample_u64(out, count, l, h->count);
}

static void render_histogram(Buf *out, const MetricsTable *tt, const char *name, const char *help,
                             size_t hist_off)
{
	family(out, name, "histogram", help);
	for (int i = 0; i < tt->n; i++) {
		const Hist *h = (const Hist *)((const char *)&tt->rows[i].hist + hist_off);
		histogram_samples(out, name, "tenant", tt->rows[i].name, h);
	}
}

static void render_backend_histogram(Buf *out, const BackendRow *br, int nb, const char *name,
                                     const char *help, size_t hist_off)
{
	static const Hist empty;

	family(out, name, "histogram", help);
	for (int i = 0; i < nb; i++) {
		const StatsHists *sh = stats_backend_hists(br[i].be);
		const Hist *h = sh ? (const Hist *)((const char *)sh + hist_off) : &empty;
		histogram_samples(out, name, "backend", br[i].be->name, h);
	}
}

void metrics_render(Buf *out)
{
	MetricsTable tt;
	BackendRow *br = NULL;
	int nb;
	char port[16];

	metrics_tenant_rows(&tt);
	nb = backend_rows(&br);

	family(out, "pgtenant_up", "gauge",
	       "1 while pgtenant accepts clients, 0 while it shuts down.");
	sample_u64(out, "pgtenant_up", NULL, g_shutdown ? 0 : 1);

	family(out, "pgtenant_tenants", "gauge", "Configured tenants.");
	sample_u64(out, "pgtenant_tenants", NULL, (uint64_t)tenant_count());

	family(out, "pgtenant_clients", "gauge",
	       "Client connections by tenant and state (active: linked to a server; waiting: for a "
	       "server; idle).");
	for (int i = 0; i < tt.n; i++) {
		static const char *const states[] = {"active", "waiting", "idle"};
		uint64_t v[] = {tt.rows[i].cl_active, tt.rows[i].cl_waiting, tt.rows[i].cl_idle};
		for (int s = 0; s < 3; s++) {
			const char *labels[] = {"tenant", tt.rows[i].name, "state", states[s],
			                        NULL};
			sample_u64(out, "pgtenant_clients", labels, v[s]);
		}
	}

	family(out, "pgtenant_servers", "gauge",
	       "Server connections by backend, role and state (active: linked to a client; idle; "
	       "login: connecting or logging in; busy: resetting or a cancel in flight).");
	for (int i = 0; i < nb; i++) {
		static const char *const states[] = {"active", "idle", "login", "busy"};
		uint64_t v[] = {br[i].active, br[i].idle, br[i].login, br[i].busy};
		for (int s = 0; s < 4; s++) {
			const char *labels[] = {"backend", br[i].be->name, "role", "primary",
			                        "state",   states[s],      NULL};
			sample_u64(out, "pgtenant_servers", labels, v[s]);
		}
	}

	render_tenant_counter(out, &tt, "pgtenant_queries_total",
	                      "Statements run: one per Query message and one per Execute.",
	                      offsetof(TenantStats, queries));
	render_tenant_counter(out, &tt, "pgtenant_transactions_total", "Transactions completed.",
	                      offsetof(TenantStats, xacts));
	render_tenant_counter(out, &tt, "pgtenant_query_timeouts_total",
	                      "Statements canceled by query_timeout.",
	                      offsetof(TenantStats, query_timeouts));
	render_tenant_counter(out, &tt, "pgtenant_state_failures_total",
	                      "Units refused because the tenant state could not be applied (e.g. "
	                      "its schema is missing).",
	                      offsetof(TenantStats, state_failures));
	render_tenant_counter(out, &tt, "pgtenant_rate_limited_total",
	                      "Statements delayed by the tenant's rate_limit.",
	                      offsetof(TenantStats, rate_limited));
	render_tenant_counter(
	        out, &tt, "pgtenant_refused_logins_total",
	        "Logins refused after authentication (disabled, not allowed, over limits).",
	        offsetof(TenantStats, refused));
	render_tenant_counter(out, &tt, "pgtenant_auth_failures_total",
	                      "Logins that named the tenant and failed authentication.",
	                      offsetof(TenantStats, auth_failures));
	render_tenant_counter(out, &tt, "pgtenant_received_bytes_total",
	                      "Bytes received from the tenant's clients.",
	                      offsetof(TenantStats, bytes_in));
	render_tenant_counter(out, &tt, "pgtenant_sent_bytes_total",
	                      "Bytes sent to the tenant's clients.",
	                      offsetof(TenantStats, bytes_out));

	render_histogram(out, &tt, "pgtenant_query_duration_seconds",
	                 "Time from a unit's first message (a Query, or an extended-protocol batch "
	                 "up to Sync) to its ReadyForQuery, one sample per unit.",
	                 offsetof(StatsHists, query));
	render_histogram(out, &tt, "pgtenant_xact_duration_seconds",
	                 "Transaction time, autocommit statements included (each is a transaction "
	                 "of its own).",
	                 offsetof(StatsHists, xact));
	render_histogram(
	        out, &tt, "pgtenant_wait_duration_seconds",
	        "Time clients waited for a server connection, one sample per server handed "
	        "out (0 when one was free).",
	        offsetof(StatsHists, wait));
	render_backend_histogram(
	        out, br, nb, "pgtenant_backend_query_duration_seconds",
	        "pgtenant_query_duration_seconds by backend (primary and replicas).",
	        offsetof(StatsHists, query));
	render_backend_histogram(out, br, nb, "pgtenant_backend_xact_duration_seconds",
	                         "pgtenant_xact_duration_seconds by backend.",
	                         offsetof(StatsHists, xact));
	render_backend_histogram(out, br, nb, "pgtenant_backend_wait_duration_seconds",
	                         "pgtenant_wait_duration_seconds by backend.",
	                         offsetof(StatsHists, wait));

	family(out, "pgtenant_backend_up", "gauge",
	       "1 when the backend is up by its health check (primary: reachable and accepting a "
	       "login, or a server login to it since; replica: also in recovery), 0 when down.");
	for (int i = 0; i < nb; i++) {
		snprintf(port, sizeof(port), "%d", br[i].be->port);
		const char *labels[] = {"backend",      br[i].be->name, "role", "primary", "host",
		                        br[i].be->host, "port",         port,   NULL};
		sample_u64(out, "pgtenant_backend_up", labels, health_primary_up(br[i].be) ? 1 : 0);
		for (int r = 0; r < br[i].be->n_replicas; r++) {
			const Replica *rep = br[i].be->replicas[r];
			if (!rep->configured)
				continue;
			snprintf(port, sizeof(port), "%d", rep->port);
			const char *rl[] = {"backend", br[i].be->name, "role", "replica", "host",
			                    rep->host, "port",         port,   NULL};
			sample_u64(out, "pgtenant_backend_up", rl,
			           rep->state == REPLICA_DOWN ? 0 : 1);
		}
	}

	family(out, "pgtenant_replica_lag_seconds", "gauge", "Replay lag of each read replica.");
	for (int i = 0; i < nb; i++) {
		for (int r = 0; r < br[i].be->n_replicas; r++) {
			const Replica *rep = br[i].be->replicas[r];
			if (!rep->configured)
				continue;
			snprintf(port, sizeof(port), "%d", rep->port);
			const char *ll[] = {"backend", br[i].be->name, "host", rep->host,
			                    "port",    port,           NULL};
			sample_f(out, "pgtenant_replica_lag_seconds", ll,
			         (double)rep->lag_us / (double)USEC_PER_SEC);
		}
	}

	family(out, "pgtenant_reloads_total", "counter", "Configuration reloads by result.");
	{
		const char *ok[] = {"result", "ok", NULL};
		const char *failed[] = {"result", "failed", NULL};
		sample_u64(out, "pgtenant_reloads_total", ok, metrics_reloads_ok);
		sample_u64(out, "pgtenant_reloads_total", failed, metrics_reloads_failed);
	}

	free(tt.rows);
	free(br);
}

/* ---------------------------------------------------------------------------------------
 * HTTP.
 */

void metrics_reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                   const void *body, size_t len)
{
	struct evbuffer *eb = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	if (!eb) {
		evhttp_send_error(req, 500, "Internal Server Error");
		return;
	}
	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
		evbuffer_add(eb, body, len);
	evhttp_send_reply(req, code, reason, eb);
	evbuffer_free(eb);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	Buf page;

	time_update();
	buf_init(&page);
	metrics_render(&page);
	metrics_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", buf_head(&page),
	              buf_avail(&page));
	buf_free(&page);
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
	if (g_shutdown)
		metrics_reply(req, 503, "Service Unavailable", "text/plain; charset=utf-8",
		              "shutting down\n", 14);
	else
		metrics_reply(req, 200, "OK", "text/plain; charset=utf-8", "ok\n", 3);
}

static void on_other(struct evhttp_request *req, void *arg)
{
	evhttp_send_error(req, 404, "Not Found");
}

/* Splits "host:port", "[v6]:port", "*:port" or ":port" (empty or * host = every address). */
static bool parse_listen(const char *listen, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon = strrchr(listen, ':');
	const char *h = listen;
	size_t hl;
	char *end;
	long p;

	if (!colon)
		return false;
	hl = (size_t)(colon - listen);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || (hl == 1 && h[0] == '*')) {
		h = "0.0.0.0";
		hl = 7;
	}
	if (hl >= hostlen)
		return false;
	memcpy(host, h, hl);
	host[hl] = '\0';
	p = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end || p < 1 || p > 65535)
		return false;
	*port = (uint16_t)p;
	return true;
}

static int listen_fd = -1;

bool metrics_bind(const char *listen, char *err, size_t errlen)
{
	char host[256];
	uint16_t port;

	if (!listen || !*listen)
		return true;
	if (!parse_listen(listen, host, sizeof(host), &port)) {
		snprintf(err, errlen, "metrics_listen \"%s\" is not host:port", listen);
		return false;
	}
	char why[256];
	listen_fd = net_listen_tcp(host, port, 128, false, why, sizeof(why));
	if (listen_fd < 0)
		snprintf(err, errlen, "metrics_listen: %s", why);
	return listen_fd >= 0;
}

bool metrics_start(struct event_base *base, char *err, size_t errlen)
{
	if (listen_fd < 0)
		return true;
	http = evhttp_new(base);
	if (!http) {
		snprintf(err, errlen, "cannot create the metrics HTTP server");
		return false;
	}
	/* a scraper is trusted but bounded: small requests, GET only, no idle sockets kept long */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(http, 16384);
	evhttp_set_max_body_size(http, 1024);
	evhttp_set_timeout(http, 30);
	evhttp_set_cb(http, "/metrics", on_metrics, NULL);
	evhttp_set_cb(http, "/healthz", on_healthz, NULL);
	dashboard_register(http); /* GET / and /tenants.json */
	evhttp_set_gencb(http, on_other, NULL);
	if (!evhttp_accept_socket_with_handle(http, listen_fd)) {
		snprintf(err, errlen, "cannot serve metrics_listen %s", g_cfg->metrics_listen);
		evhttp_free(http);
		http = NULL;
		return false;
	}
	listen_fd = -1; /* evhttp owns it now */
	log_info("metrics on http://%s/metrics", g_cfg->metrics_listen);
	return true;
}

void metrics_stop(void)
{
	if (http)
		evhttp_free(http);
	http = NULL;
}
