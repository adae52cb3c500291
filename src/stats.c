/*
 * stats: see include/stats.h.
 *
 * Per client, a small ring of the statements sent and not yet answered, in
 * the order PostgreSQL answers them: a Query completes at its ReadyForQuery
 * (its CommandCompletes add rows), an Execute at its CommandComplete,
 * EmptyQueryResponse, PortalSuspended or ErrorResponse; a Sync marks where a
 * batch ends, and the ReadyForQuery that answers it drops what PostgreSQL
 * skipped after an error. A statement's server time runs from when it was
 * sent or the previous one finished, whichever is later.
 *
 * Per tenant, a table of normalised statements: an array of at most
 * query_stats_max entries and an open-addressing index of twice that size
 * (linear probing, backward-shift deletion). All tables together stay under
 * query_stats_memory: a tenant whose table cannot be created or grown keeps
 * what it has (or counts its statements as dropped).
 */
#include "stats.h"

#include "client.h"
#include "config.h"
#include "log.h"
#include "pgtenant.h"
#include "pool.h"
#include "sqllex.h"
#include "tenant.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

const uint64_t hist_bounds_us[HIST_BOUNDS] = {
        100,    200,    500,    1000,    2000,    5000,    10000,    20000,    50000,
        100000, 200000, 500000, 1000000, 2000000, 5000000, 10000000, 20000000, 30000000,
};

uint8_t hist_from[64];

__attribute__((constructor)) static void hist_from_build(void)
{
	for (int k = 0; k < 64; k++) {
		int i = 0;
		while (i < HIST_BOUNDS && hist_bounds_us[i] < (1ULL << k))
			i++;
		hist_from[k] = (uint8_t)i;
	}
}

