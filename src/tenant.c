/*
 * tenant: see include/tenant.h.
 *
 * Tenants live in an open hash table keyed by name (10,000 tenants resolve
 * in O(1)). Tenant objects outlive reloads that keep their name, so their
 * counters and their clients' pointers stay valid; a reload only swaps the
 * TenantConf they point at.
 */
#include "tenant.h"

#include "control.h"
#include "log.h"
#include "param.h"
#include "pgtenant.h"
#include "pool.h"
#include "pktbuf.h"
#include "stats.h"

#include <stdlib.h>
#include <string.h>

static Tenant **table;
static size_t table_size; /* power of two */
static int n_tenants;

/* A removed tenant's object, at exit (clients may point at it until then). */
static void tenant_release(void *p)
{
	Tenant *t = p;
	struct TenantQueue *q = t->queues;
	while (q) {
		struct TenantQueue *next = q->next;
		free(q);
		q = next;
	}
	stats_tenant_free(t);
	free((void *)t->state.sql);
	free((void *)t->state.msgs);
	free(t->name);
	free(t);
}

static uint64_t hash_name(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static Tenant *lookup_n(const char *name, size_t n)
{
	if (!table)
		return NULL;
	for (Tenant *t = table[hash_name(name, n) & (table_size - 1)]; t; t = t->hash_next)
		if (strlen(t->name) == n && memcmp(t->name, name, n) == 0)
			return t;
	return NULL;
}

Tenant *tenant_lookup(const char *name)
{
	return lookup_n(name, strlen(name));
}

int tenant_count(void)
{
	return n_tenants;
}

void tenant_foreach(void (*fn)(Tenant *t, void *arg), void *arg)
{
	for (size_t i = 0; i < table_size; i++)
		for (Tenant *t = table[i]; t; t = t->hash_next)
			fn(t, arg);
}

TenantState g_neutral_state;

/* Appends Parse/Bind/Execute of sql (unnamed statement and portal, no parameters). */
static void put_pbe(Buf *b, const char *sql)
{
	size_t start;
	pkt_begin(b, 'P', &start);
	pkt_put_cstr(b, "");
	pkt_put_cstr(b, sql);
	pkt_put_u16(b, 0);
	pkt_finish(b, start);
	pkt_begin(b, 'B', &start);
	pkt_put_cstr(b, "");
	pkt_put_cstr(b, "");
	pkt_put_u16(b, 0);
	pkt_put_u16(b, 0);
	pkt_put_u16(b, 0);
	pkt_finish(b, start);
	pkt_begin(b, 'E', &start);
	pkt_put_cstr(b, "");
	pkt_put_u32(b, 0);
	pkt_finish(b, start);
}

/*
 * The state statement sets both halves of a state, so no tenant inherits the
 * other half from the tenant before it: search_path (the tenant's schema, or
 * NULL = the session default) and tenant_guc (the tenant's id, or NULL = its
 * default). A schema tenant's statement also casts its schema to
 * regnamespace: a missing schema fails the block (3F000) instead of falling
 * through to shared_schemas.
 */
/* v as an SQL literal; NULL (set_config's "back to the session default") when absent. */
static void literal_or_null(Buf *b, const char *v)
{
	if (v)
		param_quote_literal(b, v);
	else
		buf_puts(b, "NULL");
}

static void state_build(TenantState *st, const Config *cfg, const char *search_path,
                        const char *schema, const char *tenant_id)
{
	Buf sql, msgs;

	buf_init(&sql);
	buf_puts(&sql, "SELECT pg_catalog.set_config('search_path', ");
	literal_or_null(&sql, search_path);
	buf_puts(&sql, ", false), pg_catalog.set_config(");
	param_quote_literal(&sql, cfg->tenant_guc);
	buf_puts(&sql, ", ");
	literal_or_null(&sql, tenant_id);
	buf_puts(&sql, ", false)");
	if (schema) {
		Buf ident;
		buf_init(&ident);
		param_quote_ident(&ident, schema);
		buf_append(&ident, "", 1);
		buf_puts(&sql, ", ");
		param_quote_literal(&sql, (const char *)ident.data);
		buf_puts(&sql, "::pg_catalog.regnamespace");
		buf_free(&ident);
	}
	buf_append(&sql, "", 1);

	buf_init(&msgs);
	put_pbe(&msgs, "BEGIN");
	put_pbe(&msgs, (const char *)sql.data);
	put_pbe(&msgs, "COMMIT");

	/* The old text is kept: servers may still compare against it after a reload. */
	retire((void *)st->sql, NULL);
	retire((void *)st->msgs, NULL);
	st->sql = (const char *)sql.data;
	st->hash = hash_name(st->sql, strlen(st->sql));
	st->msgs = msgs.data;
	st->msgs_len = msgs.len;
}

void tenant_search_path(const TenantConf *tc, Buf *path)
{
	/* schema, then shared_schemas, then pg_temp (no temporary table shadows a tenant's) */
	const char *shared = config_tenant_shared_schemas(tc);
	buf_init(path);
	param_quote_ident(path, config_tenant_schema(tc));
	char *list = xstrdup(shared ? shared : "");
	char *save = NULL;
	for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		while (*item == ' ' || *item == '\t')
			item++;
		char *end = item + strlen(item);
		while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (!*item)
			continue;
		buf_append(path, ", ", 2);
		param_quote_ident(path, item);
	}
	free(list);
	buf_append(path, ", pg_temp", 10);
}

