/*
 * server: see include/server.h.
 *
 * The data path returns here: server_on_read() -> server_forward() frames
 * the server's messages and matches each against the connection's reply
 * queue (expect.h): every message written to the server queued what its
 * answer will be and what to do with it (forward to the client, drop as
 * pgtenant's own, commit the tenant state, hand a ReadyForQuery to the
 * client in place of a skipped unit). A connection goes back to the pool in
 * transaction mode when ReadyForQuery says idle and nothing is queued, and
 * leaves its client only with an empty queue; anything that does not match
 * the queue closes the connection. The tenant-state invariant is argued
 * where the state block is written ("The data path, server side").
 */
#include "server.h"

#include "client.h"
#include "health.h"
#include "log.h"
#include "net.h"
#include "pgtenant.h"
#include "pool.h"
#include "prepare.h"
#include "proto.h"
#include "sqllex.h"
#include "tenant.h"
#include "tls.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static void server_on_read(evutil_socket_t fd, short what, void *arg);
static void server_on_write(evutil_socket_t fd, short what, void *arg);
static void server_forward(ServerConn *s);
static void login_process(ServerConn *s);

static List free_later = {&free_later, &free_later};

static const char *const state_names[] = {"free",   "connecting", "login",      "idle",
                                          "active", "reset",      "cancel_wait"};

const char *server_state_name(ServerState st)
{
	return state_names[st];
}

