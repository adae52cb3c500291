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

	int expect_rfq;  /* client Query/Sync/FunctionCall messages not yet answered */
	int swallow_rfq; /* pgtenant's own queries whose replies are dropped */
	size_t fwd_remain;
	bool fwd_drop; /* the message being streamed is dropped, not forwarded */
	char tx_status;
	bool dirty; /* state unknown: close instead of reusing */

	int cancels_in_flight;
	usec_t connect_time;
	usec_t last_used;
	ScramClient scram;
	bool sasl_done;
};

/* The one place a server changes state, moving it to that state's list of its pool. */
void server_set_state(ServerConn *s, ServerState st);
/* Starts a new connection for the pool; NULL (and pool marked failing) if it cannot start. */
ServerConn *server_connect(Pool *p);
/* Links a client: queues parameter SETs ahead of the client's messages. */
void server_link(ServerConn *s, Client *c);
/* Sends the reset query and swallows its reply (session mode), then pool_server_ready. */
void server_reset(ServerConn *s);
void server_close(ServerConn *s, const char *reason);
/* Forwards a cancel of whatever this server runs; the server is not reused until it settles. */
void server_cancel(ServerConn *s);
bool server_flush(ServerConn *s);
/* The client's output buffer drained: resume reading from the server. */
void server_output_drained(ServerConn *s);
const char *server_state_name(ServerState st);
/* Drops references from in-flight cancels to a server being freed. */
void server_cancel_forget(ServerConn *s);
/* Periodic work: stuck cancels; frees servers closed earlier. */
void server_maintain(void);
void server_free_closed(void);

#endif
