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

struct Backend {
	char *name;
	char *host;
	int port;
	int pool_size; /* all server connections to the primary together */
	int min_pool_size;
	int n_servers;
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
	char *dbname;
	char *user;
	char *password; /* NULL: none known (trust) */

	List idle;        /* ServerConn SV_IDLE, most recently used last */
	List active;      /* ServerConn SV_ACTIVE (linked to a client) */
	List login;       /* ServerConn SV_CONNECTING / SV_LOGIN */
	List busy;        /* ServerConn SV_RESET / SV_CANCEL_WAIT: no client, not reusable yet */
	List waiting;     /* Client CL_WAITING, FIFO (timeouts, SHOW); hand-out goes by ring */
	List ring;        /* TenantQueue with waiting clients */
	List welcome_wait; /* Client CL_WELCOME_WAIT: logged in, waiting for the server's parameters */

	int n_servers; /* on any list above */
	int n_waiting;
	int n_linked;       /* servers linked to clients */
	int reserved_total; /* sum of reserved_conns of the tenants using this pool */
	int reserved_used;  /* sum over those tenants of min(linked servers, reserved_conns) */

	Params welcome; /* ParameterStatus values of a fresh server connection */
	bool welcome_ready;
	uint32_t welcome_fail_generation;

	bool has_shared;        /* shared-mode (RLS) tenants use this pool */
	char rls_refusal[320];  /* why shared tenants may not use this role (empty: they may) */

	usec_t next_connect_at; /* login retry back-off */
	bool failing;           /* the last connect or login failed */
	char last_error[256];
};

extern List g_pools;

void pool_backends_build(const Config *cfg);
Backend *pool_backend(const char *name);
/* Finds or creates the pool for (backend, dbname, user). */
Pool *pool_get(Backend *be, const char *dbname, const char *user, const char *password);

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
