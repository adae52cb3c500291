/*
 * client: one application connection — startup, authentication, then the
 * client half of the data path: framing the client's messages, acquiring
 * a server connection for them and forwarding them.
 *
 * States and the list each lives on:
 *   CL_LOGIN         g_login_clients       startup and authentication
 *   CL_WELCOME_WAIT  pool->welcome_wait    authenticated; waiting for server parameters
 *   CL_IDLE          g_idle_clients        no server, nothing to send
 *   CL_WAITING       pool->waiting         has messages, waits for a server
 *   CL_ACTIVE        g_active_clients      linked to a server
 *   CL_CONSOLE       g_console_clients     logged in to the admin console
 */
#ifndef PGTENANT_CLIENT_H
#define PGTENANT_CLIENT_H

#include "conn.h"
#include "list.h"
#include "param.h"
#include "scram.h"
#include "sqllex.h"
#include "types.h"

typedef enum {
	CL_FREE = 0,
	CL_LOGIN,
	CL_WELCOME_WAIT,
	CL_IDLE,
	CL_WAITING,
	CL_ACTIVE,
	CL_CONSOLE,
} ClientState;

typedef enum {
	LOGIN_STARTUP = 0,   /* waiting for the startup packet (or SSL/GSS/cancel request) */
	LOGIN_TLS_HANDSHAKE, /* answered SSLRequest with 'S' (or direct TLS): handshake running */
	LOGIN_PASSWORD,      /* sent AuthenticationCleartext/MD5, waiting for PasswordMessage */
	LOGIN_SASL_INIT,     /* sent AuthenticationSASL */
	LOGIN_SASL_FINAL,    /* sent AuthenticationSASLContinue */
} LoginStage;

struct Client {
	List node;          /* on exactly one list, by state */
	List queue_node;    /* CL_WAITING: in its tenant's queue on the pool */
	List throttle_node; /* waiting for a rate_limit token */
	Conn conn;
	Tenant *tenant;
	Pool *pool;      /* the pool of the current batch: home_pool or one of its replicas */
	Pool *home_pool; /* the tenant's pool on the primary */
	ServerConn *server;

	usec_t idle_since;
	usec_t connect_time;
	usec_t wait_start;
	usec_t xact_start;
	usec_t query_start;
	usec_t rw_until;   /* read_your_writes: reads go to the primary until then */
	size_t fwd_remain; /* bytes of the current message still to pass through */

	/*
	 * sql_analyze's verdicts on the last SQL texts of this client's input, named
	 * by their position in the client's byte stream (which never holds other
	 * bytes) and the configuration they were made under: the router, the guard
	 * and the Parse shortcut each ask, the lexer runs once (client_sql_info).
	 */
	struct {
		uint64_t at; /* stream position + 1; 0: empty */
		size_t len;
		unsigned epoch; /* g_cfg_epoch */
		SqlInfo info;
	} sql_seen[4];
	unsigned sql_seen_next;
	SqlShape *shape; /* the last plain SELECT the screen took (sql_analyze_shaped), or NULL */

	Client *cancel_next;        /* cancel key hash chain (client.c) */
	char *deferred_begin;       /* a BEGIN answered locally; sent with the transaction's first
	                               statement */
	struct PrepClient *prep;    /* named prepared statements (transaction mode) */
	struct StatsClient *sx;     /* statements in flight, for statement statistics (stats.c) */
	ScramServer *scram;         /* only during a SCRAM exchange */
	struct LoginCtx *login_ctx; /* only during login: tenant verdict, secret, md5 salt */
	Params params;

	ClientState state;
	LoginStage login_stage;
	int port;
	/* cancel key handed to the client */
	uint32_t cancel_pid;
	uint32_t cancel_key;

	/* Flags and small fields together, so the struct has no padding holes:
	 * memory per idle client is a figure users size machines by. */
	bool token_held; /* took the token for the statement at the head of its input */
	bool params_have_defaults;
	bool tls_direct;      /* TLS from the first byte (PostgreSQL 17 sslnegotiation=direct), no
	                         SSLRequest */
	uint8_t fwd_type;     /* type of the message in passage, when its end closes a unit (Query,
	                         Sync, FunctionCall) */
	bool skip_until_sync; /* an error was sent for a batch; drop messages until Sync */
	bool skip_query_tail; /* an error was sent for a Query still arriving; drop its rest */
	char tx_status;       /* last ReadyForQuery status the client saw */
	bool close_after_flush;
	bool closing;
	bool bp_paused;      /* not reading: its server's output buffer is full */
	bool sticky_primary; /* read routing (SPEC §5): session state was created, everything stays
	                        on the primary */
	bool prep_skip;      /* a Parse was refused: drop messages up to (not including) Sync */
	bool console;        /* dbname = admin_db */
	bool console_admin;  /* in admin_users (else stats_users: SHOW only) */
	bool server_fatal_sent; /* the server's own FATAL was passed on: nothing more to say when it
	                           goes */
	bool reset_in_unit;     /* a Parse of RESET ALL / DISCARD ALL in the unit being written */

	char user[64]; /* the user that authenticated (tenant suffix removed) */
	char addr[48]; /* peer address as text (INET6_ADDRSTRLEN), or "unix" */
};

extern List g_login_clients;
extern List g_idle_clients;
extern List g_active_clients;
extern List g_console_clients;
extern int g_n_clients;

void client_accept(int fd);
/* A server was linked to this waiting client: continue forwarding its messages. */
void client_resume(Client *c);
/* A waiting client's replica went away: route its batch again. */
void client_resume_routing(Client *c);
/* The pool could not give a server in time: error the pending batch, session goes on. */
void client_wait_failed(Client *c, const char *sqlstate, const char *msg);
/* The server under this client died: its FATAL (or 08006) and the client is closed (SPEC §8). */
void client_server_lost(Client *c, const char *why);
/* Finishes login: AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery. */
void client_welcome(Client *c, const Params *server_params);
/* Sends FATAL and closes once it is flushed. */
void client_fatal(Client *c, const char *sqlstate, const char *msg, const char *hint);
void client_close(Client *c, const char *reason);
void client_set_state(Client *c, ClientState st);
/* Flushes the client's output; closes it if the peer is gone. Returns false if closed. */
bool client_flush(Client *c);
/* After the server's output to this client drained below the low-water mark. */
void client_output_drained(Client *c);
void client_maintain(void);
/* client_idle_timeout for clients without a server (run about once a second). */
void client_idle_timeouts(void);
/* Shutdown: closes clients that are not inside a transaction. */
void client_close_idle_for_shutdown(void);
const char *client_state_name(ClientState st);
/* The text of the tenant state the client's statements run under (NULL: none); prepared statements
 * are keyed by it. */
const char *client_state_sql(const Client *c);

/*
 * sql_analyze of len bytes at sql, analysed once per message: when sql lies in
 * c's input buffer, the verdict is kept by stream position and reused.
 */
void client_sql_info(Client *c, const char *sql, size_t len, SqlInfo *out);

#endif
