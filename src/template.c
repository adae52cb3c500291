/*
 * template: see include/template.h.
 *
 * Known answers live in a chained hash table by tenant name, at most
 * KNOWN_MAX of them (expired ones go first, then all: the table is a cache,
 * never the truth). A Check is one question in flight, on its Checker's
 * job; a client that leaves takes its Check with it (template_forget), the
 * query's answer is then dropped.
 */
#include "template.h"

#include "auth.h"
#include "log.h"
#include "pgjob.h"
#include "pgtenant.h"
#include "tenant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECKER_IDLE  (10 * USEC_PER_SEC)
#define CHECK_TIMEOUT (10 * USEC_PER_SEC)
#define KNOWN_BUCKETS 16384
#define KNOWN_MAX     65536

typedef struct Checker {
	struct Checker *next;
	char *key; /* host, port, database and role */
	PgJob *job;
	usec_t last_used;
} Checker;

typedef struct Check {
	struct Check *next;
	Checker *ck;
	TemplateDone done;
	void *arg;
	char name[CONFIG_NAME_MAX + 1];
} Check;

typedef struct Known {
	struct Known *next;
	usec_t expires;
	bool exists;
	char name[CONFIG_NAME_MAX + 1];
} Known;

static Checker *checkers;
static Check *checks;
static Known *known[KNOWN_BUCKETS];
static int n_known;

static Known **known_slot(const char *name)
{
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = name; *p; p++) {
		h ^= (uint8_t)*p;
		h *= 1099511628211ULL;
	}
	Known **pp = &known[h & (KNOWN_BUCKETS - 1)];
	while (*pp && strcmp((*pp)->name, name) != 0)
		pp = &(*pp)->next;
	return pp;
}

/* Drops the entries expired by `before` (every one when before is 0). */
static void known_purge(usec_t before)
{
	for (size_t b = 0; b < KNOWN_BUCKETS; b++) {
		for (Known **pp = &known[b]; *pp;) {
			Known *k = *pp;
			if (before && k->expires > before) {
				pp = &k->next;
				continue;
			}
			*pp = k->next;
			free(k);
			n_known--;
		}
	}
}

static void known_put(const char *name, bool exists)
{
	usec_t ttl = exists ? g_cfg->template_cache_ttl : g_cfg->template_negative_ttl;
	Known **pp = known_slot(name);

	if (!*pp && n_known >= KNOWN_MAX) {
		known_purge(g_now);
		if (n_known >= KNOWN_MAX)
			known_purge(0);
		pp = known_slot(name);
	}
	if (!*pp) {
		*pp = xcalloc(1, sizeof(Known));
		strlcpy_safe((*pp)->name, name, sizeof((*pp)->name));
		n_known++;
	}
	(*pp)->exists = exists;
	(*pp)->expires = g_now + ttl;
}

void template_cache_drop(const char *name)
{
	if (!name) {
		known_purge(0);
		return;
	}
	Known **pp = known_slot(name);
	if (*pp) {
		Known *k = *pp;
		*pp = k->next;
		free(k);
		n_known--;
	}
}

static Checker *checker_for(const BackendConf *b, const char *db, const char *role,
                            const char *password)
{
	char key[512];

	snprintf(key, sizeof(key), "%s\n%d\n%s\n%s", b->host, b->port, db ? db : "",
	         role ? role : "");
	Checker *ck = checkers;
	while (ck && strcmp(ck->key, key) != 0)
		ck = ck->next;
	if (ck && pgjob_broken(ck->job) && pgjob_idle(ck->job)) {
		/* a new connection for new questions; the failed one has answered its own */
		pgjob_close(ck->job);
		ck->job = NULL;
	}
	if (!ck) {
		ck = xcalloc(1, sizeof(*ck));
		ck->key = xstrdup(key);
		ck->next = checkers;
		checkers = ck;
	}
	if (!ck->job)
		ck->job = pgjob_open(g_cfg, b, db, role, password, "pgtenant template check");
	ck->last_used = g_now;
	return ck;
}