/* t's state (SPEC §4): none in database mode. */
static void build_state(Tenant *t, const Config *cfg)
{
	const TenantConf *tc = t->conf;

	if (tc->mode == TENANT_MODE_DATABASE) {
		retire((void *)t->state.sql, NULL);
		retire((void *)t->state.msgs, NULL);
		memset(&t->state, 0, sizeof(t->state));
		return;
	}
	if (tc->mode == TENANT_MODE_SHARED) {
		state_build(&t->state, cfg, NULL, NULL, config_tenant_id(tc));
		return;
	}
	Buf path;
	tenant_search_path(tc, &path);
	state_build(&t->state, cfg, (const char *)path.data, config_tenant_schema(tc), NULL);
	buf_free(&path);
}

typedef struct PoolKey {
	uint64_t hash;
	Tenant *t;
} PoolKey;

static int cmp_pool_key(const void *a, const void *b)
{
	uint64_t x = ((const PoolKey *)a)->hash, y = ((const PoolKey *)b)->hash;
	return x < y ? -1 : x > y;
}

/*
 * Database-mode tenants whose pool another tenant shares (same backend, database
 * and role) need their statements analysed in transaction mode, so session state
 * one leaves behind is wiped before the other gets the connection. A tenant with
 * a pool of its own skips the lexer altogether.
 */
static void mark_shared_pools(const Config *cfg)
{
	PoolKey *keys = xmalloc(sizeof(PoolKey) * (size_t)(cfg->n_tenants + 1));
	int n = 0;
	for (int i = 0; i < cfg->n_tenants; i++) {
		const TenantConf *tc = &cfg->tenants[i];
		Tenant *t = tenant_lookup(tc->name);
		if (!t || tc->mode != TENANT_MODE_DATABASE ||
		    config_tenant_pool_mode(cfg, tc) != POOL_MODE_TRANSACTION)
			continue;
		const BackendConf *bc = config_tenant_backend(cfg, tc);
		const char *db = config_tenant_dbname(cfg, tc);
		const char *user = config_tenant_server_user(cfg, tc);
		if (!db)
			db = "";
		if (!user)
			user = "";
		uint64_t h = hash_name(bc->name, strlen(bc->name));
		h = hash_name(db, strlen(db)) ^ (h * 31);
		h = hash_name(user, strlen(user)) ^ (h * 31);
		keys[n++] = (PoolKey){h, t};
	}
	qsort(keys, (size_t)n, sizeof(PoolKey), cmp_pool_key);
	for (int i = 0; i < n; i++) {
		bool shared = (i > 0 && keys[i - 1].hash == keys[i].hash) ||
		              (i + 1 < n && keys[i + 1].hash == keys[i].hash);
		/* a pool that depends on the client's own user name is shared among users anyway */
		const TenantConf *tc = keys[i].t->conf;
		if (!config_tenant_server_user(cfg, tc))
			shared = true;
		keys[i].t->analyze = shared;
	}
	free(keys);
}

static void resolve_settings(Tenant *t, const Config *cfg)
{
	const TenantConf *tc = t->conf;
	t->pool_size = config_tenant_pool_size(cfg, tc);
	t->reserved_conns = tc->reserved_conns;
	t->weight = tc->weight > 0 ? tc->weight : 1;
	t->rate_limit = tc->rate_limit;
	t->pool_mode = (uint8_t)config_tenant_pool_mode(cfg, tc);
	t->read_routing = (uint8_t)config_tenant_read_routing(cfg, tc);
}

void tenant_resolve_all(const Config *cfg)
{
	for (size_t b = 0; b < table_size; b++)
		for (Tenant *t = table[b]; t; t = t->hash_next)
			resolve_settings(t, cfg);
}