void hist_add(Hist *dst, const Hist *src)
{
	dst->count += src->count;
	dst->sum_us += src->sum_us;
	for (int i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
}

double hist_quantile_ms(const Hist *h, double q)
{
	uint64_t seen = 0;
	double rank;

	if (!h->count)
		return 0;
	rank = q * (double)h->count;
	for (int i = 0; i < HIST_BUCKETS; i++) {
		if (!h->b[i] || (double)(seen + h->b[i]) < rank) {
			seen += h->b[i];
			continue;
		}
		double lo = i ? (double)hist_bounds_us[i - 1] : 0;
		if (i == HIST_BOUNDS)
			return lo / 1000.0; /* +Inf: the last finite bound is all one can say */
		double hi = (double)hist_bounds_us[i];
		double frac = (rank - (double)seen) / (double)h->b[i];
		if (frac < 0)
			frac = 0;
		return (lo + (hi - lo) * frac) / 1000.0;
	}
	return (double)hist_bounds_us[HIST_BOUNDS - 1] / 1000.0;
}

/* ------------------------------------------------------------------------------------------
 * Per-tenant statement tables.
 */

#define WINDOW_SLOTS   7 /* 10-second snapshots: the oldest is a minute old */
#define WINDOW_STEP_US (10 * USEC_PER_SEC)
#define TABLE_MIN      8

typedef struct StatsTenant {
	QueryEntry *e; /* cap entries, n used */
	uint32_t *idx; /* entry index + 1, 0 = empty; idx_mask + 1 slots */
	uint32_t idx_mask;
	int n, cap;
	bool full; /* no room in query_stats_memory to grow */
	/* SHOW TOP TENANTS: cumulative query/wait time and counts at each 10 s step */
	uint64_t q_us[WINDOW_SLOTS], q_n[WINDOW_SLOTS], w_us[WINDOW_SLOTS], w_n[WINDOW_SLOTS];
	uint8_t win_pos;
	uint8_t win_filled;
} StatsTenant;

#define PEND_SLOTS 16

enum { PEND_QUERY = 1, PEND_EXECUTE, PEND_SYNC };

typedef struct Pending {
	uint64_t fp;    /* 0: not normalised (statement statistics off) */
	usec_t sent;    /* when it went to the server */
	usec_t wait_us; /* how long its unit waited for a server */
	uint64_t rows;
	uint8_t kind;
	bool error;
} Pending;

#define NAMED_SLOTS 16

/*
 * Every statement of a client touches its StatsClient, which is cold by then (other
 * clients ran in between): sampled in place, the misses on it were most of what
 * statistics cost. So what a simple Query touches, the ring's bookkeeping and its
 * first slot (an empty ring starts over at slot 0), shares the first cache line,
 * and the struct is allocated on a line.
 */
typedef struct StatsClient {
	uint8_t head, n;
	bool lost;        /* the ring overflowed: resynchronised at the next ReadyForQuery */
	usec_t last_done; /* the previous statement of the unit finished then */
	usec_t wait_us;   /* the current unit's wait for a server */
	Pending ring[PEND_SLOTS];
	uint64_t unnamed_fp; /* the unnamed prepared statement's */
	uint64_t bound_fp;   /* the last Bind's statement's: what an Execute runs */
	struct {
		uint64_t name_hash;
		uint64_t fp;
	} named[NAMED_SLOTS]; /* direct-mapped by name: a collision forgets the older name */
} StatsClient;

#define STATS_LINE 64
_Static_assert(offsetof(StatsClient, ring) + sizeof(Pending) <= STATS_LINE,
               "a simple Query's statistics fit one cache line");

static int64_t mem_used;    /* bytes of all tables */
static int64_t mem_tables;  /* tenants with a table */
static int64_t mem_entries; /* entries in use */
static int64_t mem_dropped; /* statements of tenants without room */
static int64_t mem_clients; /* clients with a StatsClient */

static int64_t table_bytes(int cap)
{
	return (int64_t)cap * (int64_t)sizeof(QueryEntry) +
	       (int64_t)cap * 2 * (int64_t)sizeof(uint32_t);
}

static StatsTenant *tenant_sx(Tenant *t)
{
	if (!t->sx)
		t->sx = xcalloc(1, sizeof(StatsTenant));
	return t->sx;
}

static void index_put(StatsTenant *x, uint32_t i)
{
	uint32_t h = (uint32_t)x->e[i].fp & x->idx_mask;
	while (x->idx[h])
		h = (h + 1) & x->idx_mask;
	x->idx[h] = i + 1;
}

static int index_find(const StatsTenant *x, uint64_t fp, uint32_t *slot)
{
	if (!x->idx)
		return -1;
	uint32_t h = (uint32_t)fp & x->idx_mask;
	while (x->idx[h]) {
		uint32_t i = x->idx[h] - 1;
		if (x->e[i].fp == fp) {
			if (slot)
				*slot = h;
			return (int)i;
		}
		h = (h + 1) & x->idx_mask;
	}
	return -1;
}

/* Linear probing's deletion: later entries of the cluster move back into the hole. */
static void index_del(StatsTenant *x, uint32_t hole)
{
	uint32_t j = hole;
	x->idx[hole] = 0;
	for (;;) {
		j = (j + 1) & x->idx_mask;
		if (!x->idx[j])
			return;
		uint32_t home = (uint32_t)x->e[x->idx[j] - 1].fp & x->idx_mask;
		/* may j's entry move to the hole? only when its home is not within (hole, j] */
		bool between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
		if (!between) {
			x->idx[hole] = x->idx[j];
			x->idx[j] = 0;
			hole = j;
		}
	}
}

static bool table_grow(StatsTenant *x)
{
	int max = g_cfg->query_stats_max;
	int cap = x->cap ? x->cap * 2 : TABLE_MIN;

	if (cap > max)
		cap = max;
	if (cap <= x->cap || x->full)
		return false;
	int64_t more = table_bytes(cap) - table_bytes(x->cap);
	if (mem_used + more > g_cfg->query_stats_memory) {
		x->full = true;
		return false;
	}
	uint32_t slots = 1;
	while (slots < (uint32_t)cap * 2)
		slots <<= 1;
	if (!x->cap)
		mem_tables++;
	mem_used += more;
	x->e = xrealloc(x->e, (size_t)cap * sizeof(QueryEntry));
	memset(x->e + x->cap, 0, (size_t)(cap - x->cap) * sizeof(QueryEntry));
	free(x->idx);
	x->idx = xcalloc(slots, sizeof(uint32_t));
	x->idx_mask = slots - 1;
	x->cap = cap;
	for (int i = 0; i < x->n; i++)
		index_put(x, (uint32_t)i);
	return true;
}

/* The entry of fp, made (or recycled: space-saving) from norm when missing; NULL when no room. */
static QueryEntry *table_entry(Tenant *t, uint64_t fp, const SqlNorm *norm)
{
	StatsTenant *x = tenant_sx(t);
	int i = index_find(x, fp, NULL);
	QueryEntry *e;

	if (i >= 0)
		return &x->e[i];
	if (!norm)
		return NULL;
	if (x->n == x->cap && !table_grow(x) && x->n == 0) {
		mem_dropped++;
		return NULL;
	}
	/* a reload may have lowered query_stats_max below what the table holds: recycle */
	if (x->n < x->cap && x->n < g_cfg->query_stats_max) {
		e = &x->e[x->n];
		memset(e, 0, sizeof(*e));
		e->fp = fp;
		index_put(x, (uint32_t)x->n++);
		mem_entries++;
	} else {
		/* full: the lightest statement gives its place, and its weight, to the new one */
		int min = 0;
		for (int k = 1; k < x->n; k++)
			if (x->e[k].weight < x->e[min].weight)
				min = k;
		uint32_t slot;
		e = &x->e[min];
		if (index_find(x, e->fp, &slot) >= 0)
			index_del(x, slot);
		uint64_t inherited = e->weight;
		memset(e, 0, sizeof(*e));
		e->fp = fp;
		e->weight = inherited;
		index_put(x, (uint32_t)min);
	}
	size_t len = norm->len < QS_TEXT - 1 ? norm->len : QS_TEXT - 1;
	memcpy(e->text, norm->buf, len);
	e->text[len] = '\0';
	return e;
}

/* ------------------------------------------------------------------------------------------
 * Data path.
 */

static SqlNorm norm_scratch;

SqlNorm *stats_norm_begin(void)
{
	sql_norm_init(&norm_scratch, NULL, 0); /* the fingerprint only: see statement_fp */
	return &norm_scratch;
}

static StatsClient *client_sx(Client *c)
{
	if (!c->sx) {
		c->sx = xaligned(STATS_LINE, sizeof(StatsClient));
		memset(c->sx, 0, sizeof(StatsClient));
		mem_clients++;
	}
	return c->sx;
}

/* The fingerprint of norm, its entry made now so an Execute later finds it; 0 when off. */
static uint64_t statement_fp(Client *c, const SqlNorm *norm)
{
	if (!norm || !g_cfg->query_stats)
		return 0;
	uint64_t fp = norm->hash ? norm->hash : 1;
	if (c->tenant->sx && index_find(c->tenant->sx, fp, NULL) >= 0)
		return fp;
	/* a statement not in the table: its text is written now, from the same tokens */
	static char text[QS_TEXT]; /* what an entry keeps, "..." included */
	SqlNorm full;
	sql_norm_init(&full, text, sizeof(text));
	sql_normalize(norm->sql, norm->sql_len, &full);
	assert((full.hash ? full.hash : 1) == fp);
	table_entry(c->tenant, fp, &full);
	return fp;
}

static void pend_push(Client *c, uint8_t kind, uint64_t fp)
{
	StatsClient *x = client_sx(c);
	if (x->n == PEND_SLOTS) {
		x->lost = true;
		return;
	}
	Pending *p = &x->ring[(x->head + x->n++) % PEND_SLOTS];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->fp = fp;
	p->sent = g_now;
	p->wait_us = (usec_t)x->wait_us;
}

static Pending *pend_head(StatsClient *x)
{
	return x && x->n ? &x->ring[x->head] : NULL;
}

static void pend_pop(StatsClient *x)
{
	x->head = (uint8_t)((x->head + 1) % PEND_SLOTS);
	if (--x->n == 0)
		x->head = 0; /* back to the slot in the first cache line */
}

void stats_query_sent(Client *c, const SqlNorm *norm)
{
	pend_push(c, PEND_QUERY, statement_fp(c, norm));
}

static uint64_t name_hash(const char *name)
{
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h | 1;
}

void stats_parse(Client *c, const char *name, const SqlNorm *norm)
{
	StatsClient *x = client_sx(c);
	uint64_t fp = statement_fp(c, norm);

	if (!*name) {
		x->unnamed_fp = fp;
	} else {
		uint64_t h = name_hash(name);
		x->named[h % NAMED_SLOTS].name_hash = h;
		x->named[h % NAMED_SLOTS].fp = fp;
	}
}

void stats_bind(Client *c, const uint8_t *body, size_t len)
{
	StatsClient *x = client_sx(c);
	const uint8_t *nul = memchr(body, 0, len);
	const char *stmt;

	x->bound_fp = 0;
	if (!nul || !memchr(nul + 1, 0, len - (size_t)(nul + 1 - body)))
		return;
	stmt = (const char *)nul + 1;
	if (!*stmt) {
		x->bound_fp = x->unnamed_fp;
	} else {
		uint64_t h = name_hash(stmt);
		if (x->named[h % NAMED_SLOTS].name_hash == h)
			x->bound_fp = x->named[h % NAMED_SLOTS].fp;
	}
}

void stats_execute_sent(Client *c)
{
	pend_push(c, PEND_EXECUTE, client_sx(c)->bound_fp);
}

void stats_sync_sent(Client *c)
{
	if (c->sx && c->sx->n)
		pend_push(c, PEND_SYNC, 0);
}

/* The rows of a CommandComplete tag: its last number ("INSERT 0 5", "SELECT 3"). */
static uint64_t tag_rows(const uint8_t *body, size_t len)
{
	size_t end = len;
	uint64_t v = 0, mul = 1;

	while (end && body[end - 1] == 0)
		end--;
	if (!end || body[end - 1] < '0' || body[end - 1] > '9')
		return 0;
	while (end && body[end - 1] >= '0' && body[end - 1] <= '9' && mul <= 1000000000000ULL) {
		v += (uint64_t)(body[end - 1] - '0') * mul;
		mul *= 10;
		end--;
	}
	return v;
}

static void slow_log(Client *c, const Pending *p, usec_t server_us, const QueryEntry *e)
{
	usec_t limit = config_tenant_log_min_duration(g_cfg, c->tenant->conf);
	usec_t total = server_us + p->wait_us;

	if (limit < 0 || total < limit)
		return;
	log_at(LOG_LVL_WARNING,
	       "slow statement: tenant %s: %.3f ms (wait %.3f ms, server %.3f ms)%s, "
	       "%llu rows: %s",
	       c->tenant->name, (double)total / 1000.0, (double)p->wait_us / 1000.0,
	       (double)server_us / 1000.0, p->error ? ", error" : "", (unsigned long long)p->rows,
	       e                    ? e->text
	       : g_cfg->query_stats ? "(text not kept)"
	                            : "(query_stats is off)");
}

/* A statement finished: its entry's counters, and the slow log. */
static void pend_done(Client *c, Pending *p)
{
	StatsClient *x = c->sx;
	usec_t from = p->sent > x->last_done ? p->sent : x->last_done;
	usec_t us = g_now > from ? g_now - from : 0;
	QueryEntry *e = NULL;

	x->last_done = g_now;
	if (p->fp && c->tenant->sx) {
		int i = index_find(c->tenant->sx, p->fp, NULL);
		if (i >= 0) {
			e = &c->tenant->sx->e[i];
			e->calls++;
			e->total_us += (uint64_t)us;
			e->weight += (uint64_t)us + 1;
			if ((uint64_t)us > e->max_us)
				e->max_us = (uint64_t)us;
			e->rows += p->rows;
			if (p->error)
				e->errors++;
		}
	}
	slow_log(c, p, us, e);
}

void stats_reply(Client *c, uint8_t type, const uint8_t *body, size_t len)
{
	StatsClient *x = c->sx;
	Pending *p = pend_head(x);

	/* a Sync marker at the head answers nothing but its ReadyForQuery */
	if (!p || p->kind == PEND_SYNC)
		return;
	if (type == 'C')
		p->rows += tag_rows(body, len);
	else if (type == 'E')
		p->error = true;
	if (p->kind == PEND_EXECUTE) {
		pend_done(c, p);
		pend_pop(x);
	}
}

/* ReadyForQuery: the Query or the batch up to Sync at the head is over. */
static void pend_unit_end(Client *c)
{
	StatsClient *x = c->sx;
	Pending *p;

	if (x->lost) {
		x->n = x->head = 0;
		x->lost = false;
		return;
	}
	while ((p = pend_head(x)) != NULL) {
		uint8_t kind = p->kind;
		if (kind == PEND_QUERY)
			pend_done(c, p);
		/* an Execute still here was skipped after an error: not run, not counted */
		pend_pop(x);
		if (kind != PEND_EXECUTE)
			break;
	}
	x->last_done = 0;
	x->wait_us = 0;
}

static StatsHists *backend_hists(Client *c)
{
	Backend *be = c->pool ? c->pool->backend : NULL;
	if (!be)
		return NULL;
	if (!be->hist)
		be->hist = xcalloc(1, sizeof(StatsHists));
	return be->hist;
}

/* Counts us in the tenant's histogram and, when there is one, the backend's: one bucket search. */
static void record_both(Hist *tenant, Hist *backend, uint64_t us)
{
	int i = hist_bucket(us);
	hist_record_at(tenant, i, us);
	if (backend)
		hist_record_at(backend, i, us);
}

void stats_unit_answered(Client *c, char status)
{
	TenantStats *st = &c->tenant->stats;
	StatsHists *bh = backend_hists(c);
	usec_t unit_start = c->query_start ? c->query_start : g_now;

	if (c->query_start) {
		uint64_t us = (uint64_t)(g_now - c->query_start);
		st->query_time_us += us;
		record_both(&c->tenant->hist.query, bh ? &bh->query : NULL, us);
		c->query_start = 0;
	}
	/* a transaction began with this unit unless one was open already: so an
	 * autocommit statement is a transaction as long as itself */
	if (!c->xact_start)
		c->xact_start = unit_start;
	if (status == 'I') {
		uint64_t us = c->xact_start ? (uint64_t)(g_now - c->xact_start) : 0;
		st->xacts++;
		st->xact_time_us += us;
		record_both(&c->tenant->hist.xact, bh ? &bh->xact : NULL, us);
		c->xact_start = 0;
	}
	if (c->sx)
		pend_unit_end(c);
}

void stats_waited(Client *c, uint64_t wait_us)
{
	StatsHists *bh = backend_hists(c);
	record_both(&c->tenant->hist.wait, bh ? &bh->wait : NULL, wait_us);
	if (c->sx || (wait_us && stats_statements_on(c->tenant)))
		client_sx(c)->wait_us = (usec_t)wait_us;
}

void stats_client_free(Client *c)
{
	if (c->sx) {
		free(c->sx);
		c->sx = NULL;
		mem_clients--;
	}
}

static void table_free(StatsTenant *x)
{
	if (x->cap) {
		mem_used -= table_bytes(x->cap);
		mem_tables--;
		mem_entries -= x->n;
	}
	free(x->e);
	free(x->idx);
	x->e = NULL;
	x->idx = NULL;
	x->n = x->cap = 0;
	x->idx_mask = 0;
	x->full = false;
}

void stats_tenant_free(Tenant *t)
{
	if (t->sx) {
		table_free(t->sx);
		free(t->sx);
		t->sx = NULL;
	}
}

/* ------------------------------------------------------------------------------------------
 * Console, metrics, timers.
 */

static void window_step(Tenant *t, void *arg)
{
	const TenantStats *st = &t->stats;
	StatsTenant *x = t->sx;

	if (!x) {
		if (!st->queries && !st->waits)
			return; /* no traffic yet: nothing to window */
		x = tenant_sx(t);
	}
	x->win_pos = (uint8_t)((x->win_pos + 1) % WINDOW_SLOTS);
	x->q_us[x->win_pos] = st->query_time_us;
	x->q_n[x->win_pos] = st->queries;
	x->w_us[x->win_pos] = st->wait_time_us;
	x->w_n[x->win_pos] = st->waits;
	if (x->win_filled < WINDOW_SLOTS)
		x->win_filled++;
}

void stats_tick(void)
{
	static usec_t last;

	if (last && g_now - last < WINDOW_STEP_US)
		return;
	last = g_now;
	tenant_foreach(window_step, NULL);
}

void stats_tenant_window(const Tenant *t, uint64_t *query_us, uint64_t *queries, uint64_t *wait_us,
                         uint64_t *waits)
{
	const TenantStats *st = &t->stats;
	const StatsTenant *x = t->sx;

	*query_us = st->query_time_us;
	*queries = st->queries;
	*wait_us = st->wait_time_us;
	*waits = st->waits;
	if (!x || x->win_filled < WINDOW_SLOTS)
		return; /* its first snapshot is under a minute old: all its traffic is recent */
	/* the oldest snapshot kept, a minute old */
	int old = (x->win_pos + 1) % WINDOW_SLOTS;
	*query_us -= x->q_us[old];
	*queries -= x->q_n[old];
	*wait_us -= x->w_us[old];
	*waits -= x->w_n[old];
}

static int cmp_total_desc(const void *a, const void *b)
{
	const QueryEntry *x = a, *y = b;
	if (x->total_us != y->total_us)
		return x->total_us > y->total_us ? -1 : 1;
	return x->calls > y->calls ? -1 : x->calls < y->calls ? 1 : 0;
}

QueryEntry *stats_queries_copy(const Tenant *t, int *n)
{
	const StatsTenant *x = t->sx;
	QueryEntry *out;
	int k = 0;

	*n = 0;
	if (!x || !x->n)
		return NULL;
	out = xmalloc((size_t)x->n * sizeof(QueryEntry));
	for (int i = 0; i < x->n; i++)
		if (x->e[i].calls)
			out[k++] = x->e[i];
	qsort(out, (size_t)k, sizeof(QueryEntry), cmp_total_desc);
	*n = k;
	return out;
}

void stats_queries_reset(Tenant *t)
{
	if (t->sx)
		table_free(t->sx);
}

const StatsHists *stats_backend_hists(const Backend *be)
{
	return be->hist;
}

void stats_mem(StatsMem *m)
{
	m->tables = mem_tables;
	m->entries = mem_entries;
	m->bytes = mem_used;
	m->limit = g_cfg->query_stats_memory;
	m->dropped = mem_dropped;
	m->clients = mem_clients;
	m->client_bytes = mem_clients * (int64_t)sizeof(StatsClient);
}
