/*
 * prepare: see include/prepare.h.
 *
 * Invariant: a server's set lists exactly the statements PostgreSQL has under
 * pgtenant's names on that connection — an entry is added when its Parse is
 * sent (pending) and removed again if that Parse is skipped by an error, so a
 * Bind never names a statement the server lacks and pgtenant never prepares
 * one twice.
 */
#include "prepare.h"

#include "client.h"
#include "log.h"
#include "pgtenant.h"
#include "pktbuf.h"
#include "proto.h"
#include "server.h"
#include "sqllex.h"
#include "tenant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

PrepStats g_prep_stats;

struct PreparedStmt {
	PreparedStmt *hash_next;
	uint64_t hash;
	uint64_t id;
	char name[24]; /* server-side name */
	char *query;
	size_t query_len;
	uint8_t *types; /* n_types big-endian OIDs, as the client sent them */
	uint16_t n_types;
	const char *state_sql; /* tenant state it belongs to (NULL: none) */
	unsigned flags;        /* sql_analyze's flags: what running it leaves on a connection */
	int refs;
};

/* ---- the registry of distinct statements ---- */

static PreparedStmt **registry;
static size_t registry_size;
static size_t registry_count;
static uint64_t next_id = 1;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static bool same_state(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void registry_grow(void)
{
	size_t size = registry_size ? registry_size * 2 : 256;
	PreparedStmt **t = xcalloc(size, sizeof(*t));
	for (size_t i = 0; i < registry_size; i++) {
		for (PreparedStmt *p = registry[i], *next; p; p = next) {
			next = p->hash_next;
			p->hash_next = t[p->hash & (size - 1)];
			t[p->hash & (size - 1)] = p;
		}
	}
	free(registry);
	registry = t;
	registry_size = size;
}

static PreparedStmt *stmt_get(const char *query, size_t qlen, const uint8_t *types,
                              uint16_t n_types, const char *state_sql, unsigned flags)
{
	uint64_t h = fnv(1469598103934665603ULL, query, qlen);
	h = fnv(h, types, (size_t)n_types * 4);
	if (state_sql)
		h = fnv(h, state_sql, strlen(state_sql));
	if (registry_size && registry_count < registry_size) {
		for (PreparedStmt *p = registry[h & (registry_size - 1)]; p; p = p->hash_next) {
			if (p->hash == h && p->query_len == qlen && p->n_types == n_types &&
			    memcmp(p->query, query, qlen) == 0 &&
			    memcmp(p->types, types, (size_t)n_types * 4) == 0 &&
			    same_state(p->state_sql, state_sql))
				return p;
		}
	} else {
		registry_grow();
		return stmt_get(query, qlen, types, n_types, state_sql, flags);
	}
	PreparedStmt *p = xcalloc(1, sizeof(*p));
	p->hash = h;
	p->id = next_id++;
	snprintf(p->name, sizeof(p->name), "pgt_%llu", (unsigned long long)p->id);
	p->query = xstrndup(query, qlen);
	p->query_len = qlen;
	p->types = xmalloc((size_t)n_types * 4 + 1);
	memcpy(p->types, types, (size_t)n_types * 4);
	p->n_types = n_types;
	p->state_sql = state_sql;
	p->flags = flags;
	p->hash_next = registry[h & (registry_size - 1)];
	registry[h & (registry_size - 1)] = p;
	registry_count++;
	g_prep_stats.statements = (int)registry_count;
	return p;
}

static void stmt_ref(PreparedStmt *p)
{
	p->refs++;
}

static void stmt_unref(PreparedStmt *p)
{
	if (--p->refs > 0)
		return;
	PreparedStmt **pp = &registry[p->hash & (registry_size - 1)];
	for (; *pp; pp = &(*pp)->hash_next) {
		if (*pp == p) {
			*pp = p->hash_next;
			break;
		}
	}
	registry_count--;
	g_prep_stats.statements = (int)registry_count;
	free(p->query);
	free(p->types);
	free(p);
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (const char *const *)a,
	          y = (uintptr_t) * (const char *const *)b;
	return (x > y) - (x < y);
}

void prep_states_in_use(const char *const *states, int n, bool *used)
{
	for (size_t i = 0; n > 0 && i < registry_size; i++) {
		for (const PreparedStmt *p = registry[i]; p; p = p->hash_next) {
			const char *const *hit;
			if (!p->state_sql)
				continue;
			hit = bsearch(&p->state_sql, states, (size_t)n, sizeof(*states), cmp_ptr);
			if (hit)
				used[hit - states] = true;
		}
	}
}

/* ---- a client's names ---- */

typedef struct NameEntry {
	char *name; /* NULL: empty slot; TOMBSTONE: deleted */
	PreparedStmt *stmt;
	/* the Parse that bound the name, while its batch may still be skipped */
	uint64_t bound_on; /* PrepServer.uid (never reused, unlike a pointer) */
	uint64_t bound_batch;
} NameEntry;

static char tombstone[1];
#define TOMBSTONE tombstone

struct PrepClient {
	NameEntry *slots;
	size_t size; /* power of two */
	size_t used; /* live + tombstones */
	size_t live;
};

static size_t name_hash(const char *s)
{
	return (size_t)fnv(1469598103934665603ULL, s, strlen(s));
}

static NameEntry *name_find(PrepClient *pc, const char *name)
{
	if (!pc || !pc->size)
		return NULL;
	for (size_t i = name_hash(name) & (pc->size - 1), n = 0; n < pc->size;
	     i = (i + 1) & (pc->size - 1), n++) {
		NameEntry *e = &pc->slots[i];
		if (!e->name)
			return NULL;
		if (e->name != TOMBSTONE && strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

static void name_put(PrepClient *pc, const char *name, PreparedStmt *stmt);

static void name_rehash(PrepClient *pc, size_t size)
{
	NameEntry *old = pc->slots;
	size_t old_size = pc->size;
	pc->slots = xcalloc(size, sizeof(NameEntry));
	pc->size = size;
	pc->used = pc->live = 0;
	for (size_t i = 0; i < old_size; i++) {
		if (old[i].name && old[i].name != TOMBSTONE) {
			name_put(pc, old[i].name, old[i].stmt);
			free(old[i].name);
		}
	}
	free(old);
}

static void name_put(PrepClient *pc, const char *name, PreparedStmt *stmt)
{
	if ((pc->used + 1) * 2 > pc->size)
		name_rehash(pc,
		            pc->size ? (pc->live * 4 > pc->size ? pc->size * 2 : pc->size) : 16);
	for (size_t i = name_hash(name) & (pc->size - 1);; i = (i + 1) & (pc->size - 1)) {
		NameEntry *e = &pc->slots[i];
		if (!e->name || e->name == TOMBSTONE) {
			if (!e->name)
				pc->used++;
			e->name = xstrdup(name);
			e->stmt = stmt;
			e->bound_on = 0;
			pc->live++;
			return;
		}
	}
}

static void name_del(PrepClient *pc, NameEntry *e)
{
	stmt_unref(e->stmt);
	free(e->name);
	e->name = TOMBSTONE;
	e->stmt = NULL;
	pc->live--;
}

void prep_client_free(Client *c)
{
	PrepClient *pc = c->prep;
	if (!pc)
		return;
	for (size_t i = 0; i < pc->size; i++)
		if (pc->slots[i].name && pc->slots[i].name != TOMBSTONE)
			name_del(pc, &pc->slots[i]);
	free(pc->slots);
	free(pc);
	c->prep = NULL;
}

/* ---- a server's statements ---- */

typedef struct SrvStmt {
	PreparedStmt *stmt;
	uint64_t last_use;
	uint64_t batch; /* of the Parse while pending */
	bool pending;   /* Parse sent, ParseComplete not yet seen */
} SrvStmt;

/* What the reply to a Parse or Close pgtenant wrote means (Expect.prep). */
typedef enum {
	R_PASS = 0,       /* stands for the client's own Close: forward the reply */
	R_OWN_PARSE,      /* pgtenant's Parse before a Bind/Describe: drop the ParseComplete */
	R_CLIENT_PARSE,   /* the client's Parse renamed: forward the ParseComplete */
	R_CLOSE_AS_PARSE, /* a no-op Close standing for a Parse already done: reply ParseComplete */
	R_OWN_CLOSE,     /* eviction, or clearing a name before its Parse: drop the CloseComplete */
	R_CLOSE_AS_ERROR /* a no-op Close standing for a refused Parse: reply with the error */
} ReplyKind;

typedef enum { REFUSE_LIMIT = 1, REFUSE_EXISTS } RefuseWhy;

/*
 * The statements a server has under pgtenant's names. Replies are matched through
 * the server's reply queue (expect.h); batches are its unit ordinals: a Parse
 * written while units_pushed == n is in batch n, known done once units_done > n.
 */
struct PrepServer {
	SrvStmt *stmts;
	int n, cap;
	uint64_t clock;
	uint64_t uid;
};

static PrepServer *srv(ServerConn *s)
{
	static uint64_t next_uid = 1;
	if (!s->prep) {
		s->prep = xcalloc(1, sizeof(PrepServer));
		s->prep->uid = next_uid++;
	}
	return s->prep;
}

static inline uint64_t batch_now(const ServerConn *s)
{
	return s->ex.units_pushed;
}

static SrvStmt *srv_find(PrepServer *ps, const PreparedStmt *stmt)
{
	for (int i = 0; i < ps->n; i++)
		if (ps->stmts[i].stmt == stmt)
			return &ps->stmts[i];
	return NULL;
}

static void srv_remove(PrepServer *ps, const PreparedStmt *stmt)
{
	for (int i = 0; i < ps->n; i++) {
		if (ps->stmts[i].stmt == stmt) {
			stmt_unref(ps->stmts[i].stmt);
			ps->stmts[i] = ps->stmts[--ps->n];
			return;
		}
	}
}

static void put_close(ServerConn *s, const char *name, uint8_t kind, PreparedStmt *stmt,
                      uint8_t why)
{
	Buf *out = &s->conn.out;
	size_t start;
	pkt_begin(out, 'C', &start);
	pkt_put_u8(out, 'S');
	pkt_put_cstr(out, name);
	pkt_finish(out, start);
	server_expect_own(s, EX_CLOSE, EA_PREP, kind, stmt, NULL, why);
}

/*
 * A Parse of p under its server name, always behind a Close of that name (not an
 * error when missing): whatever an earlier, skipped or failed batch left there, the
 * Parse cannot clash with it.
 */
static void put_parse(ServerConn *s, PreparedStmt *p, uint8_t kind, const char *client_name)
{
	Buf *out = &s->conn.out;
	size_t start;
	put_close(s, p->name, R_OWN_CLOSE, NULL, 0);
	pkt_begin(out, 'P', &start);
	pkt_put_cstr(out, p->name);
	pkt_put_bytes(out, p->query, p->query_len);
	pkt_put_u8(out, 0);
	pkt_put_u16(out, p->n_types);
	pkt_put_bytes(out, p->types, (size_t)p->n_types * 4);
	pkt_finish(out, start);
	server_expect_own(s, EX_PARSE, EA_PREP, kind, p, client_name, 0);
	g_prep_stats.parses_sent++;
}

/* Makes room for one more statement on s, closing the least recently used one. */
static void srv_make_room(ServerConn *s, PrepServer *ps)
{
	int limit = g_cfg->max_prepared_statements > 0 ? g_cfg->max_prepared_statements : 200;
	while (ps->n >= limit) {
		int lru = -1;
		for (int i = 0; i < ps->n; i++)
			if (!ps->stmts[i].pending &&
			    (lru < 0 || ps->stmts[i].last_use < ps->stmts[lru].last_use))
				lru = i;
		if (lru < 0)
			return; /* all pending: let it grow past the limit for this batch */
		put_close(s, ps->stmts[lru].stmt->name, R_OWN_CLOSE, NULL, 0);
		g_prep_stats.evictions++;
		stmt_unref(ps->stmts[lru].stmt);
		ps->stmts[lru] = ps->stmts[--ps->n];
	}
}

/* Prepares p on s in this batch (Close + Parse), recording it as pending. */
static void srv_prepare(ServerConn *s, PrepServer *ps, PreparedStmt *p, uint8_t kind,
                        const char *client_name)
{
	SrvStmt *e = srv_find(ps, p);
	if (!e) {
		srv_make_room(s, ps);
		if (ps->n == ps->cap) {
			ps->cap = ps->cap ? ps->cap * 2 : 16;
			ps->stmts = xrealloc(ps->stmts, sizeof(SrvStmt) * (size_t)ps->cap);
		}
		stmt_ref(p);
		e = &ps->stmts[ps->n++];
		e->stmt = p;
	}
	e->last_use = ++ps->clock;
	e->batch = batch_now(s);
	e->pending = true;
	put_parse(s, p, kind, client_name);
}

/* Is p usable on s without a Parse in this batch? (A Parse pending from an earlier batch may still
 * be skipped.) */
static bool srv_ready(ServerConn *s, PrepServer *ps, PreparedStmt *p)
{
	SrvStmt *e = srv_find(ps, p);
	if (!e || (e->pending && e->batch != batch_now(s)))
		return false;
	e->last_use = ++ps->clock;
	g_prep_stats.hits++;
	return true;
}

/* Makes sure s has p prepared, pipelining a Parse in front if not. */
static void ensure_prepared(ServerConn *s, PreparedStmt *p)
{
	PrepServer *ps = srv(s);
	if (!srv_ready(s, ps, p))
		srv_prepare(s, ps, p, R_OWN_PARSE, NULL);
}

/*
 * Was the name bound by a Parse in an earlier batch on s whose outcome is still
 * unknown? Then the statement is used as that Parse left it: if PostgreSQL
 * skipped the Parse, the Bind fails with 26000 as it would without pgtenant.
 */
static bool name_in_doubt(const NameEntry *e, ServerConn *s)
{
	const PrepServer *ps = s->prep;
	return ps && e->bound_on == ps->uid && e->bound_batch != batch_now(s) &&
	       e->bound_batch >= s->ex.units_done;
}

/* Copies a Bind or Describe with its statement name replaced (the rest as is). */
static void put_renamed(Buf *out, uint8_t type, const uint8_t *head, size_t head_len,
                        const char *name, const uint8_t *tail, size_t tail_len)
{
	size_t start;
	pkt_begin(out, type, &start);
	pkt_put_bytes(out, head, head_len);
	pkt_put_cstr(out, name);
	pkt_put_bytes(out, tail, tail_len);
	pkt_finish(out, start);
}

static int client_limit(void)
{
	return g_cfg->max_client_prepared_statements > 0 ? g_cfg->max_client_prepared_statements
	                                                 : 0;
}

/* DEALLOCATE [PREPARE] name | ALL as a whole simple Query: the names are pgtenant's business. */
static bool parse_deallocate(const char *sql, size_t len, char *name, size_t namelen, bool *all)
{
	const char *p = sql, *end = sql + len;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	if (end - p < 10 || strncasecmp(p, "deallocate", 10) != 0)
		return false;
	p += 10;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n'))
		p++;
	if (end - p >= 8 && strncasecmp(p, "prepare", 7) == 0 && (p[7] == ' ' || p[7] == '\t')) {
		p += 7;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
	}
	size_t n = 0;
	bool quoted = p < end && *p == '"';
	if (quoted)
		p++;
	while (p < end && n < namelen - 1) {
		if (quoted ? *p == '"'
		           : !(*p == '_' || (*p >= '0' && *p <= '9') ||
		               ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')))
			break;
		name[n++] = quoted ? *p : (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
		p++;
	}
	name[n] = '\0';
	if (quoted && p < end && *p == '"')
		p++;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == ';' || *p == '\r'))
		p++;
	if (p != end || !n)
		return false;
	*all = !quoted && strcmp(name, "all") == 0;
	return true;
}

/*
 * DEALLOCATE of one of the client's names, sent as an unnamed Parse (psycopg does):
 * the name is pgtenant's business, and the server statement may serve others. The
 * client's Parse becomes a DEALLOCATE of a statement pgtenant prepares for it just
 * before, so the client still gets ParseComplete, BindComplete and "DEALLOCATE".
 */
static bool deallocate_by_parse(Client *c, ServerConn *s, const char *query)
{
	static const char dummy[] = "pgtenant_deallocate";
	char name[128];
	bool all = false;
	size_t start;
	Buf *out = &s->conn.out;

	if (!parse_deallocate(query, strlen(query), name, sizeof(name), &all) || all)
		return false;
	NameEntry *e = name_find(c->prep, name);
	if (!e)
		return false; /* not ours: PostgreSQL gives its own answer */
	name_del(c->prep, e);
	put_close(s, dummy, R_OWN_CLOSE, NULL, 0);
	pkt_begin(out, 'P', &start);
	pkt_put_cstr(out, dummy);
	pkt_put_cstr(out, "SELECT");
	pkt_put_u16(out, 0);
	pkt_finish(out, start);
	server_expect_own(s, EX_PARSE, EA_PREP, R_OWN_PARSE, NULL, NULL, 0);
	pkt_begin(out, 'P', &start);
	pkt_put_cstr(out, "");
	pkt_put_cstr(out, "DEALLOCATE pgtenant_deallocate");
	pkt_put_u16(out, 0);
	pkt_finish(out, start);
	server_expect_own(s, EX_PARSE, EA_CLIENT, 0, NULL, NULL, 0);
	return true;
}

PrepResult prep_client_message(Client *c, ServerConn *s, uint8_t type, const uint8_t *body,
                               size_t len, unsigned flags)
{
	MsgReader r;
	msg_reader_init(&r, body, len);

	switch (type) {
	case 'Q': {
		char name[128];
		bool all = false;
		if (!prep_query_may_deallocate(body, len))
			return PREP_PASS; /* the common case: not a DEALLOCATE, nothing to scan */
		const uint8_t *nul = memchr(body, 0, len);
		if (!nul || !parse_deallocate((const char *)body, (size_t)(nul - body), name,
		                              sizeof(name), &all))
			return PREP_PASS;
		if (!all && !name_find(c->prep, name))
			return PREP_PASS; /* not ours: PostgreSQL gives its own error */
		if (s && server_busy(s))
			return PREP_PASS; /* replies pending: cannot answer out of order (the
			                   * analysis forgets what DEALLOCATE ALL drops) */
		if (all) {
			prep_client_free(c);
		} else {
			NameEntry *e = name_find(c->prep, name);
			name_del(c->prep, e);
		}
		size_t start;
		pkt_begin(&c->conn.out, 'C', &start);
		pkt_put_cstr(&c->conn.out, all ? "DEALLOCATE ALL" : "DEALLOCATE");
		pkt_finish(&c->conn.out, start);
		proto_ready(&c->conn.out, c->tx_status);
		return PREP_ANSWERED;
	}
	case 'P': {
		const char *name, *query;
		uint16_t n_types;
		const uint8_t *types;
		if (!msg_get_cstr(&r, &name) || !msg_get_cstr(&r, &query) ||
		    !msg_get_u16(&r, &n_types) || !msg_get_bytes(&r, (size_t)n_types * 4, &types))
			return PREP_PASS; /* malformed: let PostgreSQL say so */
		PrepServer *ps = srv(s);
		if (!*name) {
			if (flags & SQLF_DEALLOCATE && c->prep && deallocate_by_parse(c, s, query))
				return PREP_REWRITTEN;
			return PREP_PASS;
		}
		if (!c->prep)
			c->prep = xcalloc(1, sizeof(PrepClient));
		NameEntry *old = name_find(c->prep, name);
		if (old || (client_limit() && (int)c->prep->live >= client_limit())) {
			/* a stand-in Close carries the refusal, so it arrives in order; as in
			 * PostgreSQL, an existing name is an error (42P05) and keeps its statement
			 */
			put_close(s, "pgtenant_noop", R_CLOSE_AS_ERROR, NULL,
			          old ? REFUSE_EXISTS : REFUSE_LIMIT);
			return PREP_REFUSED;
		}
		PreparedStmt *p =
		        stmt_get(query, strlen(query), types, n_types, client_state_sql(c), flags);
		stmt_ref(p);
		name_put(c->prep, name, p);
		NameEntry *bound = name_find(c->prep, name);
		bound->bound_on = ps->uid;
		bound->bound_batch = batch_now(s);
		if (srv_ready(s, ps, p)) {
			Buf *out = &s->conn.out;
			size_t start;
			pkt_begin(out, 'C', &start);
			pkt_put_u8(out, 'S');
			pkt_put_cstr(out, "pgtenant_noop");
			pkt_finish(out, start);
			server_expect_own(s, EX_CLOSE, EA_PREP, R_CLOSE_AS_PARSE, p, name, 0);
		} else {
			srv_prepare(s, ps, p, R_CLIENT_PARSE, name);
		}
		return PREP_REWRITTEN;
	}
	case 'B': {
		const char *portal, *name;
		if (!msg_get_cstr(&r, &portal) || !msg_get_cstr(&r, &name) || !*name)
			return PREP_PASS;
		NameEntry *e = name_find(c->prep, name);
		if (!e)
			return PREP_PASS;
		if (!name_in_doubt(e, s))
			ensure_prepared(s, e->stmt);
		size_t head = strlen(portal) + 1;
		size_t tail = head + strlen(name) + 1;
		put_renamed(&s->conn.out, 'B', body, head, e->stmt->name, body + tail, len - tail);
		server_expect_own(s, EX_BIND, EA_CLIENT, 0, e->stmt, NULL, 0);
		s->last_bound = e->stmt;
		/* what the statement leaves on a connection, wherever it was prepared (SPEC §4) */
		server_statement_flags(s, c->tenant, e->stmt->flags);
		return PREP_REWRITTEN;
	}
	case 'D': {
		uint8_t kind;
		const char *name;
		if (!msg_get_u8(&r, &kind) || kind != 'S' || !msg_get_cstr(&r, &name) || !*name)
			return PREP_PASS;
		NameEntry *e = name_find(c->prep, name);
		if (!e)
			return PREP_PASS;
		if (!name_in_doubt(e, s))
			ensure_prepared(s, e->stmt);
		put_renamed(&s->conn.out, 'D', body, 1, e->stmt->name, NULL, 0);
		server_expect_own(s, EX_DESCRIBE, EA_CLIENT, 0, e->stmt, NULL, 0);
		return PREP_REWRITTEN;
	}
	case 'C': {
		uint8_t kind;
		const char *name;
		if (!msg_get_u8(&r, &kind) || !msg_get_cstr(&r, &name) || kind != 'S' || !*name)
			return PREP_PASS;
		NameEntry *e = name_find(c->prep, name);
		if (e)
			name_del(c->prep, e);
		/* the server keeps its copy for whoever needs it next; the client gets its
		 * CloseComplete */
		put_close(s, "pgtenant_noop", R_PASS, NULL, 0);
		return PREP_REWRITTEN;
	}
	default:
		return PREP_PASS;
	}
}

bool prep_client_parse_only(Client *c, const uint8_t *body, size_t len)
{
	MsgReader r;
	const char *name, *query;
	uint16_t n_types;
	const uint8_t *types;

	msg_reader_init(&r, body, len);
	if (!msg_get_cstr(&r, &name) || !msg_get_cstr(&r, &query) || !msg_get_u16(&r, &n_types) ||
	    !msg_get_bytes(&r, (size_t)n_types * 4, &types) || !*name)
		return false;
	if (!c->prep)
		c->prep = xcalloc(1, sizeof(PrepClient));
	if (name_find(c->prep, name) || (client_limit() && (int)c->prep->live >= client_limit()))
		return false; /* the server path gives the error in order */
	/* only statements that leave nothing behind come here (parse_is_plain): no flags */
	PreparedStmt *p = stmt_get(query, strlen(query), types, n_types, client_state_sql(c), 0);
	stmt_ref(p);
	name_put(c->prep, name, p);
	return true;
}

const char *prep_client_query(const Client *c, const char *name)
{
	NameEntry *e = name_find(c->prep, name);
	return e ? e->stmt->query : NULL;
}

bool prep_on_reply(ServerConn *s, Client *c, const Expect *e, uint8_t type)
{
	PrepServer *ps = s->prep;
	if (e->stmt && (e->prep == R_OWN_PARSE || e->prep == R_CLIENT_PARSE) && ps) {
		SrvStmt *st = srv_find(ps, e->stmt);
		if (st)
			st->pending = false;
	}
	switch (e->prep) {
	case R_PASS:
	case R_CLIENT_PARSE:
		return c == NULL;
	case R_CLOSE_AS_PARSE: {
		static const uint8_t parse_complete[5] = {'1', 0, 0, 0, 4};
		if (c)
			buf_append(&c->conn.out, parse_complete, sizeof(parse_complete));
		return true;
	}
	case R_CLOSE_AS_ERROR:
		if (c && e->why == REFUSE_EXISTS) {
			proto_error(&c->conn.out, "ERROR", "42P05",
			            "prepared statement already exists", NULL);
		} else if (c) {
			char msg[160];
			snprintf(msg, sizeof(msg),
			         "too many prepared statements for this connection "
			         "(max_client_prepared_statements = %d)",
			         client_limit());
			proto_error(&c->conn.out, "ERROR", "53400", msg,
			            "Close or DEALLOCATE statements you no longer use.");
		}
		/* the rest of the batch was held back by the client's prep_skip; its Sync answers
		 */
		return true;
	default:
		return true;
	}
}

void prep_on_skipped(ServerConn *s, const Expect *e)
{
	PrepServer *ps = s->prep;
	if (ps && e->stmt && (e->prep == R_OWN_PARSE || e->prep == R_CLIENT_PARSE)) {
		/* PostgreSQL skipped the Parse: the statement is not there */
		SrvStmt *st = srv_find(ps, e->stmt);
		if (st && st->pending)
			srv_remove(ps, e->stmt);
	}
	if (e->name && s->client && s->client->prep) {
		/* ... nor the client's name it bound (a stand-in Close included) */
		NameEntry *ne = name_find(s->client->prep, e->name);
		if (ne && ne->stmt == e->stmt)
			name_del(s->client->prep, ne);
	}
}

void prep_server_error(ServerConn *s, void *stmt, const uint8_t *body, size_t len)
{
	const char *code, *msg;
	proto_error_fields(body, len, &code, &msg);
	/* the table under a statement changed: PostgreSQL will not run the old plan again; the
	 * next use prepares it afresh (Close + Parse) */
	if (s->prep && code && strcmp(code, "0A000") == 0 && msg &&
	    strstr(msg, "cached plan must not change"))
		srv_remove(s->prep, stmt);
}

bool prep_server_holds(const ServerConn *s)
{
	return s->prep && s->prep->n > 0;
}

void prep_server_reset(ServerConn *s)
{
	PrepServer *ps = s->prep;
	if (!ps)
		return;
	for (int i = 0; i < ps->n; i++)
		stmt_unref(ps->stmts[i].stmt);
	ps->n = 0;
}

void prep_server_free(ServerConn *s)
{
	PrepServer *ps = s->prep;
	if (!ps)
		return;
	prep_server_reset(s);
	free(ps->stmts);
	free(ps);
	s->prep = NULL;
}
