/*
 * server: one connection to PostgreSQL — connect, login (trust, cleartext,
 * md5, SCRAM-SHA-256), and the server half of the data path: the tenant
 * state block written ahead of a client's unit, the reply queue every reply
 * is matched against, resets between tenants.
 *
 * States (each maps to one list of the pool; see pool.h):
 *   SV_CONNECTING, SV_LOGIN  pool->login
 *   SV_IDLE                  pool->idle
 *   SV_ACTIVE                pool->active   linked to a client
 *   SV_RESET, SV_CANCEL_WAIT pool->busy     cleaning up, or a cancel in flight
 */
#ifndef PGTENANT_SERVER_H
#define PGTENANT_SERVER_H

#include "conn.h"
#include "expect.h"
#include "list.h"
#include "param.h"
#include "scram.h"
#include "types.h"

/* The state block of a connection (server.c). */
typedef enum {
	BLOCK_NONE = 0,
	BLOCK_PENDING, /* written; its COMMIT's CommandComplete not seen yet */
	BLOCK_FAILED,  /* failed before the client's unit was written whole: recovery waits for the
	                  unit's end */
} ServerBlock;

/* What the reply path does with the replies to one message (Expect.action). */
typedef enum {
	EA_CLIENT = 0,   /* the client's: forward */
	EA_OWN,          /* pgtenant's: drop */
	EA_BLOCK,        /* the state block: drop; an error fails the block */
	EA_BLOCK_COMMIT, /* the block's COMMIT: its CommandComplete commits the state */
	EA_ZI,     /* after a failed block: drop, but ReadyForQuery goes to the client, as idle */
	EA_PARAMS, /* the client's parameters as SETs: an error is the client's FATAL */
	EA_RESET,  /* a reset without a client: an error closes the connection */
	EA_PREP,   /* a Parse or Close prepare.c wrote: it decides */
} ExpectAction;

typedef enum {
	SV_FREE = 0,
	SV_CONNECTING,
	SV_LOGIN,
	SV_IDLE,
	SV_ACTIVE,
	SV_RESET,
	SV_CANCEL_WAIT,
} ServerState;

struct ServerConn {
	List node;
	ServerState state;
	Conn conn;
	Pool *pool;
	Client *client;
	Tenant *tenant; /* tenant of the linked client, for per-tenant counts */

	uint32_t be_pid;
	uint32_t be_key;
	Params params; /* what this connection has now */
	/* the client params last synced here, and the versions then: unchanged means no SET */
	uint64_t synced_client_version;
	uint64_t synced_server_version;

	ExpectQueue ex; /* replies owed, in wire order (expect.h): the only record of what is in
	                   flight */
	size_t fwd_remain;
	bool fwd_drop;  /* the message being streamed is dropped, not forwarded */
	char tx_status; /* of the last ReadyForQuery */
	bool dirty;     /* state unknown: close instead of reusing */
	bool bp_paused; /* not reading: the client's output buffer is full */
	bool unit_open; /* the client wrote part of a unit whose end (Sync, Query, FunctionCall) has
	                   not gone */
	bool client_held; /* the client's next unit waits for the block's outcome or the units in
	                     flight */
	uint8_t block;    /* ServerBlock: the state block in flight */

	/*
	 * Tenant state (SPEC §4): st_sql is the state committed on this connection,
	 * NULL when unknown. It is set only by the CommandComplete of the COMMIT
	 * that ends a state block, and cleared by anything that may change it.
	 */
	const char *st_sql;
	uint64_t st_hash;
	const char *st_pending_sql; /* what the block in flight commits */
	uint64_t st_pending_hash;
	const Tenant *
	        marked_by; /* session state left by this tenant's statements (reset before reuse) */
	struct PreparedStmt
	        *last_bound; /* statement of the client's last Bind here (stale plans, prepare.c) */

	struct PrepServer *prep; /* statements prepared here and the reply queues (prepare.c) */
	int cancels_in_flight;
	usec_t busy_since;   /* the oldest unanswered unit was sent then (query_timeout) */
	usec_t idle_since;   /* last ReadyForQuery to the client (idle_transaction_timeout) */
	bool timeout_cancel; /* pgtenant cancelled the running statement for query_timeout */
	usec_t connect_time;
	usec_t last_used;
	ScramClient scram;
	bool sasl_done;
	/* TLS towards the backend (SV_LOGIN before the startup packet; see server_begin in
	 * server.c) */
	enum { SV_TLS_OFF = 0, SV_TLS_REQUESTED, SV_TLS_HANDSHAKE, SV_TLS_ON } tls_stage;
	uint8_t tls_mode; /* ServerTlsMode in force for this connection */
	enum { RLS_UNCHECKED = 0, RLS_CHECKING, RLS_DONE } rls_check;
	char rls_refusal[320];
};

/* The one place a server changes state, moving it to that state's list of its pool. */
void server_set_state(ServerConn *s, ServerState st);
/* Starts a new connection for the pool; NULL (and pool marked failing) if it cannot start. */
ServerConn *server_connect(Pool *p);
/* Links a client: queues SETs of the client's parameters the connection lacks. */
void server_link(ServerConn *s, Client *c);
/*
 * Before a client message that starts a unit: commits the tenant's state in a
 * transaction of its own ahead of it when the connection's committed state is
 * not the tenant's. false: the unit must wait (client_held; the server side
 * resumes the client).
 */
bool server_unit_start(ServerConn *s, Client *c);
/* A client message of this type is being written: queue what it will be answered with. */
void server_expect_client(ServerConn *s, uint8_t type);
/* The client's unit end (Sync, Query, FunctionCall) was written whole. */
void server_unit_end(ServerConn *s);
/* Queues the answer to a message pgtenant wrote itself (prepare.c). */
void server_expect_own(ServerConn *s, uint8_t kind, uint8_t action, uint8_t prep, void *stmt,
                       const char *name, uint8_t why);
/* What sql_analyze said of a client statement sent on s: state unknown, session state left by t. */
void server_statement_flags(ServerConn *s, const Tenant *t, unsigned flags);
/* A client statement may have changed the tenant state: apply it again before the next unit. */
void server_state_unknown(ServerConn *s);
/* Is anything in flight or half-written? (A connection is handed out only when not.) */
bool server_busy(const ServerConn *s);
/* Detaches the linked client (no state change of either; callers decide what follows). */
void server_unlink(ServerConn *s);
/* Runs q (a reset, or ROLLBACK) without a client, dropping its reply, then pool_server_ready; an
 * error closes it. */
void server_reset(ServerConn *s, const char *q, bool discards);
/* Runs server_check_query on an idle s before it is handed out; a failure closes it. */
void server_check(ServerConn *s, const char *q);
/* The client is done with s: reset what another tenant must not inherit, or hand it back. */
void server_release(ServerConn *s);
void server_close(ServerConn *s, const char *reason);
/* Forwards a cancel of whatever this server runs; the server is not reused until it settles. */
void server_cancel(ServerConn *s);
bool server_flush(ServerConn *s);
/* The client's output buffer drained: resume reading from the server. */
void server_output_drained(ServerConn *s);
const char *server_state_name(ServerState st);
/* Drops references from in-flight cancels to a server being freed. */
void server_cancel_forget(ServerConn *s);
/* Periodic work: query_timeout, idle_transaction_timeout, stuck cancels; frees closed servers. */
void server_maintain(void);
void server_free_closed(void);

#endif
