/*
 * tenant: the runtime side of [tenant] sections — a hash table by name,
 * the resolution of a client's tenant from its startup packet (SPEC §3),
 * and per-tenant counters.
 */
#ifndef PGTENANT_TENANT_H
#define PGTENANT_TENANT_H

#include "config.h"
#include "list.h"
#include "pgtenant.h"
#include "pool.h"
#include "stats.h"
#include "types.h"

typedef struct TenantStats {
	uint64_t queries;
	uint64_t xacts;
	uint64_t query_time_us;
	uint64_t xact_time_us;
	uint64_t wait_time_us;
	uint64_t waits;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t query_timeouts;
	uint64_t state_failures; /* the tenant state could not be applied (e.g. its schema is
	                            missing) */
	uint64_t rate_limited;
	uint64_t refused; /* logins refused after authentication (disabled, not allowed, limits) */
	uint64_t auth_failures; /* logins that named the tenant and failed authentication */
} TenantStats;

/*
 * A tenant state (search_path and tenant GUC) and the block that commits it:
 * BEGIN, the state statement, COMMIT, as Parse/Bind/Execute each, ready to
 * copy in front of a client's unit (server.c). Old texts stay allocated
 * after a reload (retire): server connections compare against them.
 */
typedef struct TenantState {
	const char *sql;     /* the state statement; NULL: no state (database mode) */
	const uint8_t *msgs; /* the block */
	size_t msgs_len;
	uint64_t hash; /* of sql: compared before the text */
} TenantState;

/* The pool's neutral state: its session defaults (database tenants in a pool shared with others).
 */
extern TenantState g_neutral_state;

struct Tenant {
	/*
	 * What a transaction reads comes first, together: with thousands of tenants
	 * a tenant's memory is cold when its client speaks, and every cache line
	 * touched is a miss. The settings are resolved from conf and the globals
	 * (tenant.c, at every registry build and console SET).
	 *
	 * state: what puts this tenant's state in force on a server connection
	 * (SPEC §4); none in database mode (tenant_state_of gives the neutral one
	 * where the pool is shared with schema or shared tenants).
	 */
	Pool *pool;
	TenantState state;
	struct TenantQueue *queues; /* one per pool this tenant's clients wait on */
	int n_servers;              /* server connections linked to this tenant's clients */
	int pool_size;              /* resolved: the most server connections it may hold */
	int reserved_conns;
	int weight;           /* resolved: at least 1 */
	uint8_t pool_mode;    /* PoolMode, resolved */
	uint8_t read_routing; /* ReadRouting, resolved */
	bool analyze; /* client statements are lexed: guard (schema/shared), session-state marks */
	bool paused;  /* PAUSE: new transactions wait */
	bool disabled;
	bool removed; /* gone from the configuration: clients leave after their transaction */

	/* Then what a transaction writes: its clients by state (kept by client_set_state;
	 * WELCOME_WAIT counts as waiting), and the statistics. */
	int cl_idle;
	int cl_waiting;
	int cl_active;
	int n_clients;
	double rate_limit; /* statements per second, 0 = off */
	TenantStats stats;
	StatsHists hist;        /* query, transaction and wait time (stats.c) */
	struct StatsTenant *sx; /* statement table and TOP TENANTS windows (stats.c), lazily */

	char *name;
	const TenantConf *conf; /* points into g_cfg */
	double tokens;          /* rate_limit token bucket */
	usec_t tokens_at;
	TenantStats logged; /* stats at the last periodic log line */
	Tenant *hash_next;

	/*
	 * A tenant served by a [template] (implicit) has no section: it enters
	 * the table at its first login and leaves it after template_idle_timeout
	 * without clients. Its conf is built from tmpl ({tenant} substituted) and
	 * owned here; explicit tenants have tmpl NULL.
	 */
	const TenantConf *tmpl;
	usec_t idle_since; /* implicit: since when it has had no clients (0: it has some) */
	bool evict_soon;   /* implicit, dropped (DROP TENANT): leaves at the next sweep */
	List implicit_node;
};