static void check_unlink(Check *chk)
{
	Check **pp = &checks;
	while (*pp != chk)
		pp = &(*pp)->next;
	*pp = chk->next;
}

static void check_answered(void *arg, int ntuples, const char *sqlstate, const char *error)
{
	Check *chk = arg;
	Tenant *t = NULL;

	check_unlink(chk);
	chk->ck->last_used = g_now;
	if (error) {
		log_warning("template: could not check whether tenant \"%s\" exists: %s", chk->name,
		            error);
	} else {
		known_put(chk->name, ntuples > 0);
		/* the configuration may have changed while the question was out */
		const TenantConf *tmpl = config_template_for(g_cfg, chk->name);
		if (ntuples > 0 && tmpl)
			t = tenant_adopt(g_cfg, tmpl, chk->name);
	}
	TemplateDone done = chk->done;
	void *done_arg = chk->arg;
	free(chk);
	done(done_arg, t, error);
}

bool template_check(const char *name, const char *user, TemplateDone done, void *arg)
{
	const TenantConf *tmpl = config_template_for(g_cfg, name);
	Known *k = tmpl ? *known_slot(name) : NULL;

	if (!tmpl || !config_valid_name(name)) {
		done(arg, NULL, NULL);
		return false;
	}
	if (k && k->expires > g_now) {
		done(arg, k->exists ? tenant_adopt(g_cfg, tmpl, name) : NULL, NULL);
		return false;
	}

	/* asked where, and as whom, the tenant's own pool would connect */
	TenantConf *tc = tenant_conf_from_template(tmpl, name);
	const BackendConf *b = config_tenant_backend(g_cfg, tc);
	const char *role = config_tenant_server_user(g_cfg, tc);
	const char *password = role ? config_tenant_server_password(g_cfg, tc) : NULL;
	const char *db = b->dbname, *sql, *param;
	if (!role)
		role = user;
	if (!password && g_auth)
		password = authfile_lookup(g_auth, role);
	switch (tc->mode) {
	case TENANT_MODE_SCHEMA:
		sql = "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1";
		param = config_tenant_schema(tc);
		break;
	case TENANT_MODE_DATABASE:
		sql = "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1";
		param = config_tenant_dbname(g_cfg, tc);
		if (!db)
			db = "postgres";
		break;
	case TENANT_MODE_SHARED:
	default:
		sql = tmpl->exists_query;
		param = config_tenant_id(tc);
		break;
	}
	if (!db)
		db = role;
	Check *chk = xcalloc(1, sizeof(*chk));
	strlcpy_safe(chk->name, name, sizeof(chk->name));
	chk->done = done;
	chk->arg = arg;
	chk->ck = checker_for(b, db, role, password);
	chk->next = checks;
	checks = chk;
	pgjob_run(chk->ck->job, sql, param ? param : "", CHECK_TIMEOUT, check_answered, chk);
	tenant_conf_free(tc);
	return true;
}

void template_forget(void *arg)
{
	for (Check **pp = &checks; *pp;) {
		Check *chk = *pp;
		if (chk->arg != arg) {
			pp = &chk->next;
			continue;
		}
		*pp = chk->next;
		pgjob_forget(chk->ck->job, chk);
		free(chk);
	}
}

void template_maintain(void)
{
	for (Checker **pp = &checkers; *pp;) {
		Checker *ck = *pp;
		if (ck->job && !pgjob_idle(ck->job)) {
			pp = &ck->next;
			continue;
		}
		if (ck->job && !pgjob_broken(ck->job) && g_now - ck->last_used < CHECKER_IDLE) {
			pp = &ck->next;
			continue;
		}
		*pp = ck->next;
		pgjob_close(ck->job);
		free(ck->key);
		free(ck);
	}
}
