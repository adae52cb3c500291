/*
 * stats: what pgtenant measures of each statement beyond the plain counters
 * of TenantStats — latency histograms per tenant and per backend, statement
 * statistics per tenant (SHOW QUERIES), the slow statement log
 * (log_min_duration) and the per-minute windows of SHOW TOP TENANTS.
 *
 * Costs on the data path: a histogram sample is three increments after a
 * loop over at most 18 bounds; a statement is normalised from the tokens the
 * lexer produces anyway (sql_analyze_norm) or, for tenants whose statements
 * are not analysed, by a lexer-only pass; its table entry is found by an
 * open-addressing probe. Nothing is allocated per statement: tables grow by
 * doubling up to query_stats_max and are then recycled (space-saving: a new
 * statement takes the place of the lightest one and inherits its weight).
 */
#ifndef PGTENANT_STATS_H
#define PGTENANT_STATS_H

#include "common.h"
#include "types.h"

struct SqlNorm;
struct Buf;

/* Upper bounds (µs) of the finite buckets, 100 µs … 30 s in 1-2-5 steps; one more bucket is +Inf.
 */
#define HIST_BOUNDS  18
#define HIST_BUCKETS (HIST_BOUNDS + 1)
extern const uint64_t hist_bounds_us[HIST_BOUNDS];

typedef struct Hist {
	uint64_t count;
	uint64_t sum_us;
	uint64_t b[HIST_BUCKETS]; /* not cumulative: b[i] counts bounds[i-1] < v <= bounds[i] */
} Hist;

/* hist_from[k]: the first bucket whose bound is at least 2^k (stats.c fills it before main). */
extern uint8_t hist_from[64];

/* The bucket us falls in: every bound before hist_from[log2(us)] is below us, and the bounds
 * (1-2-5 per decade) leave at most two more to compare. */
static inline int hist_bucket(uint64_t us)
{
	int i = us ? hist_from[63 - __builtin_clzll(us)] : 0;
	while (i < HIST_BOUNDS && us > hist_bounds_us[i])
		i++;
	return i;
}

/* Counts us in h, found in bucket i (hist_bucket): one search serves a tenant's and a backend's. */
static inline void hist_record_at(Hist *h, int i, uint64_t us)
{
	h->b[i]++;
	h->count++;
	h->sum_us += us;
}

static inline void hist_record(Hist *h, uint64_t us)
{
	hist_record_at(h, hist_bucket(us), us);
}

void hist_add(Hist *dst, const Hist *src);
/* The q-quantile (0..1) in milliseconds, interpolated linearly inside its bucket; 0 when empty. */
double hist_quantile_ms(const Hist *h, double q);

/* Query (one sample per unit: a Query, or a batch up to Sync), transaction and wait times. */
typedef struct StatsHists {
	Hist query;
	Hist xact;
	Hist wait;
} StatsHists;

/* A normalised statement's counters (SHOW QUERIES). */
#define QS_TEXT 256
typedef struct QueryEntry {
	uint64_t fp; /* hash of the normalised text; 0 = free */
	uint64_t calls, errors, rows;
	uint64_t total_us, max_us;
	uint64_t weight; /* space-saving: own total time plus what the entry it replaced had */
	char text[QS_TEXT];
} QueryEntry;

/* ---- data path (client.c, server.c, pool.c) ---- */

/* stats_statements_on(t), in tenant.h (inline: it is asked for every message). */
/* A scratch normaliser for the statement at hand (static storage; one statement at a time). */
struct SqlNorm *stats_norm_begin(void);
/* A Query was forwarded; norm: its normalised text (NULL: not normalised). */
void stats_query_sent(Client *c, const struct SqlNorm *norm);
/* A Parse (forwarded, or answered locally) of statement name with normalised text norm. */
void stats_parse(Client *c, const char *name, const struct SqlNorm *norm);
/* A Bind of statement name; an Execute; a Sync: forwarded to the server. */
void stats_bind(Client *c, const uint8_t *body, size_t len);
void stats_execute_sent(Client *c);
void stats_sync_sent(Client *c);
/* A reply the server sent the client: CommandComplete, EmptyQuery, ErrorResponse, PortalSuspended.
 */
void stats_reply(Client *c, uint8_t type, const uint8_t *body, size_t len);
/* The client's unit was answered with ReadyForQuery status: query and transaction time. */
void stats_unit_answered(Client *c, char status);
/* The client got a server after waiting wait_us (0: at once). */
void stats_waited(Client *c, uint64_t wait_us);
void stats_client_free(Client *c);
void stats_tenant_free(Tenant *t);

/* ---- console, metrics, timers ---- */

/* Every second: the windows of SHOW TOP TENANTS move every 10 s. */
void stats_tick(void);
/* The tenant's statement table sorted by total time (a malloc'ed copy; *n rows); NULL if none. */
QueryEntry *stats_queries_copy(const Tenant *t, int *n);
void stats_queries_reset(Tenant *t);
/* Query and wait time of the last minute (µs) and the queries/waits in it. */
void stats_tenant_window(const Tenant *t, uint64_t *query_us, uint64_t *queries, uint64_t *wait_us,
                         uint64_t *waits);
/* The backend's histograms (NULL before its first sample). */
const StatsHists *stats_backend_hists(const Backend *be);

typedef struct StatsMem {
	int64_t tables;  /* tenants with a statement table */
	int64_t entries; /* statements held */
	int64_t bytes;   /* memory of the tables */
	int64_t limit;   /* query_stats_memory */
	int64_t dropped; /* statements not counted: no room for the tenant's table */
	int64_t clients; /* clients with per-statement state */
	int64_t client_bytes;
} StatsMem;
void stats_mem(StatsMem *m);

#endif
