/*
 * dashboard: the live page on metrics_listen (issue 17). GET / answers one
 * self-contained HTML page (src/page/index.html, embedded at build time as
 * the string dashboard_page: no file is read at run time, nothing is
 * fetched from elsewhere); the page's own JavaScript reads GET
 * /tenants.json every few seconds and draws the table and the chart.
 *
 * The JSON is all the C code does: a snapshot of the counters, built when
 * asked from what each Tenant and Backend keeps (nothing is kept per
 * request or updated on the data path). Rates (QPS) are the page's work:
 * it divides the change of `queries` between two fetches by the time
 * between them, and keeps the history it fetched for the chart. Its size is
 * bounded: at most metrics_tenant_limit tenants (the most active, as
 * /metrics has them), the rest summed in "other".
 */
#ifndef PGTENANT_DASHBOARD_H
#define PGTENANT_DASHBOARD_H

#include "common.h"
#include "pktbuf.h"

struct evhttp;

/* Serves GET / and GET /tenants.json on the metrics HTTP server. */
void dashboard_register(struct evhttp *http);
/* Appends the /tenants.json document to out (exposed for unit tests). */
void dashboard_render_json(Buf *out);
/* Appends s as the inside of a JSON string: quotes, backslashes and control characters
 * escaped, invalid UTF-8 replaced by U+FFFD (no quotes around it). */
void dashboard_json_escape(Buf *out, const char *s);

/* The page, generated from src/page/index.html (src/dashboard_page.c). */
extern const char dashboard_page[];
extern const size_t dashboard_page_len;

#endif