void tenant_registry_build(const Config *cfg)
{
	size_t size = 64;
	while (size < (size_t)cfg->n_tenants * 2)
		size *= 2;
	Tenant **old = table;
	size_t old_size = table_size;

	table = xcalloc(size, sizeof(Tenant *));
	table_size = size;
	n_tenants = 0;
	for (int i = 0; i < cfg->n_tenants; i++) {
		const TenantConf *tc = &cfg->tenants[i];
		Tenant *t = NULL;
		/* keep the object (and its counters) of a tenant that already existed */
		if (old) {
			size_t ob = hash_name(tc->name, strlen(tc->name)) & (old_size - 1);
			for (Tenant **pp = &old[ob]; *pp; pp = &(*pp)->hash_next) {
				if (strcmp((*pp)->name, tc->name) == 0) {
					t = *pp;
					*pp = t->hash_next;
					break;
				}
			}
		}
		if (!t) {
			t = xcalloc(1, sizeof(*t));
			t->name = xstrdup(tc->name);
		}
		t->removed = false;
		t->conf = tc;
		t->disabled = tc->disabled;
		build_state(t, cfg);
		t->analyze =
		        tc->mode != TENANT_MODE_DATABASE; /* database mode: see mark_shared_pools */
		resolve_settings(t, cfg);
		t->pool =
		        NULL; /* recomputed on next use: backend or credentials may have changed */
		size_t slot = hash_name(t->name, strlen(t->name)) & (size - 1);
		t->hash_next = table[slot];
		table[slot] = t;
		n_tenants++;
	}
	/* Tenants that disappeared keep their objects while clients point at them (never freed:
	 * removals are rare); control_reload closes those clients after their transaction. */
	for (size_t b = 0; old && b < old_size; b++) {
		for (Tenant *t = old[b]; t; t = t->hash_next) {
			t->removed = true;
			retire(t, tenant_release);
		}
	}
	free(old);
	mark_shared_pools(cfg);
	state_build(&g_neutral_state, cfg, NULL, NULL, NULL);
}

const char *tenant_user_suffix(const char *user, const char *sep, size_t *prefix_len)
{
	size_t seplen = strlen(sep);
	const char *last = NULL;
	if (!seplen)
		return NULL;
	for (const char *p = strstr(user, sep); p; p = strstr(p + 1, sep))
		last = p;
	if (!last || last == user || !last[seplen])
		return NULL;
	*prefix_len = (size_t)(last - user);
	return last + seplen;
}

TenantResult tenant_resolve(const Config *cfg, const TenantQuery *q, Tenant **out, char *auth_user,
                            size_t auth_user_len, const char **unknown_name, size_t *unknown_len)
{
	Tenant *chosen = NULL;
	bool mismatch = false;

	*out = NULL;
	*unknown_name = NULL;
	*unknown_len = 0;
	strlcpy_safe(auth_user, q->user, auth_user_len);

	for (int i = 0; i < cfg->n_tenant_from; i++) {
		Tenant *t = NULL;
		const char *name = NULL;
		size_t n = 0;

		switch (cfg->tenant_from[i]) {
		case TENANT_SRC_SNI:
			if (q->sni && *q->sni) {
				size_t sl = cfg->sni_suffix ? strlen(cfg->sni_suffix) : 0;
				size_t hl = strlen(q->sni);
				if (sl) {
					if (hl > sl &&
					    strcasecmp(q->sni + hl - sl, cfg->sni_suffix) == 0) {
						name = q->sni;
						n = hl - sl;
					}
				} else {
					const char *dot = strchr(q->sni, '.');
					name = q->sni;
					n = dot ? (size_t)(dot - q->sni) : hl;
				}
				if (name)
					t = lookup_n(name, n);
			}
			break;
		case TENANT_SRC_USER: {
			size_t plen;
			const char *suffix =
			        tenant_user_suffix(q->user, cfg->tenant_separator, &plen);
			if (suffix) {
				/* the part before the separator authenticates, tenant or not (SPEC
				 * §3) */
				size_t copy = plen < auth_user_len - 1 ? plen : auth_user_len - 1;
				memcpy(auth_user, q->user, copy);
				auth_user[copy] = '\0';
				t = tenant_lookup(suffix);
				if (!t && !*unknown_name) {
					*unknown_name = suffix;
					*unknown_len = strlen(suffix);
				}
			}
			break;
		}
		case TENANT_SRC_DATABASE:
			if (q->database)
				t = tenant_lookup(q->database);
			break;
		case TENANT_SRC_OPTIONS:
			if (q->options_tenant) {
				t = tenant_lookup(q->options_tenant);
				if (!t && !*unknown_name) {
					*unknown_name = q->options_tenant;
					*unknown_len = strlen(q->options_tenant);
				}
			}
			break;
		}
		if (!t)
			continue;
		if (!chosen) {
			chosen = t;
		} else if (chosen != t && !mismatch) {
			mismatch = true;
			*unknown_name = t->name;
			*unknown_len = strlen(t->name);
		}
	}
	if (mismatch) {
		*out = chosen;
		return TENANT_MISMATCH;
	}
	if (chosen) {
		*out = chosen;
		return TENANT_OK;
	}
	return *unknown_name ? TENANT_UNKNOWN : TENANT_NONE;
}

