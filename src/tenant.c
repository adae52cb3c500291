/*
 * tenant: see include/tenant.h.
 *
 * Tenants live in an open hash table keyed by name (10,000 tenants resolve
 * in O(1)). Tenant objects outlive reloads that keep their name, so their
 * counters and their clients' pointers stay valid; a reload only swaps the
 * TenantConf they point at.
 */
#include "tenant.h"

#include "client.h"
#include "control.h"
#include "log.h"
#include "param.h"
#include "pgtenant.h"
#include "pool.h"
#include "pktbuf.h"
#include "prepare.h"
#include "server.h"
#include "stats.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static Tenant **table;
static size_t table_size; /* power of two */
static int n_tenants;
static List implicit_tenants = {&implicit_tenants, &implicit_tenants}; /* Tenant.implicit_node */
static int n_implicit;

/* marked_by of a server whose marking tenant has left memory: never anyone's own */
static Tenant tenant_gone;

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
	if (t->tmpl)
		tenant_conf_free((TenantConf *)t->conf);
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

static void table_link(Tenant *t)
{
	size_t slot = hash_name(t->name, strlen(t->name)) & (table_size - 1);
	t->hash_next = table[slot];
	table[slot] = t;
	n_tenants++;
}

static void table_unlink(Tenant *t)
{
	Tenant **pp = &table[hash_name(t->name, strlen(t->name)) & (table_size - 1)];
	while (*pp != t)
		pp = &(*pp)->hash_next;
	*pp = t->hash_next;
	n_tenants--;
}

/* Keeps the table at most half full as implicit tenants come in. */
static void table_make_room(void)
{
	if ((size_t)(n_tenants + 1) * 2 <= table_size)
		return;
	Tenant **old = table;
	size_t old_size = table_size;
	table_size *= 2;
	table = xcalloc(table_size, sizeof(Tenant *));
	n_tenants = 0;
	for (size_t b = 0; b < old_size; b++) {
		for (Tenant *t = old[b], *next; t; t = next) {
			next = t->hash_next;
			table_link(t);
		}
	}
	free(old);
}

/* Settings, state and pool of t from its (new) conf. */
static void tenant_setup(Tenant *t, const Config *cfg, const TenantConf *tc)
{
	t->removed = false;
	t->conf = tc;
	t->disabled = tc->disabled;
	build_state(t, cfg);
	/* database mode: see mark_shared_pools; an implicit one is lexed in any case (its pool
	 * may be shared with its template's other tenants) */
	t->analyze = tc->mode != TENANT_MODE_DATABASE || t->tmpl;
	resolve_settings(t, cfg);
	t->pool = NULL; /* recomputed on next use: backend or credentials may have changed */
}

static char *substitute(const char *v, const char *name)
{
	static const char var[] = "{tenant}";
	const size_t vl = sizeof(var) - 1, nl = strlen(name);
	Buf b;

	if (!v)
		return NULL;
	buf_init(&b);
	for (const char *p = v, *hit; *p; p = hit + vl) {
		hit = strstr(p, var);
		if (!hit) {
			buf_puts(&b, p);
			break;
		}
		buf_append(&b, p, (size_t)(hit - p));
		buf_append(&b, name, nl);
	}
	buf_append(&b, "", 1);
	return (char *)b.data;
}

TenantConf *tenant_conf_from_template(const TenantConf *tmpl, const char *name)
{
	TenantConf *tc = xmalloc(sizeof(*tc));

	assert(tmpl->is_template);
	*tc = *tmpl; /* the other strings are the template's: it outlives its tenants' confs */
	tc->is_template = false;
	tc->match = NULL;
	tc->exists_query = NULL;
	tc->name = xstrdup(name);
	tc->schema = substitute(tmpl->schema, name);
	tc->tenant_id = substitute(tmpl->tenant_id, name);
	tc->dbname = substitute(tmpl->dbname, name);
	tc->server_user = substitute(tmpl->server_user, name);
	return tc;
}

void tenant_conf_free(TenantConf *tc)
{
	if (!tc)
		return;
	free(tc->name);
	free(tc->schema);
	free(tc->tenant_id);
	free(tc->dbname);
	free(tc->server_user);
	free(tc);
}

/* t's conf comes from template tmpl of cfg; the old one is retired (servers' clients may read it).
 */
static void implicit_setup(Tenant *t, const Config *cfg, const TenantConf *tmpl)
{
	const TenantConf *old = t->tmpl ? t->conf : NULL;
	if (!t->tmpl) {
		list_append(&implicit_tenants, &t->implicit_node);
		n_implicit++;
	}
	t->tmpl = tmpl;
	tenant_setup(t, cfg, tenant_conf_from_template(tmpl, t->name));
	if (old)
		retire((void *)old, (void (*)(void *))tenant_conf_free);
}

Tenant *tenant_adopt(const Config *cfg, const TenantConf *tmpl, const char *name)
{
	Tenant *t = tenant_lookup(name);

	if (t)
		return t;
	table_make_room();
	t = xcalloc(1, sizeof(*t));
	t->name = xstrdup(name);
	list_init(&t->implicit_node);
	implicit_setup(t, cfg, tmpl);
	t->idle_since = g_now;
	table_link(t);
	return t;
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
	return (x > y) - (x < y);
}

/* Is p in the array sorted by address? */
static bool among(const void *const *sorted, int n, const void *p)
{
	return p && bsearch(&p, sorted, (size_t)n, sizeof(*sorted), cmp_ptr);
}

/* Nothing may point at t: it is idle, no login, console command or statement refers to it. */
static bool implicit_idle(Tenant *t, usec_t limit)
{
	if (t->n_clients > 0 || t->n_servers > 0 || t->cl_waiting > 0) {
		t->idle_since = 0;
		return false;
	}
	if (!t->idle_since)
		t->idle_since = g_now;
	if (control_waits_on(t))
		return false;
	return t->evict_soon || (g_now - t->idle_since >= limit && !t->paused && !t->disabled);
}