/* Why resolution failed; the caller turns it into the SPEC §8 error. */
typedef enum {
	TENANT_OK = 0,
	TENANT_NONE,     /* no source named a tenant: 3D000 */
	TENANT_UNKNOWN,  /* a name that is no tenant: 3D000 */
	TENANT_MISMATCH, /* two sources, two tenants: 28000 */
} TenantResult;

typedef struct TenantQuery {
	const char *user;           /* startup user, as sent */
	const char *database;       /* startup database */
	const char *options_tenant; /* from -c pgtenant.tenant=, or NULL */
	const char *sni;            /* TLS server name, or NULL */
} TenantQuery;

/*
 * (Re)builds the runtime tenant table from cfg; keeps the objects (and counters)
 * of tenants that stay, and marks the ones that went away as removed.
 */
void tenant_registry_build(const Config *cfg);
/* Re-reads every tenant's resolved settings (after a console SET of a global). */
void tenant_resolve_all(const Config *cfg);
Tenant *tenant_lookup(const char *name);
int tenant_count(void);
void tenant_foreach(void (*fn)(Tenant *t, void *arg), void *arg);
/* "shared", "schema" or "database" (SHOW TENANTS, /tenants.json). */
const char *tenant_mode_name(TenantMode m);
/*
 * A schema tenant's search_path as pgtenant sets it, NUL not included:
 * its schema, its shared_schemas, then pg_temp, each a quoted identifier.
 * path is initialised here; the caller frees it.
 */
void tenant_search_path(const TenantConf *tc, Buf *path);
/* "disabled", "paused" or "active". */
const char *tenant_state_name(const Tenant *t);

/*
 * Resolves the tenant of a client. auth_user receives the user name that
 * authenticates (the startup user minus its tenant suffix when the suffix
 * names a tenant). unknown_name points at the offending name: the unknown one for
 * TENANT_UNKNOWN, the second tenant named (out is the first) for TENANT_MISMATCH.
 */
TenantResult tenant_resolve(const Config *cfg, const TenantQuery *q, Tenant **out, char *auth_user,
                            size_t auth_user_len, const char **unknown_name, size_t *unknown_len);

/* The state a client of t must run under on a connection of home (its primary pool); NULL: none. */
static inline const TenantState *tenant_state_of(const Tenant *t, const Pool *home)
{
	if (t->state.sql)
		return &t->state;
	return home && home->needs_state ? &g_neutral_state : NULL;
}

/* The pool a client of t logging in as user uses (created on first use); NULL without credentials.
 */
Pool *tenant_pool_for(Tenant *t, const char *user);

/*
 * Takes one statement token of t's rate_limit bucket; false when the bucket is
 * empty (*wait_us then says when the next token arrives). Always true without a limit.
 */
bool tenant_take_token(Tenant *t, usec_t *wait_us);

/* The periodic per-tenant stats line (every stats_period), for tenants with traffic. */
void tenant_log_stats(usec_t period);

/*
 * The tenant name gets from template tmpl: its TenantConf ({tenant} in schema,
 * dbname, tenant_id and server_user replaced by name), owned by the caller
 * (tenant_conf_free).
 */
TenantConf *tenant_conf_from_template(const TenantConf *tmpl, const char *name);
void tenant_conf_free(TenantConf *tc);
/*
 * The implicit tenant name served by tmpl (a template of cfg), put in the
 * table if it is not there yet; the same isolation as an explicit tenant
 * (its state is built the same way).
 */
Tenant *tenant_adopt(const Config *cfg, const TenantConf *tmpl, const char *name);
/* Frees implicit tenants that nothing has used for template_idle_timeout (the main tick). */
void tenant_sweep_idle(void);
/* An implicit tenant whose data is gone leaves memory as soon as nothing uses it. */
void tenant_evict_soon(Tenant *t);
/* Implicit tenants in memory. */
int tenant_implicit_count(void);

/* Is anything per statement wanted for this tenant (statement statistics or the slow log)? */
static inline bool stats_statements_on(const Tenant *t)
{
	return g_cfg->query_stats || config_tenant_log_min_duration(g_cfg, t->conf) >= 0;
}

/* Splits user at the last tenant_separator: returns the suffix or NULL. */
const char *tenant_user_suffix(const char *user, const char *sep, size_t *prefix_len);

#endif