#define server_log(lvl, s, fmt, ...)                                                               \
	log_at(lvl, "S-%p %s/%s@%s:%d " fmt, (void *)(s), (s)->pool->dbname, (s)->pool->user,      \
	       pool_host((s)->pool), pool_port((s)->pool), ##__VA_ARGS__)

/* The one place a server changes state (and list). */
void server_set_state(ServerConn *s, ServerState st)
{
	Pool *p = s->pool;
	bool was_idle = s->state == SV_IDLE;
	list_del(&s->node);
	s->state = st;
	switch (st) {
	case SV_CONNECTING:
	case SV_LOGIN:
		list_append(&p->login, &s->node);
		break;
	case SV_IDLE:
		list_append(&p->idle, &s->node);
		break;
	case SV_ACTIVE:
		list_append(&p->active, &s->node);
		break;
	case SV_RESET:
	case SV_CANCEL_WAIT:
		list_append(&p->busy, &s->node);
		break;
	case SV_FREE:
		break;
	}
	if (was_idle != (st == SV_IDLE))
		pool_idle_changed(p);
}

static void send_startup(ServerConn *s)
{
	Pool *p = s->pool;
	Buf *out = &s->conn.out;
	size_t start;

	pkt_begin(out, 0, &start);
	pkt_put_u32(out, PROTO_V3);
	pkt_put_cstr(out, "user");
	pkt_put_cstr(out, p->user);
	pkt_put_cstr(out, "database");
	pkt_put_cstr(out, p->dbname);
	pkt_put_u8(out, 0);
	pkt_finish(out, start);
	server_set_state(s, SV_LOGIN);
	conn_want_read(&s->conn, true);
	server_flush(s);
}

/* ---------------------------------------------------------------------------------------
 * TLS towards the backend: SSLRequest, the answer byte, the handshake, and then the
 * startup packet goes through the session like everything after it.
 */

static void login_failed(ServerConn *s, const char *msg);

static void tls_failed(ServerConn *s, const char *why, bool verification)
{
	Pool *p = s->pool;
	char msg[256];
	List *it, *tmp;

	snprintf(msg, sizeof(msg), "TLS connection to backend \"%s\" (%s:%d) failed: %s",
	         p->backend->name, pool_host(p), pool_port(p), why);
	login_failed(s, msg);
	if (!verification)
		return;
	/* a certificate that did not verify will not on the next try either: nobody waits for it */
	p->tls_unverified = true;
	list_for_each_safe(it, &p->waiting, tmp)
	{
		Client *c = list_entry(it, Client, node);
		pool_unwait(c);
		client_wait_failed(c, "08006", msg);
	}
}

/* Connected: ask for TLS when server_tls_mode wants it, else log in at once. */
static void server_begin(ServerConn *s)
{
	Pool *p = s->pool;
	ServerTlsMode mode = p->backend->server_tls_mode;
	size_t start;

	s->tls_mode = (uint8_t)mode;
	/* PostgreSQL does not speak TLS on unix sockets; libpq skips it there too */
	if (mode == SERVER_TLS_DISABLE || pool_host(p)[0] == '/') {
		send_startup(s);
		return;
	}
	pkt_begin(&s->conn.out, 0, &start);
	pkt_put_u32(&s->conn.out, PROTO_SSL);
	pkt_finish(&s->conn.out, start);
	server_set_state(s, SV_LOGIN);
	s->tls_stage = SV_TLS_REQUESTED;
	conn_want_read(&s->conn, true);
	server_flush(s);
}

static void server_tls_step(ServerConn *s)
{
	char err[200];
	IoStatus st = conn_tls_handshake(&s->conn, err, sizeof(err));

	if (st == IO_AGAIN)
		return;
	if (st != IO_OK) {
		tls_failed(s, err, tls_verify_failed(s->conn.ssl));
		return;
	}
	s->tls_stage = SV_TLS_ON;
	s->pool->tls_unverified = false;
	if (LOG_LVL_DEBUG <= g_log_level) {
		char desc[128];
		tls_describe(s->conn.ssl, desc, sizeof(desc));
		server_log(LOG_LVL_DEBUG, s, "TLS established: %s", desc);
	}
	send_startup(s);
}

/* The backend's one-byte answer to SSLRequest. */
static void tls_answer(ServerConn *s)
{
	Buf *in = &s->conn.in;
	uint8_t b = buf_head(in)[0];

	if (b == 'S') {
		if (buf_avail(in) != 1) {
			/* bytes before the handshake would pass as encrypted (CVE-2021-23222) */
			tls_failed(s, "received unencrypted data after the SSL response", false);
			return;
		}
		buf_consume(in, 1);
		s->conn.ssl =
		        tls_connect_new(s->conn.fd, (ServerTlsMode)s->tls_mode, pool_host(s->pool));
		if (!s->conn.ssl) {
			tls_failed(s, "cannot create a TLS session", false);
			return;
		}
		s->tls_stage = SV_TLS_HANDSHAKE;
		server_tls_step(s);
		return;
	}
	if (b == 'N') {
		buf_consume(in, 1);
		if (s->tls_mode == SERVER_TLS_PREFER) {
			s->tls_stage = SV_TLS_OFF;
			send_startup(s);
			return;
		}
		tls_failed(s, "the server does not support TLS", false);
		return;
	}
	tls_failed(s,
	           b == 'E' ? "the server refused the SSL request"
	                    : "unexpected answer to the SSL request",
	           false);
}

ServerConn *server_connect(Pool *p)
{
	char err[256];
	bool in_progress;
	int fd = net_connect(pool_host(p), pool_port(p), &in_progress, err, sizeof(err));

	if (fd < 0) {
		strlcpy_safe(p->last_error, err, sizeof(p->last_error));
		p->failing = true;
		p->next_connect_at = g_now + g_cfg->server_login_retry;
		log_warning("backend %s: %s", p->backend->name, err);
		return NULL;
	}
	if (pool_host(p)[0] != '/')
		net_tune(fd, g_cfg->tcp_keepalive, g_cfg->tcp_user_timeout);

	ServerConn *s = xcalloc(1, sizeof(*s));
	list_init(&s->node);
	s->pool = p;
	s->tx_status = 'I';
	s->connect_time = g_now;
	s->last_used = g_now;
	params_init(&s->params);
	conn_init(&s->conn, fd, server_on_read, server_on_write, s);
	s->conn.keep_bufs = true;
	p->n_servers++;
	(*pool_target_count(p))++;
	server_set_state(s, SV_CONNECTING);
	log_debug("S-%p connecting to %s:%d", (void *)s, pool_host(p), pool_port(p));
	if (in_progress) {
		/* writability tells the connect finished */
		event_add(&s->conn.ev_write, NULL);
		s->conn.write_armed = true;
	} else {
		server_begin(s);
	}
	return s;
}

bool server_flush(ServerConn *s)
{
	if (s->state == SV_FREE)
		return false;
	if (conn_flush(&s->conn) == IO_ERROR) {
		server_close(s, "server connection lost");
		return false;
	}
	return true;
}

void server_close(ServerConn *s, const char *reason)
{
	Client *c = s->client;
	bool failed_login = s->state == SV_CONNECTING || s->state == SV_LOGIN;

	if (s->state == SV_FREE)
		return;
	if (reason)
		server_log(failed_login ? LOG_LVL_WARNING : LOG_LVL_INFO, s, "closing: %s", reason);
	if (c) {
		char msg[300];
		snprintf(msg, sizeof(msg), "server connection to backend \"%s\" lost: %s",
		         s->pool->backend->name, reason ? reason : "closed");
		server_unlink(s);
		client_server_lost(c, msg);
	}
	pool_server_gone(s, failed_login, reason);
	server_set_state(s, SV_FREE);
	conn_close(&s->conn);
	params_free(&s->params);
	scram_client_free(&s->scram);
	prep_server_free(s);
	expect_free(&s->ex);
	list_append(&free_later, &s->node);
	server_cancel_forget(s);
}

void server_free_closed(void)
{
	List *it, *tmp;
	list_for_each_safe(it, &free_later, tmp)
	{
		list_del(it);
		free(list_entry(it, ServerConn, node));
	}
}

static void server_on_write(evutil_socket_t fd, short what, void *arg)
{
	ServerConn *s = arg;

	time_update();
	if (s->state == SV_CONNECTING) {
		int err = net_socket_error(s->conn.fd);
		event_del(&s->conn.ev_write);
		s->conn.write_armed = false;
		if (err) {
			char msg[200];
			snprintf(msg, sizeof(msg), "cannot connect to %s:%d: %s",
			         pool_host(s->pool), pool_port(s->pool), strerror(err));
			strlcpy_safe(s->pool->last_error, msg, sizeof(s->pool->last_error));
			server_close(s, msg);
		} else {
			server_begin(s);
		}
		client_maintain();
		return;
	}
	if (s->tls_stage == SV_TLS_HANDSHAKE) {
		server_tls_step(s);
		client_maintain();
		return;
	}
	if (!server_flush(s))
		return;
	if (s->client && buf_avail(&s->conn.out) < CONN_LOW_WATER)
		client_output_drained(s->client);
	client_maintain();
}

static void server_on_read(evutil_socket_t fd, short what, void *arg)
{
	ServerConn *s = arg;
	IoStatus st;

	time_update();
	if (s->tls_stage == SV_TLS_HANDSHAKE) {
		server_tls_step(s);
		client_maintain();
		return;
	}
	if (s->client && s->client->sx)
		__builtin_prefetch(s->client->sx); /* statistics of the reply: cold, wanted soon */
	st = conn_read(&s->conn);
	if (st == IO_EOF || st == IO_ERROR) {
		server_close(s,
		             st == IO_EOF ? "server closed the connection" : "server read error");
	} else if (st == IO_OK) {
		if (s->tls_stage == SV_TLS_REQUESTED)
			tls_answer(s);
		else if (s->state == SV_LOGIN)
			login_process(s);
		else
			server_forward(s);
	}
	client_maintain();
}

/* ---------------------------------------------------------------------------------------
 * Login to PostgreSQL.
 */

static void login_failed(ServerConn *s, const char *msg)
{
	strlcpy_safe(s->pool->last_error, msg, sizeof(s->pool->last_error));
	server_close(s, msg);
}

static void send_password_message(ServerConn *s, const void *data, size_t n, bool cstr)
{
	size_t start;
	pkt_begin(&s->conn.out, 'p', &start);
	pkt_put_bytes(&s->conn.out, data, n);
	if (cstr)
		pkt_put_u8(&s->conn.out, 0);
	pkt_finish(&s->conn.out, start);
}

static bool handle_auth(ServerConn *s, MsgReader *r)
{
	Pool *p = s->pool;
	uint32_t code;
	char err[200];
	char *out = NULL;

	if (!msg_get_u32(r, &code)) {
		login_failed(s, "malformed authentication request from server");
		return false;
	}
	switch (code) {
	case AUTH_REQ_OK:
		return true;
	case AUTH_REQ_CLEARTEXT:
		if (!p->password) {
			login_failed(s, "server asked for a password and none is configured");
			return false;
		}
		send_password_message(s, p->password, strlen(p->password), true);
		break;
	case AUTH_REQ_MD5: {
		const uint8_t *salt;
		char resp[36];
		if (!msg_get_bytes(r, 4, &salt)) {
			login_failed(s, "malformed md5 request from server");
			return false;
		}
		if (!p->password || !auth_md5_response(p->password, p->user, salt, resp)) {
			login_failed(s, "server asked for an md5 password and no usable password "
			                "is configured");
			return false;
		}
		send_password_message(s, resp, strlen(resp), true);
		break;
	}
	case AUTH_REQ_SASL: {
		bool found = false;
		const char *mech;
		while (msg_get_cstr(r, &mech) && *mech)
			if (strcmp(mech, "SCRAM-SHA-256") == 0)
				found = true;
		if (!found) {
			login_failed(s, "server offered no SASL mechanism pgtenant supports");
			return false;
		}
		if (!p->password || auth_secret_kind(p->password) != SECRET_PLAIN) {
			login_failed(
			        s,
			        "server asked for SCRAM and no plain-text password is configured");
			return false;
		}
		if (!scram_client_first(&s->scram, &out)) {
			login_failed(s, "SCRAM client error");
			return false;
		}
		size_t start, n = strlen(out);
		pkt_begin(&s->conn.out, 'p', &start);
		pkt_put_cstr(&s->conn.out, "SCRAM-SHA-256");
		pkt_put_u32(&s->conn.out, (uint32_t)n);
		pkt_put_bytes(&s->conn.out, out, n);
		pkt_finish(&s->conn.out, start);
		free(out);
		break;
	}
	case AUTH_REQ_SASL_CONTINUE:
		if (!scram_client_final(&s->scram, p->password, r->p + r->pos, msg_remaining(r),
		                        &out, err, sizeof(err))) {
			login_failed(s, err);
			return false;
		}
		send_password_message(s, out, strlen(out), false);
		free(out);
		break;
	case AUTH_REQ_SASL_FINAL:
		if (!scram_client_verify(&s->scram, r->p + r->pos, msg_remaining(r), err,
		                         sizeof(err))) {
			login_failed(s, err);
			return false;
		}
		s->sasl_done = true;
		return true;
	default:
		snprintf(err, sizeof(err), "server asked for unsupported authentication method %u",
		         code);
		login_failed(s, err);
		return false;
	}
	return server_flush(s);
}

/*
 * Row-level security only binds a role that is not superuser, has no BYPASSRLS,
 * and does not own the tables (unless they FORCE ROW LEVEL SECURITY).
 */
#define RLS_CHECK_SQL                                                                              \
	"SELECT r.rolsuper OR r.rolbypassrls, "                                                    \
	"(SELECT string_agg(c.oid::regclass::text, ', ') FROM pg_catalog.pg_class c "              \
	"WHERE c.relowner = r.oid AND c.relrowsecurity AND NOT c.relforcerowsecurity) "            \
	"FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"

static void rls_verdict(ServerConn *s, MsgReader *r)
{
	uint16_t n;
	uint32_t l1, l2 = 0xffffffffu;
	const uint8_t *v1 = NULL, *v2 = NULL;

	if (!msg_get_u16(r, &n) || n != 2 || !msg_get_u32(r, &l1) || l1 == 0xffffffffu ||
	    !msg_get_bytes(r, l1, &v1) || !msg_get_u32(r, &l2) ||
	    (l2 != 0xffffffffu && !msg_get_bytes(r, l2, &v2)))
		return;
	if (l1 >= 1 && v1[0] == 't')
		snprintf(s->rls_refusal, sizeof(s->rls_refusal),
		         "server role \"%s\" is a superuser or has BYPASSRLS: row-level security "
		         "would not "
		         "isolate shared tenants",
		         s->pool->user);
	else if (v2)
		snprintf(s->rls_refusal, sizeof(s->rls_refusal),
		         "server role \"%s\" owns tables with row-level security not forced "
		         "(%.*s): use ALTER "
		         "TABLE ... FORCE ROW LEVEL SECURITY",
		         s->pool->user, (int)(l2 > 200 ? 200 : l2), (const char *)v2);
}

static void login_process(ServerConn *s)
{
	Buf *in = &s->conn.in;

	while (s->state == SV_LOGIN && buf_avail(in) >= MSG_HEADER_LEN) {
		uint8_t type = buf_head(in)[0];
		uint32_t len = read_u32be(buf_head(in) + 1);
		if (len < 4 || len > 1024 * 1024) {
			login_failed(s, "invalid message length from server during login");
			return;
		}
		if (buf_avail(in) < 1 + (size_t)len)
			return;
		MsgReader r;
		msg_reader_init(&r, buf_head(in) + MSG_HEADER_LEN, len - 4);
		switch (type) {
		case 'R':
			if (!handle_auth(s, &r))
				return;
			break;
		case 'S': {
			const char *name, *value;
			if (msg_get_cstr(&r, &name) && msg_get_cstr(&r, &value))
				params_set(&s->params, name, value);
			break;
		}
		case 'K': {
			uint32_t pid, key;
			if (msg_get_u32(&r, &pid) && msg_get_u32(&r, &key)) {
				s->be_pid = pid;
				s->be_key = key;
			}
			break;
		}
		case 'E': {
			const char *code, *msg;
			char text[300];
			proto_error_fields(r.p, r.len, &code, &msg);
			snprintf(text, sizeof(text), "login failed: %s (%s)", msg ? msg : "?",
			         code ? code : "?");
			login_failed(s, text);
			return;
		}
		case 'Z': {
			uint8_t st = 'I';
			if (!msg_get_u8(&r, &st)) {
				login_failed(s, "malformed ReadyForQuery");
				return;
			}
			buf_consume(in, 1 + (size_t)len);
			s->tx_status = (char)st;
			scram_client_free(&s->scram);
			if (s->pool->has_shared && s->rls_check == RLS_UNCHECKED) {
				/* shared tenants rely on RLS: make sure this role cannot bypass it
				 */
				proto_simple_query(&s->conn.out, RLS_CHECK_SQL);
				s->rls_check = RLS_CHECKING;
				server_flush(s);
				continue;
			}
			if (s->rls_check == RLS_CHECKING) {
				s->rls_check = RLS_DONE;
				if (s->rls_refusal[0]) {
					strlcpy_safe(s->pool->rls_refusal, s->rls_refusal,
					             sizeof(s->pool->rls_refusal));
					log_error("backend %s: %s", s->pool->backend->name,
					          s->rls_refusal);
				} else {
					s->pool->rls_refusal[0] = '\0';
				}
			}
			server_log(LOG_LVL_DEBUG, s, "login done, backend pid %u", s->be_pid);
			if (!s->pool->welcome_ready)
				pool_set_welcome(s->pool, &s->params);
			s->pool->failing = false;
			if (!s->pool->replica)
				health_primary_reached(s->pool->backend);
			pool_server_ready(s);
			return;
		}
		case 'D':
			if (s->rls_check == RLS_CHECKING)
				rls_verdict(s, &r);
			break;
		default: /* NoticeResponse, NegotiateProtocolVersion: nothing to do */
			break;
		}
		buf_consume(in, 1 + (size_t)len);
	}
}

/* ---------------------------------------------------------------------------------------
 * The data path, server side.
 *
 * The tenant-state invariant (SPEC §4): a statement of tenant T never executes on a
 * server connection unless T's state is in force there. Why this holds:
 *  1. A unit (the client's messages up to a Sync, Query or FunctionCall) starts only
 *     through server_unit_start. If the connection's committed state (st_sql) is not
 *     T's, T's state goes ahead of the unit in a transaction of its own: BEGIN, the
 *     state statement, COMMIT as Parse/Bind/Execute with no Sync between them and the
 *     client's messages. PostgreSQL commits it before the client's first statement
 *     starts, so nothing the client's transaction does later (ROLLBACK, AND CHAIN, a
 *     failing COMMIT, 2PC, procedures that commit) can undo it.
 *  2. If any message of the block fails, PostgreSQL skips everything up to the next
 *     Sync: the client's unit never runs. pgtenant ends the skip, rolls the block back
 *     and answers the client with the error; st_sql stays NULL (unknown).
 *  3. st_sql is set only by the CommandComplete "COMMIT" of a block, read off the
 *     reply queue (expect.h), never inferred; it is cleared by every statement that
 *     may change the state (the analysis in client.c), by resets, and by units whose
 *     statements are not analysed.
 *  4. The block is written only when nothing of the client's is in flight and the
 *     connection is idle (tx_status 'I'): never inside the client's transaction.
 *     While a block is in flight, the client's next unit waits for its outcome.
 */

/* pgtenant's own Sync: ending the skip after a failed block */
static const uint8_t sync_msg[5] = {'S', 0, 0, 0, 4};

static inline void expect_push_own(ServerConn *s, uint8_t kind, uint8_t action)
{
	expect_push(&s->ex, kind, action, false, NULL);
}

void server_expect_own(ServerConn *s, uint8_t kind, uint8_t action, uint8_t prep, void *stmt,
                       const char *name, uint8_t why)
{
	expect_push(&s->ex, kind, action, false, stmt);
	Expect *e = expect_last(&s->ex);
	e->prep = prep;
	e->why = why;
	e->name = name ? xstrdup(name) : NULL;
}

/* A simple Query of pgtenant's own. */
static void own_query(ServerConn *s, const char *sql, uint8_t action)
{
	proto_simple_query(&s->conn.out, sql);
	expect_push_own(s, EX_QUERY, action);
}

void server_expect_client(ServerConn *s, uint8_t type)
{
	uint8_t kind = (uint8_t)expect_kind_of(type);

	if (kind == EX_NONE)
		return;
	if (expect_is_unit(kind)) {
		if (s->ex.client_units == 0)
			s->busy_since = g_now;
		expect_push(&s->ex, kind, EA_CLIENT, true, NULL);
	} else {
		expect_push(&s->ex, kind, EA_CLIENT, false,
		            kind == EX_EXECUTE ? s->last_bound : NULL);
	}
}

bool server_busy(const ServerConn *s)
{
	return !expect_empty(&s->ex) || s->unit_open || s->block != BLOCK_NONE ||
	       s->tx_status != 'I' || s->ex.skip_pending;
}

void server_link(ServerConn *s, Client *c)
{
	static Buf
	        sql; /* scratch for SET statements; keeps its memory, so no allocation per link */

	assert(expect_empty(&s->ex) && s->block == BLOCK_NONE && !s->unit_open);
	s->client = c;
	s->tenant = c->tenant;
	c->server = s;
	pool_tenant_linked(s->pool, c->tenant);
	server_set_state(s, SV_ACTIVE);
	client_set_state(c, CL_ACTIVE);
	s->last_used = g_now;
	s->idle_since = g_now;
	if (s->bp_paused) {
		s->bp_paused = false;
		conn_want_read(&s->conn, true);
	}
	s->client_held = false;
	s->timeout_cancel = false;
	s->last_bound = NULL;
	if (!c->params_have_defaults && s->pool->welcome_ready) {
		const Params *w = &s->pool->welcome;
		for (int i = 0; i < w->n; i++)
			if (param_is_reported(w->items[i].name) &&
			    !params_get(&c->params, w->items[i].name))
				params_set(&c->params, w->items[i].name, w->items[i].value);
		c->params_have_defaults = true;
	}
	sql.off = sql.len = 0;
	/* versions are unique per list and change, so equal versions mean nothing to compare */
	if ((s->synced_client_version != c->params.version ||
	     s->synced_server_version != s->params.version) &&
	    params_fingerprint(&c->params) != params_fingerprint(&s->params) &&
	    param_sync_sql(&c->params, &s->params, &sql)) {
		buf_append(&sql, "", 1);
		own_query(s, (const char *)sql.data, EA_PARAMS);
	}
	s->synced_client_version = c->params.version;
	s->synced_server_version = s->params.version;
}

static bool state_in_force(const ServerConn *s, const TenantState *want)
{
	return s->st_sql && (s->st_sql == want->sql ||
	                     (s->st_hash == want->hash && strcmp(s->st_sql, want->sql) == 0));
}

/* BEGIN, the state statement, COMMIT: three Parse/Bind/Execute, no Sync (tenant.c builds them). */
static void write_block(ServerConn *s, const TenantState *st)
{
	buf_append(&s->conn.out, st->msgs, st->msgs_len);
	for (int i = 0; i < 9; i++)
		expect_push_own(s,
		                (uint8_t)(i % 3 == 0   ? EX_PARSE
		                          : i % 3 == 1 ? EX_BIND
		                                       : EX_EXECUTE),
		                i == 8 ? EA_BLOCK_COMMIT : EA_BLOCK);
	s->st_pending_sql = st->sql;
	s->st_pending_hash = st->hash;
	s->block = BLOCK_PENDING;
}

bool server_unit_start(ServerConn *s, Client *c)
{
	const TenantState *want;

	if (s->block != BLOCK_NONE)
		goto hold;
	if (s->pool->replica && s->ex.client_units > 0)
		goto hold; /* routed for its batch alone: the next batch is routed when it is
		              answered */
	want = tenant_state_of(c->tenant, c->home_pool);
	if (s->ex.skip_pending && expect_skipping(&s->ex)) {
		/* PostgreSQL skips this unit up to its Sync (an error before it): nothing of it
		 * runs, and a block would be skipped with it */
	} else if (!want) {
		/* statements nobody analyses: whatever was committed here is unknown after them */
		s->st_sql = NULL;
	} else if (!state_in_force(s, want)) {
		if (s->ex.client_units > 0)
			goto hold; /* whether the client's transaction is open is known when they
			              are answered */
		if (s->tx_status == 'I')
			write_block(s, want);
		/* else: inside the client's own transaction, which its own statements put out of
		 * step; never applied there (SPEC §4), applied again before its next unit */
	}
	if (c->deferred_begin) {
		/* the BEGIN the client was told succeeded, now that the transaction has a server */
		own_query(s, c->deferred_begin, EA_OWN);
		free(c->deferred_begin);
		c->deferred_begin = NULL;
	}
	s->unit_open = true;
	return true;
hold:
	s->client_held = true;
	return false;
}

/*
 * The block failed and PostgreSQL skipped the client's unit (or still skips it up to
 * the next Sync). Ends the skip and rolls the block's transaction back; the client gets
 * one ReadyForQuery for its unit, as idle.
 */
static void block_recover(ServerConn *s)
{
	Expect *last = expect_last(&s->ex);

	assert(s->block == BLOCK_FAILED && !s->unit_open);
	if (expect_has_sync(&s->ex)) {
		/* the client's Sync ends the skip: its ReadyForQuery (status E) goes out as idle */
		assert(last && last->kind == EX_SYNC);
		last->action = EA_ZI;
		own_query(s, "ROLLBACK", EA_OWN);
	} else {
		/* the unit ended with a Query or FunctionCall the server skips: nothing of it is
		 * answered */
		while (!expect_empty(&s->ex)) {
			Expect e;
			expect_pop(&s->ex, &e);
			if (e.action == EA_PREP)
				prep_on_skipped(s, &e);
			free(e.name);
		}
		buf_append(&s->conn.out, sync_msg, sizeof(sync_msg));
		expect_push_own(s, EX_SYNC, EA_OWN);
		own_query(s, "ROLLBACK", EA_ZI);
	}
	s->block = BLOCK_NONE;
	s->client_held = s->client != NULL;
}

void server_unit_end(ServerConn *s)
{
	s->unit_open = false;
	if (s->block == BLOCK_FAILED) {
		block_recover(s);
		server_flush(s);
	}
}

void server_statement_flags(ServerConn *s, const Tenant *t, unsigned flags)
{
	if (flags & (SQLF_STATE_UNKNOWN | SQLF_RESETS_STATE | SQLF_UNPARSED))
		server_state_unknown(s);
	if (flags & (SQLF_SESSION_STATE | SQLF_STATE_UNKNOWN | SQLF_UNPARSED))
		s->marked_by = t;
}

/* Marks a connection whose state a client statement may have changed. */
void server_state_unknown(ServerConn *s)
{
	s->st_sql = NULL;
	/* a block in flight does not make it known again */
	s->st_pending_sql = NULL;
}

void server_unlink(ServerConn *s)
{
	if (s->client) {
		Client *c = s->client;
		c->server = NULL;
		if (c->bp_paused && !c->closing) {
			c->bp_paused = false;
			conn_want_read(&c->conn, true);
		}
	}
	s->client = NULL;
	s->client_held = false;
	if (s->tenant) {
		pool_tenant_unlinked(s->pool, s->tenant);
		s->tenant = NULL;
	}
}

void server_reset(ServerConn *s, const char *q, bool discards)
{
	server_set_state(s, SV_RESET);
	if (!q || !*q) {
		pool_server_ready(s);
		return;
	}
	if (discards) {
		/* DISCARD ALL / RESET ALL return every setting to its default: forget what we SET.
		 */
		for (int i = 0; i < s->params.n;) {
			if (!param_is_reported(s->params.items[i].name) &&
			    !param_is_readonly(s->params.items[i].name)) {
				params_remove(&s->params, s->params.items[i].name);
				continue;
			}
			i++;
		}
		s->marked_by = NULL;
		prep_server_reset(s);
		/* a statement_timeout the last tenant left must not cancel the reset (nor, with
		 * the cancel still pending when it ends, the next tenant's first statement) */
		own_query(s, "SET statement_timeout = 0", EA_RESET);
	}
	own_query(s, q, EA_RESET);
	server_state_unknown(s);
	server_flush(s);
}

void server_check(ServerConn *s, const char *q)
{
	server_set_state(s, SV_RESET);
	own_query(s, q, EA_RESET);
	server_flush(s);
}

void server_release(ServerConn *s)
{
	Client *c = s->client;

	assert(!server_busy(s));
	if (c && c->tenant->pool_mode == POOL_MODE_SESSION) {
		/* a session's state goes with it; state another tenant must not see is wiped
		 * whatever server_reset_query says (pool_server_ready, marked_by) */
		const char *q = g_cfg->server_reset_query;
		server_unlink(s);
		if (!c->closing)
			client_set_state(c, CL_IDLE);
		server_reset(s, q, q && strcasestr(q, "discard all") != NULL);
		return;
	}
	pool_release(s);
}

static void note_parameter(ServerConn *s, const uint8_t *body, size_t len)
{
	MsgReader r;
	const char *name, *value;
	msg_reader_init(&r, body, len);
	if (!msg_get_cstr(&r, &name) || !msg_get_cstr(&r, &value))
		return;
	params_set(&s->params, name, value);
	if (s->client && !param_is_readonly(name) && !param_is_server_report(name))
		params_set(&s->client->params, name, value);
}

/* The CommandComplete of the block's COMMIT: the state is committed (a "ROLLBACK" tag would say
 * not). */
static void block_committed(ServerConn *s, const uint8_t *body, size_t len)
{
	if (len == 7 && memcmp(body, "COMMIT", 7) == 0 && s->st_pending_sql) {
		s->st_sql = s->st_pending_sql;
		s->st_hash = s->st_pending_hash;
	} else {
		s->st_sql = NULL;
	}
	s->st_pending_sql = NULL;
	s->block = BLOCK_NONE;
}

typedef struct SkipCtx {
	ServerConn *s;
	bool block_failed;
} SkipCtx;

static void on_skip(void *arg, Expect *e)
{
	SkipCtx *k = arg;
	if (e->action == EA_BLOCK || e->action == EA_BLOCK_COMMIT)
		k->block_failed = true;
	else if (e->action == EA_PREP)
		prep_on_skipped(k->s, e);
}

/* The block did not commit: the state is unknown; the client's unit is answered once the skip ends.
 */
static void block_failed(ServerConn *s)
{
	server_state_unknown(s);
	s->block = BLOCK_FAILED;
	if (!s->unit_open)
		block_recover(s);
}

/* PostgreSQL skips up to the next Sync (expect_skip); true when that took the state block. */
static bool skip_to_sync(ServerConn *s)
{
	SkipCtx k = {s, false};
	expect_skip(&s->ex, on_skip, &k);
	return k.block_failed;
}

/* The client's unit (or pgtenant's stand-in for it) was answered: timing, status, release. */
static bool unit_answered(ServerConn *s, Client *c, char status)
{
	stats_unit_answered(c, status);
	c->tx_status = status;
	s->busy_since = g_now;
	s->idle_since = g_now;
	if (s->ex.client_units == 0)
		s->timeout_cancel = false;
	return true;
}

/* May the linked client's server go back now (transaction mode, or shutdown)? */
static bool may_release(const ServerConn *s, const Client *c)
{
	return !server_busy(s) && c->fwd_remain == 0 &&
	       (g_shutdown || c->tenant->pool_mode == POOL_MODE_TRANSACTION);
}

/* The server broke the protocol or pgtenant lost track: nobody may use this connection again. */
static void out_of_step(ServerConn *s, uint8_t type)
{
	char why[120];
	char queued[64];
	size_t n = 0;
	static const char kinds[] = "-PBDECSQFc";
	/* what was owed, for the log: the oldest entries' kinds */
	for (uint32_t i = 0; i < s->ex.n && n < sizeof(queued) - 1; i++)
		queued[n++] = kinds[s->ex.items[(s->ex.head + i) & (s->ex.cap - 1)].kind];
	queued[n] = '\0';
	snprintf(why, sizeof(why),
	         "unexpected message '%c' from the server (no request of ours matches it)",
	         type >= 32 && type < 127 ? type : '?');
	log_error("S-%p %s; queued: \"%s\"", (void *)s, why, queued);
	server_close(s, why);
}

/* Stops reading s while its client's output is over the high-water mark (true). */
static bool pause_if_full(ServerConn *s, const Client *c)
{
	if (!conn_out_full(&c->conn))
		return false;
	conn_want_read(&s->conn, false);
	s->bp_paused = true;
	return true;
}

/*
 * The reply loop's fast path: whole messages at the head of s's input that the loop would
 * pass to c as they are with nothing more to do (parts of the answer at the head of the
 * queue, for c: the RowDescription, DataRow and CommandComplete of its Query, the DataRows
 * of its Execute) go to c in one copy. Returns how many bytes went; 0 leaves it to the loop.
 */
static size_t forward_run(ServerConn *s, Client *c)
{
	const Expect *h = expect_head(&s->ex);
	if (!h || h->action != EA_CLIENT || s->ex.skip_pending || s->fwd_remain)
		return 0;
	/* 1: a DataRow; 2: a RowDescription or CommandComplete, parts of a Query's answer only */
	static const uint8_t run_part[256] = {['D'] = 1, ['T'] = 2, ['C'] = 2};
	unsigned parts = h->kind == EX_QUERY ? 3 : h->kind == EX_EXECUTE ? 1 : 0;
	if (!parts)
		return 0;
	Buf *in = &s->conn.in;
	const uint8_t *p = buf_head(in);
	size_t n = buf_avail(in), off = 0;
	while (n - off >= MSG_HEADER_LEN) {
		uint8_t type = p[off];
		uint32_t len = read_u32be(p + off + 1);
		if (!(run_part[type] & parts) || len < 4 || len > n - off - 1)
			break;
#ifdef PGTENANT_VERIFY_FAST
		ExpectMatch loop_would = expect_match(&s->ex, h, type); /* no side effect here */
		assert(loop_would == XM_PART);
		(void)loop_would;
#endif
		if (type == 'C' && c->sx)
			stats_reply(c, type, p + off + MSG_HEADER_LEN, len - 4);
		off += 1 + (size_t)len;
	}
	if (off) {
		buf_append(&c->conn.out, p, off);
		c->tenant->stats.bytes_out += off;
		buf_consume(in, off);
	}
	return off;
}

static void server_forward(ServerConn *s)
{
	Buf *in = &s->conn.in;
	bool release = false;

again:
	while (buf_avail(in) && s->state != SV_FREE) {
		Client *c = s->client;
		if (s->fwd_remain) {
			size_t n = buf_avail(in) < s->fwd_remain ? buf_avail(in) : s->fwd_remain;
			if (c && !s->fwd_drop)
				buf_append(&c->conn.out, buf_head(in), n);
			buf_consume(in, n);
			s->fwd_remain -= n;
			continue;
		}
		/* what the run left (a partial message or one of another kind) goes on below */
		if (c && forward_run(s, c) && pause_if_full(s, c))
			break;
		if (buf_avail(in) < MSG_HEADER_LEN)
			break;
		uint8_t type = buf_head(in)[0];
		uint32_t len = read_u32be(buf_head(in) + 1);
		size_t total = 1 + (size_t)len;
		if (len < 4 || len > 0x40000000u) {
			server_close(s, "invalid message length from server");
			return;
		}
		/* only row and copy data stream through; every other reply is looked at whole */
		if (type != 'D' && type != 'd' && buf_avail(in) < total) {
			buf_reserve(in, total - buf_avail(in));
			break;
		}
		const uint8_t *body = buf_head(in) + MSG_HEADER_LEN;
		size_t blen = len - 4;
		bool drop = true;

		if (type == 'E' && proto_error_is_fatal(body, blen)) {
			/* The server is going away; its client hears the server's own FATAL (SPEC
			 * §8). */
			const char *code, *msg;
			char why[300];
			proto_error_fields(body, blen, &code, &msg);
			snprintf(why, sizeof(why), "%s (%s)", msg ? msg : "fatal error",
			         code ? code : "?");
			if (c && !c->closing) {
				buf_append(&c->conn.out, buf_head(in), total);
				c->server_fatal_sent = true;
			}
			buf_consume(in, total);
			server_close(s, why);
			return;
		}
		if (s->ex.skip_pending && type != 'N' && type != 'A' && type != 'S' &&
		    skip_to_sync(s)) {
			/* a block written while PostgreSQL still skipped (never: server_unit_start)
			 */
			block_failed(s);
		}
		Expect *h = expect_head(&s->ex);
		ExpectMatch m = expect_match(&s->ex, h, type);
		switch (m) {
		case XM_BAD:
			out_of_step(s, type);
			return;
		case XM_ASYNC:
			if (type == 'S')
				note_parameter(s, body, blen);
			/* ParameterStatus and notifications belong to the client whatever runs;
			 * notices of pgtenant's own statements do not */
			drop = !c ||
			       (type == 'N' && h && h->action != EA_CLIENT && h->action != EA_PREP);
			break;
		case XM_PART:
			drop = !c || h->action != EA_CLIENT;
			if (type == 'G')
				expect_copy_in(&s->ex);
			if (type == 'E' && h->action != EA_CLIENT) {
				const char *code, *msg;
				proto_error_fields(body, blen, &code, &msg);
				if (h->action == EA_PARAMS && c) {
					/* an invalid startup parameter: what PostgreSQL would have
					 * said at startup */
					char text[300];
					snprintf(text, sizeof(text), "%s",
					         msg ? msg : "invalid startup parameter");
					s->dirty = true;
					buf_consume(in, total);
					client_fatal(c, code ? code : "22023", text, NULL);
					return;
				}
				server_log(LOG_LVL_WARNING, s,
				           "error in a statement of pgtenant's: %s (%s)",
				           msg ? msg : "?", code ? code : "?");
				/* a failed reset leaves a state nobody knows: the connection goes
				 */
				s->dirty = true;
			}
			if (type == 'E' && !drop && s->timeout_cancel) {
				const char *code, *msg;
				proto_error_fields(body, blen, &code, &msg);
				if (code && strcmp(code, "57014") == 0) {
					/* the server says "user request"; the client should learn
					 * why */
					proto_error(&c->conn.out, "ERROR", "57014",
					            "canceling statement due to query_timeout",
					            NULL);
					s->timeout_cancel = false;
					drop = true;
				}
			}
			break;
		case XM_SKIP: {
			drop = !c || (h->action != EA_CLIENT && h->action != EA_PREP &&
			              h->action != EA_BLOCK && h->action != EA_BLOCK_COMMIT);
			if (h->stmt &&
			    (h->kind == EX_BIND || h->kind == EX_EXECUTE || h->kind == EX_DESCRIBE))
				prep_server_error(s, h->stmt, body, blen);
			if (skip_to_sync(s)) {
				const char *code, *msg;
				proto_error_fields(body, blen, &code, &msg);
				server_log(LOG_LVL_WARNING, s,
				           "tenant state not applied for %s: %s (%s)",
				           s->tenant ? s->tenant->name : "-", msg ? msg : "?",
				           code ? code : "?");
				if (s->tenant)
					s->tenant->stats.state_failures++;
				block_failed(s);
			}
			break;
		}
		case XM_DONE: {
			uint8_t action = h->action;
			switch (action) {
			case EA_CLIENT:
				drop = !c;
				break;
			case EA_PREP:
				drop = prep_on_reply(s, c, h, type);
				free(h->name);
				break;
			case EA_BLOCK_COMMIT:
				block_committed(s, body, blen);
				break;
			case EA_ZI:
				if (type == 'Z' && c)
					proto_ready(&c->conn.out, 'I');
				break;
			default:
				break;
			}
			expect_drop(&s->ex);
			if (type != 'Z')
				break;
			/* the status a unit starting now would run in: with units of pgtenant's
			 * still queued behind this one (the ROLLBACK after a failed block), theirs
			 * decides */
			if (s->ex.units == 0)
				s->tx_status = (char)body[0];
			if (!c) {
				if (s->state == SV_RESET && expect_empty(&s->ex)) {
					buf_consume(in, total);
					if (s->dirty) {
						Pool *p = s->pool;
						server_close(
						        s,
						        "a reset or check failed: state unknown");
						pool_maybe_connect(
						        p); /* for whoever waited for it */
					} else {
						pool_server_ready(s);
					}
					return;
				}
				break;
			}
			if (action == EA_CLIENT)
				unit_answered(s, c, (char)body[0]);
			else if (action == EA_ZI)
				unit_answered(s, c, 'I');
			if (may_release(s, c))
				release = true;
			break;
		}
		}
		if (!drop && c->sx && (type == 'C' || type == 'E' || type == 'I' || type == 's'))
			stats_reply(c, type, body, blen); /* a statement of the client's finished */
		size_t n = buf_avail(in) < total ? buf_avail(in) : total;
		if (!drop) {
			buf_append(&c->conn.out, buf_head(in), n);
			c->tenant->stats.bytes_out += n;
		}
		buf_consume(in, n);
		s->fwd_remain = total - n;
		s->fwd_drop = drop;
		if (release)
			break;
		if (c && pause_if_full(s, c))
			break;
	}
	if (s->state == SV_FREE)
		return;
	if (buf_avail(&s->conn.out) && !server_flush(s))
		return;
	Client *c = s->client;
	if (c && c->bp_paused && !release && buf_avail(&s->conn.out) < CONN_LOW_WATER) {
		/* that flush may have drained what held the client back: no write event will say so
		 */
		client_output_drained(c);
		if (s->state == SV_FREE || s->client != c)
			return;
	}
	if (c) {
		if (!client_flush(c))
			return; /* closing the client released or closed s */
		if (s->bp_paused && !release && s->client == c &&
		    buf_avail(&c->conn.out) < CONN_LOW_WATER) {
			/* the kernel took it all at once: no write event will come to resume us */
			s->bp_paused = false;
			conn_want_read(&s->conn, true);
			goto again;
		}
		if (release && s->client == c) {
			if (g_shutdown) {
				client_close(c, "shutdown");
				return;
			}
			if (c->tenant->pool_mode == POOL_MODE_SESSION)
				server_release(s);
			else
				pool_release(s); /* the common case, without a call more */
			/* a removed or disabled tenant's clients leave at the end of their
			 * transaction */
			if (c->tenant->removed) {
				client_fatal(c, "57P01",
				             "terminating connection: the tenant was removed from "
				             "the configuration",
				             NULL);
				return;
			}
			if (c->tenant->disabled) {
				client_fatal(c, "55000",
				             "terminating connection: the tenant was disabled",
				             NULL);
				return;
			}
			/* the client may have pipelined its next transaction already */
			if (!c->closing && buf_avail(&c->conn.in))
				client_output_drained(c);
			return;
		}
		if (s->client_held && s->block == BLOCK_NONE && s->client == c && !c->closing) {
			/* the unit that waited may go on now (server_unit_start decides again) */
			s->client_held = false;
			client_output_drained(c);
			if (s->state == SV_FREE)
				return;
		}
	}
	if (s->state != SV_FREE && !buf_avail(in))
		conn_shrink(&s->conn);
}

void server_output_drained(ServerConn *s)
{
	if (s->state == SV_FREE)
		return;
	s->bp_paused = false;
	conn_want_read(&s->conn, true);
	if (buf_avail(&s->conn.in))
		server_forward(s);
}

/* ---------------------------------------------------------------------------------------
 * Cancel requests: a short connection to the backend carrying the server's own key.
 * The target is not reused until the cancel has been delivered (the backend closes the
 * cancel connection once it has signalled the query).
 */

typedef struct CancelConn {
	List node;
	int fd;
	struct event ev;
	ServerConn *target;
	uint8_t pkt[16];
	size_t sent;
	usec_t started;
} CancelConn;

static List cancels = {&cancels, &cancels};

static void cancel_settled(CancelConn *k)
{
	ServerConn *s = k->target;
	event_del(&k->ev);
	close(k->fd);
	list_del(&k->node);
	free(k);
	if (!s)
		return;
	s->cancels_in_flight--;
	if (s->cancels_in_flight == 0 && s->state == SV_CANCEL_WAIT)
		pool_server_ready(s);
}

static void cancel_on_event(evutil_socket_t fd, short what, void *arg)
{
	CancelConn *k = arg;
	time_update();
	if (k->sent < sizeof(k->pkt)) {
		if (net_socket_error(fd)) {
			cancel_settled(k);
			return;
		}
		ssize_t n = send(fd, k->pkt + k->sent, sizeof(k->pkt) - k->sent, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			cancel_settled(k);
			return;
		}
		if (n > 0)
			k->sent += (size_t)n;
		if (k->sent == sizeof(k->pkt)) {
			event_del(&k->ev);
			event_assign(&k->ev, g_base, fd, EV_READ | EV_PERSIST, cancel_on_event, k);
			event_add(&k->ev, NULL);
		}
		return;
	}
	/* the backend closes the connection when it has processed the request */
	uint8_t junk[64];
	ssize_t n = recv(fd, junk, sizeof(junk), 0);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		cancel_settled(k);
	client_maintain();
}

void server_cancel(ServerConn *s)
{
	char err[200];
	bool in_progress;
	Buf b;
	int fd =
	        net_connect(pool_host(s->pool), pool_port(s->pool), &in_progress, err, sizeof(err));

	if (fd < 0) {
		server_log(LOG_LVL_WARNING, s, "cancel failed: %s", err);
		return;
	}
	CancelConn *k = xcalloc(1, sizeof(*k));
	k->fd = fd;
	k->target = s;
	k->started = g_now;
	buf_init(&b);
	proto_cancel_request(&b, s->be_pid, s->be_key);
	memcpy(k->pkt, b.data, sizeof(k->pkt));
	buf_free(&b);
	list_append(&cancels, &k->node);
	s->cancels_in_flight++;
	event_assign(&k->ev, g_base, fd, EV_WRITE | EV_PERSIST, cancel_on_event, k);
	event_add(&k->ev, NULL);
	server_log(LOG_LVL_DEBUG, s, "cancel sent for backend pid %u", s->be_pid);
}

void server_cancel_forget(ServerConn *s)
{
	List *it;
	list_for_each(it, &cancels)
	{
		CancelConn *k = list_entry(it, CancelConn, node);
		if (k->target == s)
			k->target = NULL;
	}
}

static void check_timeouts(ServerConn *s)
{
	Client *c = s->client;
	const TenantConf *tc = c->tenant->conf;

	if (s->ex.client_units > 0) {
		usec_t limit = config_tenant_query_timeout(g_cfg, tc);
		if (limit > 0 && !s->timeout_cancel && g_now - s->busy_since > limit) {
			server_log(LOG_LVL_INFO, s, "query_timeout: cancelling backend pid %u",
			           s->be_pid);
			s->timeout_cancel = true;
			c->tenant->stats.query_timeouts++;
			server_cancel(s);
		}
		return;
	}
	if (s->tx_status != 'I') {
		usec_t limit = config_tenant_idle_transaction_timeout(g_cfg, tc);
		if (limit > 0 && g_now - s->idle_since > limit) {
			/* roll the transaction back and give the connection back clean */
			s->dirty = s->dirty || !expect_empty(&s->ex) || s->unit_open;
			server_unlink(s);
			server_reset(s, "ROLLBACK", false);
			client_set_state(c, CL_IDLE);
			client_fatal(c, "25P03",
			             "terminating connection due to idle_transaction_timeout",
			             NULL);
		}
		return;
	}
	/* session mode: a client idle outside a transaction while holding its server */
	usec_t limit = config_tenant_client_idle_timeout(g_cfg, tc);
	if (limit > 0 && g_now - s->idle_since > limit)
		client_fatal(c, "57P05", "terminating connection due to client_idle_timeout", NULL);
}

/* Cancels that never settle (a backend gone silent) release their target after the connect timeout.
 */
void server_maintain(void)
{
	List *pit;
	list_for_each(pit, &g_pools)
	{
		Pool *p = list_entry(pit, Pool, node);
		List *it, *tmp;
		list_for_each_safe(it, &p->active, tmp)
		{
			ServerConn *s = list_entry(it, ServerConn, node);
			if (s->client && !s->client->closing)
				check_timeouts(s);
		}
	}
	List *it, *tmp;
	list_for_each_safe(it, &cancels, tmp)
	{
		CancelConn *k = list_entry(it, CancelConn, node);
		if (g_now - k->started > g_cfg->server_connect_timeout) {
			if (k->target)
				k->target->dirty = true;
			cancel_settled(k);
		}
	}
	server_free_closed();
}
