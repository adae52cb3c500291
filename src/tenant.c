/*
 * tenant: see include/tenant.h.
 *
 * Tenants live in an open hash table keyed by name (10,000 tenants resolve
 * in O(1)). Tenant objects outlive reloads that keep their name, so their
 * counters and their clients' pointers stay valid; a reload only swaps the
 * TenantConf they point at.
 */
#include "tenant.h"

#include "pgtenant.h"
#include "pool.h"

#include <stdlib.h>
#include <string.h>

static Tenant **table;
static size_t table_size; /* power of two */
static int n_tenants;

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
		for (size_t b = 0; old && b < old_size && !t; b++) {
			for (Tenant **pp = &old[b]; *pp; pp = &(*pp)->hash_next) {
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
		t->conf = tc;
		t->disabled = tc->disabled;
		t->pool = NULL; /* recomputed on next use: backend or credentials may have changed */
		size_t slot = hash_name(t->name, strlen(t->name)) & (size - 1);
		t->hash_next = table[slot];
		table[slot] = t;
		n_tenants++;
	}
	/* Tenants that disappeared keep their objects for their connected clients (freed never;
	 * a reload that removes tenants is rare and their clients are closed by the reload). */
	free(old);
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
					if (hl > sl && strcasecmp(q->sni + hl - sl, cfg->sni_suffix) == 0) {
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
			const char *suffix = tenant_user_suffix(q->user, cfg->tenant_separator, &plen);
			if (suffix) {
				t = tenant_lookup(suffix);
				if (t) {
					size_t copy = plen < auth_user_len - 1 ? plen : auth_user_len - 1;
					memcpy(auth_user, q->user, copy);
					auth_user[copy] = '\0';
				} else if (!*unknown_name) {
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
		if (!chosen)
			chosen = t;
		else if (chosen != t)
			mismatch = true;
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
	Backend *be;
	const BackendConf *bc = NULL;

	if (t->pool)
		return t->pool;
	be = pool_backend(tc->backend);
	for (int i = 0; i < g_cfg->n_backends; i++)
		if (strcmp(g_cfg->backends[i].name, tc->backend) == 0)
			bc = &g_cfg->backends[i];
	if (!be || !bc)
		return NULL;

	const char *server_user = tc->server_user ? tc->server_user : bc->user ? bc->user : user;
	const char *password = NULL;
	if (tc->server_user)
		password = tc->server_password;
	else if (bc->user)
		password = bc->password;
	if (!password && g_auth)
		password = authfile_lookup(g_auth, server_user);
	const char *dbname = (tc->mode == TENANT_MODE_DATABASE && tc->dbname) ? tc->dbname
			     : bc->dbname				     ? bc->dbname
									     : server_user;
	Pool *p = pool_get(be, dbname, server_user, password);
	/* a pool that depends on the client's own user is not cached on the tenant */
	if (tc->server_user || bc->user)
		t->pool = p;
	return p;
}
