/*
 * pool: backends and server-connection pools, and the hand-out of server
 * connections to clients.
 *
 * A Pool is one (backend, database, server role). Each server connection
 * is on exactly one of the pool's lists by state; each client that wants a
 * server and has none waits on the pool's waiting list (FIFO). All moves
 * between lists go through pool_*() so counts stay right.
 */
#ifndef PGTENANT_POOL_H
#define PGTENANT_POOL_H

#include "config.h"
#include "list.h"
#include "param.h"
#include "types.h"

typedef enum { REPLICA_UNKNOWN = 0, REPLICA_UP, REPLICA_DOWN, REPLICA_LAGGING } ReplicaState;

/*
 * The pools of one target (a primary or a replica), which share its pool_size, as
 * pool.c looks among them: kept up to date as servers and clients move, so making
 * room or handing a server over never walks every pool (a thousand databases on one
 * saturated backend did, per wait and per returning server).
 */
typedef struct PoolTarget {
	List idle_pools; /* Pool.idle_node: pools with an idle server */
	List wait_pools; /* Pool.wait_node: pools with clients waiting for a server or a welcome,
	                  * in the order they began to wait; those a hand-over looked at go last */
} PoolTarget;

/* A read replica of a backend; objects live as long as the process (pools point at them). */
typedef struct Replica {
	char *host;
	int port;
	int pool_size; /* all server connections to this replica together */
	int n_servers;
	int n_waiting; /* clients of all pools on it waiting for a server or a welcome */
	int inflight;  /* server connections linked to clients: the load measure */
	PoolTarget target;
	ReplicaState state;
	usec_t lag_us;
	usec_t last_check; /* wall clock of the last health result */
	bool configured;   /* still listed in the configuration */
	struct HealthConn *health;
} Replica;

struct Backend {
	char *name;
	char *host;
	int port;
	int pool_size; /* all server connections to the primary together */
	int min_pool_size;
	int n_servers;
	int n_waiting; /* clients of all pools on it waiting for a server or a welcome */
	PoolTarget target;
	Replica **replicas;
	int n_replicas;
	unsigned replica_turn; /* round-robin among replicas equally loaded */
	uint64_t primary_lsn;  /* the primary's WAL flush position at the last health round */
	uint64_t
	        primary_lsn_prev; /* ... and at the round before (at primary_prev_at, wall clock) */
	usec_t primary_prev_at;
	/*
	 * The primary's health (health.c): UNKNOWN until its first check, UP after a
	 * passing check or a server login to it, DOWN after a failing check.
	 */
	ReplicaState primary_state;
	usec_t primary_checked;    /* wall clock of the last check's result */
	usec_t primary_reached_at; /* monotonic: the last server login to the primary */
	char primary_error[256];   /* why the last check failed */
	struct HealthConn *health;
	struct StatsHists *hist; /* query, transaction and wait time of its clients (stats.c) */
	ServerTlsMode server_tls_mode; /* the backend's own, or the global one */
	const char *dbname;            /* for health checks: the backend's credentials */
	const char *user;
	const char *password;
	Backend *next;
};

/*
 * The clients of one tenant waiting on one pool. Queues with waiting clients
 * form the pool's ring, served in weighted round-robin: the queue at the head
 * gets up to `weight` server connections in a row, then goes to the tail.
 */
typedef struct TenantQueue {
	List ring_node;
	List clients; /* Client.queue_node, FIFO */
	Tenant *tenant;
	Pool *pool;
	int n_waiting;
	int credit;
	struct TenantQueue *next; /* the tenant's other queues (one per pool it uses) */
} TenantQueue;

struct Pool {
	List node; /* in g_pools */
	Backend *backend;
	Replica *replica; /* NULL: the primary */
	char *dbname;
	char *user;
	char *password; /* NULL: none known (trust) */

	List idle;         /* ServerConn SV_IDLE, most recently used last */
	List active;       /* ServerConn SV_ACTIVE (linked to a client) */
	List login;        /* ServerConn SV_CONNECTING / SV_LOGIN */
	List busy;         /* ServerConn SV_RESET / SV_CANCEL_WAIT: no client, not reusable yet */
	List waiting;      /* Client CL_WAITING, FIFO (timeouts, SHOW); hand-out goes by ring */
	List ring;         /* TenantQueue with waiting clients */
	List welcome_wait; /* Client CL_WELCOME_WAIT: logged in, waiting for the server's parameters
	                    */

	int n_servers; /* on any list above */
	int n_waiting;
	int n_wait_all;     /* n_waiting and the clients on welcome_wait */
	List idle_node;     /* in its target's idle_pools while idle is not empty */
	List wait_node;     /* in its target's wait_pools while n_wait_all > 0 */
	int n_queues;       /* TenantQueues on ring */
	int n_linked;       /* servers linked to clients */
	int reserved_total; /* sum of reserved_conns of the tenants using this pool */
	int reserved_used;  /* sum over those tenants of min(linked servers, reserved_conns) */

