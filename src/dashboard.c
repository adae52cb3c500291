/*
 * dashboard: see include/dashboard.h.
 *
 * /tenants.json, one object:
 *   version, time_ms (wall clock), tenants_total, tenant_limit,
 *   tenants: [ {tenant, mode, backend, state, clients, cl_active, cl_waiting,
 *               cl_idle, sv_active, pool_size, queries, xacts, query_time_us,
 *               wait_time_us, waits, avg_query_us, avg_wait_us, errors,
 *               query_timeouts, state_failures, refused, auth_failures,
 *               rate_limited, p95_ms} ... ]   most queries first,
 *   other: null, or the same counters summed over the tenants left out,
 *          with "tenants": how many,
 *   backends: [ {backend, role, host, port, state, lag_ms, last_check_ms,
 *                last_error} ... ]
 * Numbers are JSON numbers, text is escaped; man/pgtenant-admin.7 documents it.
 */
#include "dashboard.h"

#include "health.h"
#include "log.h"
#include "metrics.h"
#include "pgtenant.h"
#include "pool.h"
#include "stats.h"
#include "tenant.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * JSON writing.
 */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when it is not one. */
static int utf8_len(const unsigned char *p)
{
	int n;
	unsigned cp;

	if (p[0] < 0xc2 || p[0] > 0xf4)
		return 0;
	n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
	cp = p[0] & (0x7f >> n);
	for (int i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0; /* also stops at the terminating NUL */
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0; /* overlong, out of range, or a surrogate */
	return n;
}

void dashboard_json_escape(Buf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	while (*p) {
		if (*p == '"' || *p == '\\') {
			const char esc[2] = {'\\', (char)*p};
			buf_append(out, esc, 2);
			p++;
		} else if (*p < 0x20 || *p == 0x7f) {
			buf_printf(out, "\\u%04x", *p);
			p++;
		} else if (*p < 0x80) {
			buf_append(out, p, 1);
			p++;
		} else {
			int n = utf8_len(p);
			if (n) {
				buf_append(out, p, (size_t)n);
				p += n;
			} else {
				buf_puts(out, "\\ufffd");
				p++;
			}
		}
	}
}

static void key(Buf *out, bool *first, const char *name)
{
	if (!*first)
		buf_append(out, ",", 1);
	*first = false;
	buf_append(out, "\"", 1);
	buf_puts(out, name);
	buf_append(out, "\":", 2);
}

static void field_str(Buf *out, bool *first, const char *name, const char *v)
{
	key(out, first, name);
	if (!v) {
		buf_puts(out, "null");
		return;
	}
	buf_append(out, "\"", 1);
	dashboard_json_escape(out, v);
	buf_append(out, "\"", 1);
}

static void field_u64(Buf *out, bool *first, const char *name, uint64_t v)
{
	key(out, first, name);
	buf_printf(out, "%llu", (unsigned long long)v);
}

/* ---------------------------------------------------------------------------------------
 * Tenants: the most active metrics_tenant_limit, the rest summed.
 */

/* The counters of a row (a tenant's, or the sum in "other"). */
static void counters(Buf *out, bool *first, const MetricsRow *r)
{
	const TenantStats *st = &r->stats;
	field_u64(out, first, "clients", r->cl_active + r->cl_waiting + r->cl_idle);
	field_u64(out, first, "cl_active", r->cl_active);
	field_u64(out, first, "cl_waiting", r->cl_waiting);
	field_u64(out, first, "cl_idle", r->cl_idle);
	field_u64(out, first, "sv_active", r->sv_active);
	field_u64(out, first, "queries", st->queries);
	field_u64(out, first, "xacts", st->xacts);
	field_u64(out, first, "query_time_us", st->query_time_us);
	field_u64(out, first, "wait_time_us", st->wait_time_us);
	field_u64(out, first, "waits", st->waits);
	field_u64(out, first, "avg_query_us", st->queries ? st->query_time_us / st->queries : 0);
	field_u64(out, first, "avg_wait_us", st->waits ? st->wait_time_us / st->waits : 0);
	field_u64(out, first, "errors",
	          st->query_timeouts + st->state_failures + st->refused + st->auth_failures);
	field_u64(out, first, "query_timeouts", st->query_timeouts);
	field_u64(out, first, "state_failures", st->state_failures);
	field_u64(out, first, "refused", st->refused);
	field_u64(out, first, "auth_failures", st->auth_failures);
	field_u64(out, first, "rate_limited", st->rate_limited);
}

static void render_tenants(Buf *out)
{
	MetricsTable tt;
	int n = metrics_tenant_rows(&tt);
	int listed = n > 0 && !tt.rows[n - 1].t ? n - 1 : n; /* the last may be the fold */
	int limit = g_cfg ? g_cfg->metrics_tenant_limit : 100;

	buf_printf(out, "\"tenants_total\":%d,\"tenant_limit\":%d,\"tenants\":[", tt.total,
	           limit > 0 ? limit : 0);
	for (int i = 0; i < listed; i++) {
		const MetricsRow *r = &tt.rows[i];
		const Tenant *t = r->t;
		bool first = true;
		if (i)
			buf_append(out, ",", 1);
		buf_append(out, "{", 1);
		field_str(out, &first, "tenant", t->name);
		field_str(out, &first, "mode", t->conf ? tenant_mode_name(t->conf->mode) : NULL);
		field_str(out, &first, "backend", t->conf ? t->conf->backend : NULL);
		field_str(out, &first, "state", tenant_state_name(t));
		field_u64(out, &first, "pool_size",
		          (uint64_t)(t->pool_size > 0 ? t->pool_size : 0));
		counters(out, &first, r);
		/* from the tenant's own histogram: the summed "other" row has none */
		key(out, &first, "p95_ms");
		buf_printf(out, "%.3f", hist_quantile_ms(&r->hist.query, 0.95));
		buf_append(out, "}", 1);
	}
	buf_puts(out, "],\"other\":");
	if (listed < n) {
		bool first = true;
		buf_append(out, "{", 1);
		field_u64(out, &first, "tenants", (uint64_t)(tt.total - listed));
		counters(out, &first, &tt.rows[listed]);
		buf_append(out, "}", 1);
	} else {
		buf_puts(out, "null");
	}
	free(tt.rows);
}

/* ---------------------------------------------------------------------------------------
 * Backends: each primary and replica with its health.
 */

static void backend_obj(Buf *out, const char *name, const char *role, const char *host, int port,
                        const char *state, usec_t lag_us, usec_t checked, const char *error)
{
	bool first = true;
	buf_append(out, "{", 1);
	field_str(out, &first, "backend", name);
	field_str(out, &first, "role", role);
	field_str(out, &first, "host", host);
	field_u64(out, &first, "port", (uint64_t)(port > 0 ? port : 0));
	field_str(out, &first, "state", state);
	field_u64(out, &first, "lag_ms", (uint64_t)(lag_us > 0 ? lag_us / USEC_PER_MS : 0));
	key(out, &first, "last_check_ms");
	if (checked)
		buf_printf(out, "%llu", (unsigned long long)(checked / USEC_PER_MS));
	else
		buf_puts(out, "null");
	field_str(out, &first, "last_error", error);
	buf_append(out, "}", 1);
}

static void render_backends(Buf *out)
{
	bool any = false;

	buf_puts(out, "\"backends\":[");
	for (int i = 0; g_cfg && i < g_cfg->n_backends; i++) {
		const BackendConf *bc = &g_cfg->backends[i];
		const Backend *be = pool_backend(bc->name);
		if (!be)
			continue;
		if (any)
			buf_append(out, ",", 1);
		any = true;
		backend_obj(out, be->name, "primary", be->host, be->port,
		            health_primary_up(be) ? "up" : "down", 0, be->primary_checked,
		            health_primary_error(be));
		for (int r = 0; r < be->n_replicas; r++) {
			const Replica *rep = be->replicas[r];
			if (!rep->configured)
				continue;
			buf_append(out, ",", 1);
			backend_obj(out, be->name, "replica", rep->host, rep->port,
			            health_state_name(rep->state), rep->lag_us, rep->last_check,
			            NULL);
		}
	}
	buf_append(out, "]", 1);
}

void dashboard_render_json(Buf *out)
{
	buf_puts(out, "{\"version\":\"");
	dashboard_json_escape(out, PGTENANT_VERSION);
	buf_printf(out, "\",\"time_ms\":%llu,",
	           (unsigned long long)(time_wall_usec() / USEC_PER_MS));
	render_tenants(out);
	buf_append(out, ",", 1);
	render_backends(out);
	buf_puts(out, "}\n");
}

/* ---------------------------------------------------------------------------------------
 * HTTP.
 */

/* The page's and the JSON's answer: metrics_reply with the page's own rules. */
static void reply(struct evhttp_request *req, const char *ctype, const void *body, size_t len)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	/* the page runs only its own inline script and talks only to this origin */
	evhttp_add_header(h, "Content-Security-Policy",
	                  "default-src 'none'; script-src 'unsafe-inline'; style-src "
	                  "'unsafe-inline'; connect-src 'self'; img-src 'self' data:");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	metrics_reply(req, 200, "OK", ctype, body, len);
}

static void on_page(struct evhttp_request *req, void *arg)
{
	reply(req, "text/html; charset=utf-8", dashboard_page, dashboard_page_len);
}

static void on_tenants_json(struct evhttp_request *req, void *arg)
{
	Buf doc;

	time_update();
	buf_init(&doc);
	dashboard_render_json(&doc);
	reply(req, "application/json", buf_head(&doc), buf_avail(&doc));
	buf_free(&doc);
}

void dashboard_register(struct evhttp *http)
{
	evhttp_set_cb(http, "/", on_page, NULL);
	evhttp_set_cb(http, "/tenants.json", on_tenants_json, NULL);
}
