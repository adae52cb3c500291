/*
 * metrics: the Prometheus endpoint on metrics_listen (SPEC §7), served by
 * libevent's evhttp on the main event loop. GET /metrics answers the text
 * exposition format 0.0.4, built from the live lists and per-tenant
 * counters when scraped (nothing is kept per scrape); GET /healthz answers
 * 200 while pgtenant accepts clients and 503 once it shuts down.
 *
 * Per-tenant series exist for the metrics_tenant_limit tenants with the
 * most queries; the others add up under tenant="_other", so the series
 * count is bounded however many tenants are configured.
 */
#ifndef PGTENANT_METRICS_H
#define PGTENANT_METRICS_H

#include "common.h"
#include "pktbuf.h"
#include "tenant.h"

struct event_base;
struct evhttp_request;

/*
 * Listens on "host:port" ("*:port" or ":port" = all addresses, "[v6]:port")
 * before the client listener accepts, so that pgtenant answering clients means
 * its metrics answer too; metrics_start serves that socket on the event loop.
 */
bool metrics_bind(const char *listen, char *err, size_t errlen);
bool metrics_start(struct event_base *base, char *err, size_t errlen);
void metrics_stop(void);
/* Answers req with body (none for HEAD), uncached. */
void metrics_reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                   const void *body, size_t len);
/* A reload finished (console RELOAD or SIGHUP): counts pgtenant_reloads_total{result}. */
void metrics_count_reload(bool ok);

/* A tenant's row of /metrics and /tenants.json: a copy of its counters when asked. */
typedef struct MetricsRow {
	const Tenant *t; /* NULL for the _other row */
	const char *name;
	uint64_t cl_active, cl_waiting, cl_idle, sv_active;
	TenantStats stats;
	StatsHists hist;
} MetricsRow;

typedef struct MetricsTable {
	MetricsRow *rows; /* free() when done */
	int n;
	int cap;
	int total; /* tenants configured, before the fold */
} MetricsTable;

/*
 * Fills tt with one row per tenant, keeps the metrics_tenant_limit most
 * active (most queries, then by name: stable between scrapes) and folds the
 * rest into a last row named _other (t NULL). Returns the number of rows.
 */
int metrics_tenant_rows(MetricsTable *tt);

/* Appends the whole /metrics page to out (exposed for unit tests and the console). */
void metrics_render(Buf *out);
/* Appends s as a label value with \\, \" and \n escaped (no quotes). Exposed for unit tests. */
void metrics_escape_label(Buf *out, const char *s);

extern uint64_t metrics_reloads_ok;
extern uint64_t metrics_reloads_failed;

#endif