	Params welcome; /* ParameterStatus values of a fresh server connection */
	bool welcome_ready;
	uint32_t welcome_fail_generation;

	bool has_shared;  /* shared-mode (RLS) tenants use this pool */
	bool needs_state; /* schema or shared tenants use it: every unit runs under a tenant state
	                   */
	char rls_refusal[320]; /* why shared tenants may not use this role (empty: they may) */

	usec_t next_connect_at; /* login retry back-off */
	bool failing;           /* the last connect or login failed */
	bool tls_unverified;    /* ... because the backend's certificate did not verify: waiting
	                         * clients get 08006 at once instead of waiting out the back-off */
	char last_error[256];
};

extern List g_pools;

static inline const char *pool_host(const Pool *p)
{
	return p->replica ? p->replica->host : p->backend->host;
}

static inline int pool_port(const Pool *p)
{
	return p->replica ? p->replica->port : p->backend->port;
}

/* The most server connections the pool's target (primary or replica) may have. */
static inline int pool_cap(const Pool *p)
{
	return p->replica ? p->replica->pool_size : p->backend->pool_size;
}

static inline int *pool_target_count(Pool *p)
{
	return p->replica ? &p->replica->n_servers : &p->backend->n_servers;
}

static inline PoolTarget *pool_target(Pool *p)
{
	return p->replica ? &p->replica->target : &p->backend->target;
}

/* p's idle list changed between empty and not: its place in its target's idle_pools. */
static inline void pool_idle_changed(Pool *p)
{
	bool listed = !list_empty(&p->idle_node);
	if (!list_empty(&p->idle) && !listed)
		list_append(&pool_target(p)->idle_pools, &p->idle_node);
	else if (list_empty(&p->idle) && listed)
		list_del(&p->idle_node);
}

/* Clients waiting in every pool on p's target. */
static inline int *pool_target_waiting(Pool *p)
{
	return p->replica ? &p->replica->n_waiting : &p->backend->n_waiting;
}

/* A client of p began (d = 1) or stopped (d = -1) waiting for a server or a welcome. */
static inline void pool_wait_changed(Pool *p, int d)
{
	p->n_wait_all += d;
	*pool_target_waiting(p) += d;
	if (d > 0 && p->n_wait_all == d)
		list_append(&pool_target(p)->wait_pools, &p->wait_node);
	else if (d < 0 && p->n_wait_all == 0)
		list_del(&p->wait_node);
}

void pool_backends_build(const Config *cfg);
Backend *pool_backend(const char *name);
void pool_foreach_backend(void (*fn)(Backend *be, void *arg), void *arg);
/* Finds or creates the pool for (backend or one of its replicas, dbname, user). */
Pool *pool_get(Backend *be, Replica *replica, const char *dbname, const char *user,
               const char *password);
/* The pool on replica r with primary's database and role. */
Pool *pool_replica_of(Pool *primary, Replica *r);
/* The eligible replica with the fewest queries in flight, or NULL (reads go to the primary). */
Replica *pool_pick_replica(Backend *be);

/* The tenant's queue on pool p (created on first use). */
TenantQueue *pool_tenant_queue(Pool *p, Tenant *t);
/* Accounting when a server is linked to / unlinked from a client of t. */
void pool_tenant_linked(Pool *p, Tenant *t);
void pool_tenant_unlinked(Pool *p, Tenant *t);
/* Recomputes reserved_total of every pool from the configuration (after a reload). */
void pool_reservations_build(void);
/* A client needs a server: links one now (true) or queues the client (false). */
bool pool_acquire(Client *c);
/* The client is done with its server (transaction end in transaction mode, or disconnect). */
void pool_release(ServerConn *s);
/* A server finished login, reset or a cancel: hand it to a waiting client or park it idle. */
void pool_server_ready(ServerConn *s);
/* A server connection is gone (its object is freed by the caller). */
void pool_server_gone(ServerConn *s, bool failed_login, const char *why);
/* The client no longer waits (it closed or timed out). */
void pool_unwait(Client *c);
/* Periodic work: timeouts, idle/lifetime closes, connect retries. */
void pool_maintain(void);
/* Opens a server connection when the pool may (size limits, retry back-off). */
void pool_maybe_connect(Pool *p);
/*
 * The health check found be's primary down (why): its pools' logins still in progress
 * end now and their waiting clients get 57P03 at once, not after server_connect_timeout.
 */
void pool_primary_down(Backend *be, const char *why);
/* Stores the parameters of the pool's first logged-in server and welcomes waiting clients. */
void pool_set_welcome(Pool *p, const Params *server_params);
/* Hands idle servers to waiting clients (after RESUME), opening connections if needed. */
void pool_kick(Pool *p);
/* Every server of the pool is closed as soon as it is not in use (RECONNECT, KILL, new address). */
void pool_mark_all_dirty(Pool *p);
/* Closes every server connection (shutdown). */
void pool_close_all(void);
int pool_total_servers(void);

#endif