/*
 * Servers may still hold an evicted tenant's state text (committed or in
 * flight) and mark: the state becomes unknown (applied again before use) and
 * the mark one no tenant owns (reset before anyone's use). Both arrays are
 * sorted by address.
 */
static void forget_on_servers(const char *const *states, int n_states, Tenant *const *gone,
                              int n_gone)
{
	List *pit, *it;
	list_for_each(pit, &g_pools)
	{
		Pool *p = list_entry(pit, Pool, node);
		List *lists[] = {&p->idle, &p->active, &p->login, &p->busy};
		for (size_t l = 0; l < ARRAY_SIZE(lists); l++) {
			list_for_each(it, lists[l])
			{
				ServerConn *s = list_entry(it, ServerConn, node);
				if (among((const void *const *)states, n_states, s->st_sql) ||
				    among((const void *const *)states, n_states, s->st_pending_sql))
					server_state_unknown(s);
				if (among((const void *const *)gone, n_gone, s->marked_by))
					s->marked_by = &tenant_gone;
			}
		}
	}
}

void tenant_sweep_idle(void)
{
	usec_t limit = g_cfg->template_idle_timeout;
	Tenant **cand;
	int n = 0;
	List *it;

	if (!n_implicit)
		return;
	/* clients still logging in may point at their tenant */
	list_for_each(it, &g_login_clients)
	{
		Client *c = list_entry(it, Client, node);
		if (c->tenant && c->tenant->tmpl)
			c->tenant->idle_since = 0;
	}
	cand = xmalloc(sizeof(*cand) * (size_t)n_implicit);
	list_for_each(it, &implicit_tenants)
	{
		Tenant *t = list_entry(it, Tenant, implicit_node);
		if (implicit_idle(t, limit))
			cand[n++] = t;
	}
	if (n) {
		/* statements prepared under a tenant's state keep it in memory until they go */
		const char **states = xmalloc(sizeof(*states) * (size_t)n);
		bool *used = xcalloc((size_t)n, sizeof(bool));
		Tenant **by_state = xmalloc(sizeof(*by_state) * (size_t)n);
		for (int i = 0; i < n; i++)
			states[i] = cand[i]->state.sql;
		qsort(states, (size_t)n, sizeof(*states), cmp_ptr);
		prep_states_in_use(states, n, used);
		int kept = 0;
		for (int i = 0; i < n; i++) {
			const char *st = cand[i]->state.sql;
			const char **hit =
			        st ? bsearch(&st, states, (size_t)n, sizeof(*states), cmp_ptr)
			           : NULL;
			if (!hit || !used[hit - states])
				by_state[kept++] = cand[i];
		}
		n = kept;
		memcpy(cand, by_state, sizeof(*cand) * (size_t)n);
		kept = 0;
		for (int i = 0; i < n; i++)
			if (cand[i]->state.sql)
				states[kept++] = cand[i]->state.sql;
		qsort(states, (size_t)kept, sizeof(*states), cmp_ptr);
		qsort(by_state, (size_t)n, sizeof(*by_state), cmp_ptr);
		forget_on_servers(states, kept, by_state, n);
		free(states);
		free(used);
		free(by_state);
	}
	for (int i = 0; i < n; i++) {
		Tenant *t = cand[i];
		log_debug("tenant %s: no clients for %lld s, leaves memory", t->name,
		          (long long)(limit / USEC_PER_SEC));
		table_unlink(t);
		list_del(&t->implicit_node);
		n_implicit--;
		tenant_release(t);
	}
	free(cand);
}

void tenant_evict_soon(Tenant *t)
{
	assert(t->tmpl);
	t->evict_soon = true;
}

int tenant_implicit_count(void)
{
	return n_implicit;
}

void tenant_registry_build(const Config *cfg)
{
	size_t size = 64;
	while (size < ((size_t)cfg->n_tenants + (size_t)n_implicit) * 2)
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
			list_init(&t->implicit_node);
		}
		if (t->tmpl) {
			/* a section now overrides the template that served it */
			retire((void *)t->conf, (void (*)(void *))tenant_conf_free);
			list_del(&t->implicit_node);
			n_implicit--;
			t->tmpl = NULL;
		}
		tenant_setup(t, cfg, tc);
		table_link(t);
	}
	/* Tenants that disappeared keep their objects while clients point at them (never freed:
	 * removals are rare); control_reload closes those clients after their transaction. An
	 * implicit tenant stays while a template of the new file still serves it. */
	for (size_t b = 0; old && b < old_size; b++) {
		for (Tenant *t = old[b], *next; t; t = next) {
			next = t->hash_next;
			const TenantConf *tmpl = t->tmpl ? config_template_for(cfg, t->name) : NULL;
			if (tmpl) {
				implicit_setup(t, cfg, tmpl);
				table_link(t);
				continue;
			}
			if (t->tmpl) {
				list_del(&t->implicit_node);
				n_implicit--;
			}
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
				if (name && !t && !*unknown_name && n <= CONFIG_NAME_MAX) {
					char copy[CONFIG_NAME_MAX + 1];
					memcpy(copy, name, n);
					copy[n] = '\0';
					if (config_template_for(cfg, copy)) {
						*unknown_name = name;
						*unknown_len = n;
					}
				}
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
			/* no tenant of a section: maybe a template's (checked after authentication)
			 */
			if (q->database && !t && !*unknown_name &&
			    config_template_for(cfg, q->database)) {
				*unknown_name = q->database;
				*unknown_len = strlen(q->database);
			}
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