Pool *tenant_pool_for(Tenant *t, const char *user)
{
	const TenantConf *tc = t->conf;
	const BackendConf *bc = config_tenant_backend(g_cfg, tc);
	Backend *be;

	if (t->pool)
		return t->pool;
	be = pool_backend(tc->backend);
	if (!be || !bc)
		return NULL;

	/* a configured role (the tenant's or the backend's), else the client's own */
	const char *server_user = config_tenant_server_user(g_cfg, tc);
	const char *password = server_user ? config_tenant_server_password(g_cfg, tc) : NULL;
	if (!server_user)
		server_user = user;
	if (!server_user)
		return NULL; /* the pool depends on the client's user, unknown here */
	if (!password && g_auth)
		password = authfile_lookup(g_auth, server_user);
	const char *dbname =
	        tc->mode == TENANT_MODE_DATABASE ? config_tenant_dbname(g_cfg, tc) : bc->dbname;
	if (!dbname)
		dbname = server_user;
	Pool *p = pool_get(be, NULL, dbname, server_user, password);
	if (tc->mode == TENANT_MODE_SHARED)
		p->has_shared = true;
	if (tc->mode != TENANT_MODE_DATABASE)
		p->needs_state = true;
	/* a pool that depends on the client's own user is not cached on the tenant */
	if (tc->server_user || bc->user)
		t->pool = p;
	return p;
}

static void log_one(Tenant *t, void *arg)
{
	double secs = *(const double *)arg;
	TenantStats *now = &t->stats, *was = &t->logged;
	uint64_t q = now->queries - was->queries, x = now->xacts - was->xacts;
	uint64_t waits = now->waits - was->waits;
	if (!q && !x && now->refused == was->refused && now->auth_failures == was->auth_failures)
		return; /* a tenant without traffic stays out of the log */
	log_info(
	        "stats: tenant %s: %.1f xact/s, %.1f query/s, avg query %llu us, avg wait %llu us, "
	        "%llu timeouts, %llu rate-limited, %llu refused, %llu auth failures, in %llu B, "
	        "out %llu B",
	        t->name, (double)x / secs, (double)q / secs,
	        (unsigned long long)(q ? (now->query_time_us - was->query_time_us) / q : 0),
	        (unsigned long long)(waits ? (now->wait_time_us - was->wait_time_us) / waits : 0),
	        (unsigned long long)(now->query_timeouts - was->query_timeouts),
	        (unsigned long long)(now->rate_limited - was->rate_limited),
	        (unsigned long long)(now->refused - was->refused),
	        (unsigned long long)(now->auth_failures - was->auth_failures),
	        (unsigned long long)(now->bytes_in - was->bytes_in),
	        (unsigned long long)(now->bytes_out - was->bytes_out));
	*was = *now;
}

void tenant_log_stats(usec_t period)
{
	double secs = (double)period / (double)USEC_PER_SEC;
	if (secs <= 0)
		return;
	tenant_foreach(log_one, &secs);
}

bool tenant_take_token(Tenant *t, usec_t *wait_us)
{
	double rate = t->rate_limit;
	/* a tenth of a second of burst: smooth enough, and a sleeping tenant cannot bank a flood */
	double burst = rate * 0.1 > 1.0 ? rate * 0.1 : 1.0;

	if (rate <= 0)
		return true;
	if (t->tokens_at == 0) {
		t->tokens = burst;
	} else {
		t->tokens += (double)(g_now - t->tokens_at) * rate / (double)USEC_PER_SEC;
		if (t->tokens > burst)
			t->tokens = burst;
	}
	t->tokens_at = g_now;
	if (t->tokens >= 1.0) {
		t->tokens -= 1.0;
		return true;
	}
	*wait_us = (usec_t)((1.0 - t->tokens) * (double)USEC_PER_SEC / rate) + 1;
	return false;
}

const char *tenant_mode_name(TenantMode m)
{
	switch (m) {
	case TENANT_MODE_SHARED:
		return "shared";
	case TENANT_MODE_SCHEMA:
		return "schema";
	case TENANT_MODE_DATABASE:
		return "database";
	}
	return "?";
}

const char *tenant_state_name(const Tenant *t)
{
	if (t->disabled)
		return "disabled";
	if (control_is_paused(t))
		return "paused";
	return "active";
}
