/*
 * server: one connection to PostgreSQL — connect, login (trust, cleartext,
 * md5, SCRAM-SHA-256), and the server half of the data path: framing the
 * server's messages, forwarding them to the linked client, noticing the
 * end of each transaction and swallowing the replies to statements
 * pgtenant sent itself.
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
#include "list.h"
#include "param.h"
#include "scram.h"
#include "types.h"

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

	int expect_rfq;  /* client Query/Sync/FunctionCall messages not yet answered */
	int swallow_rfq; /* pgtenant's own queries whose replies are dropped */
	size_t fwd_remain;
	bool fwd_drop; /* the message being streamed is dropped, not forwarded */
	char tx_status;
	bool dirty; /* state unknown: close instead of reusing */
	bool bp_paused; /* not reading: the client's output buffer is full */
	bool batch_open; /* the client sent extended messages whose Sync has not come yet */

	/*
	 * Tenant state (SPEC §4). st_sql is the state statement known to be in
	 * force (NULL: unknown, so it must be applied). An injected unit is
	 * confirmed by the ReadyForQuery that ends it (marks below); errors and
	 * ROLLBACK tags in between make the state unknown again.
	 */
	const char *st_sql;
	const char *st_pending_sql; /* what the units in flight apply */
	uint64_t st_hash, st_pending_hash; /* Tenant.state_hash of those */
	int st_inflight;            /* injected units whose closing ReadyForQuery is outstanding */
	bool st_in_xact;            /* st_sql was applied inside the open transaction block */
	bool st_spoiled;            /* that transaction rolled back (part of) its work */
	bool error_seen;            /* ErrorResponse since the last ReadyForQuery */
	bool rollback_seen;         /* ROLLBACK / PREPARE TRANSACTION tag since the last ReadyForQuery */
	int inject_swallow;         /* replies of the injected Parse/Bind/Execute at the head of the
				     * unit being answered now, still to drop (marks say which units
				     * carry one) */
	bool inject_open;           /* injected; the client's next Query/Sync/FunctionCall closes the unit */
	bool inject_unsynced;       /* a Query/FunctionCall went out behind an injected SET with no Sync
				     * after it: nothing more is sent until the SET has completed */
	bool unsynced_paused;       /* ... and the client stopped reading for it */
	bool unit_start;            /* the client's next message starts a new unit */
	bool hold;                  /* state applied in a transaction of its own: client waits */
	bool hold_failed;           /* ... and applying it failed */
	bool hold_released;         /* the held client is to be resumed */
	const Tenant *marked_by;    /* session state left by this tenant's statements (needs DISCARD ALL) */

	/* ReadyForQuery accounting: ordinals of replies that need special handling. */
	uint64_t rfq_sent;
	uint64_t rfq_recv;
	struct RfqMark *marks;
	int n_marks;
	int cap_marks;

	struct PrepServer *prep; /* statements prepared here and the reply queues (prepare.c) */
	int cancels_in_flight;
	usec_t busy_since;   /* the oldest unanswered unit was sent then (query_timeout) */
	usec_t idle_since;   /* last ReadyForQuery to the client (idle_transaction_timeout) */
	bool timeout_cancel; /* pgtenant cancelled the running statement for query_timeout */
	usec_t connect_time;
	usec_t last_used;
	ScramClient scram;
	bool sasl_done;
	/* TLS towards the backend (SV_LOGIN before the startup packet; see server_begin in server.c) */
	enum { SV_TLS_OFF = 0, SV_TLS_REQUESTED, SV_TLS_HANDSHAKE, SV_TLS_ON } tls_stage;
	uint8_t tls_mode; /* ServerTlsMode in force for this connection */
	enum { RLS_UNCHECKED = 0, RLS_CHECKING, RLS_DONE } rls_check;
	char rls_refusal[320];
};

/* The one place a server changes state, moving it to that state's list of its pool. */
void server_set_state(ServerConn *s, ServerState st);
/* Starts a new connection for the pool; NULL (and pool marked failing) if it cannot start. */
ServerConn *server_connect(Pool *p);
/* Links a client: queues a reset (if another tenant left session state) and parameter SETs. */
void server_link(ServerConn *s, Client *c);
/* Before a client message that starts a unit: applies the tenant's state if not known in force. */
void server_unit_begin(ServerConn *s, Client *c, uint8_t type);
/*
 * For a statement PostgreSQL refuses to run in a transaction block (VACUUM, CREATE
 * INDEX CONCURRENTLY, ...): the state goes in a transaction of its own and the
 * client's messages are held until it is known to be in force (one round trip,
 * only then).
 */
void server_unit_begin_standalone(ServerConn *s, Client *c);
/* A client Query/Sync/FunctionCall was forwarded whole: count its ReadyForQuery. */
void server_unit_end(ServerConn *s, uint8_t type);
/* A client statement may have changed the tenant state: apply it again before the next unit. */
void server_state_unknown(ServerConn *s);
/* Detaches the linked client (no state change of either; callers decide what follows). */
void server_unlink(ServerConn *s);
/* Runs q (server_reset_query, or ROLLBACK) without a client, swallowing its reply, then pool_server_ready. */
void server_reset(ServerConn *s, const char *q, bool discards);
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
