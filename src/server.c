/*
 * server: see include/server.h.
 *
 * The data path returns here: server_on_read() -> server_forward() frames
 * the server's messages and appends them to the linked client's output.
 * ReadyForQuery is where transactions end: when it says idle and every
 * Query/Sync the client sent has been answered (expect_rfq == 0), the
 * server goes back to the pool in transaction mode.
 *
 * Replies to statements pgtenant sends itself (parameter SETs, the reset
 * query) are counted in swallow_rfq and dropped up to their ReadyForQuery;
 * they always precede the client's own statements on the wire, so the
 * client's replies are never mistaken for them.
 */
#include "server.h"

#include "client.h"
#include "log.h"
#include "net.h"
#include "pgtenant.h"
#include "pool.h"
#include "prepare.h"
#include "proto.h"
#include "tenant.h"
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void server_on_read(evutil_socket_t fd, short what, void *arg);
static void server_on_write(evutil_socket_t fd, short what, void *arg);
static void server_forward(ServerConn *s);
static void login_process(ServerConn *s);

static List free_later = {&free_later, &free_later};

static const char *const state_names[] = {"free", "connecting", "login", "idle", "active", "reset", "cancel_wait"};

const char *server_state_name(ServerState st)
{
	return state_names[st];
}

#define server_log(lvl, s, fmt, ...)                                                               \
	log_at(lvl, "S-%p %s/%s@%s:%d " fmt, (void *)(s), (s)->pool->dbname, (s)->pool->user,       \
	       pool_host((s)->pool), pool_port((s)->pool), ##__VA_ARGS__)

/* The one place a server changes state (and list). */
void server_set_state(ServerConn *s, ServerState st)
{
	Pool *p = s->pool;
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

	snprintf(msg, sizeof(msg), "TLS connection to backend \"%s\" (%s:%d) failed: %s", p->backend->name,
		 pool_host(p), pool_port(p), why);
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
		s->conn.ssl = tls_connect_new(s->conn.fd, (ServerTlsMode)s->tls_mode, pool_host(s->pool));
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
	tls_failed(s, b == 'E' ? "the server refused the SSL request" : "unexpected answer to the SSL request",
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
		snprintf(msg, sizeof(msg), "server connection to backend \"%s\" lost: %s", s->pool->backend->name,
			 reason ? reason : "closed");
		int pending = s->expect_rfq; /* the client's units sent, not answered */
		server_unlink(s);
		client_server_lost(c, msg, pending);
	}
	pool_server_gone(s, failed_login, reason);
	server_set_state(s, SV_FREE);
	conn_close(&s->conn);
	params_free(&s->params);
	scram_client_free(&s->scram);
	free(s->marks);
	s->marks = NULL;
	prep_server_free(s);
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
			snprintf(msg, sizeof(msg), "cannot connect to %s:%d: %s", pool_host(s->pool),
				 pool_port(s->pool), strerror(err));
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
	st = conn_read(&s->conn);
	if (st == IO_EOF || st == IO_ERROR) {
		server_close(s, st == IO_EOF ? "server closed the connection" : "server read error");
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
			login_failed(s, "server asked for an md5 password and no usable password is configured");
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
			login_failed(s, "server asked for SCRAM and no plain-text password is configured");
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
		if (!scram_client_final(&s->scram, p->password, r->p + r->pos, msg_remaining(r), &out, err,
					sizeof(err))) {
			login_failed(s, err);
			return false;
		}
		send_password_message(s, out, strlen(out), false);
		free(out);
		break;
	case AUTH_REQ_SASL_FINAL:
		if (!scram_client_verify(&s->scram, r->p + r->pos, msg_remaining(r), err, sizeof(err))) {
			login_failed(s, err);
			return false;
		}
		s->sasl_done = true;
		return true;
	default:
		snprintf(err, sizeof(err), "server asked for unsupported authentication method %u", code);
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
			 "server role \"%s\" is a superuser or has BYPASSRLS: row-level security would not "
			 "isolate shared tenants",
			 s->pool->user);
	else if (v2)
		snprintf(s->rls_refusal, sizeof(s->rls_refusal),
			 "server role \"%s\" owns tables with row-level security not forced (%.*s): use ALTER "
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
			snprintf(text, sizeof(text), "login failed: %s (%s)", msg ? msg : "?", code ? code : "?");
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
				/* shared tenants rely on RLS: make sure this role cannot bypass it */
				proto_simple_query(&s->conn.out, RLS_CHECK_SQL);
				s->rls_check = RLS_CHECKING;
				server_flush(s);
				continue;
			}
			if (s->rls_check == RLS_CHECKING) {
				s->rls_check = RLS_DONE;
				if (s->rls_refusal[0]) {
					strlcpy_safe(s->pool->rls_refusal, s->rls_refusal, sizeof(s->pool->rls_refusal));
					log_error("backend %s: %s", s->pool->backend->name, s->rls_refusal);
				} else {
					s->pool->rls_refusal[0] = '\0';
				}
			}
			server_log(LOG_LVL_DEBUG, s, "login done, backend pid %u", s->be_pid);
			if (!s->pool->welcome_ready)
				pool_set_welcome(s->pool, &s->params);
			s->pool->failing = false;
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
 */

void server_link(ServerConn *s, Client *c)
{
	static Buf sql; /* scratch for SET statements; keeps its memory, so no allocation per link */

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
	s->unit_start = true;
	s->inject_open = false;
	s->inject_unsynced = false;
	s->unsynced_paused = false;
	s->timeout_cancel = false;
	s->batch_open = false;
	if (s->marked_by && s->marked_by != c->tenant) {
		/* Another tenant left temp tables, cursors, LISTENs or SETs here: wipe them first. */
		proto_simple_query(&s->conn.out, "DISCARD ALL");
		s->swallow_rfq++;
		prep_server_reset(s);
		prep_server_sent_sync(s);
		s->marked_by = NULL;
		s->st_sql = NULL;
		if (s->pool->welcome_ready)
			params_copy(&s->params, &s->pool->welcome);
	}
	if (!c->params_have_defaults && s->pool->welcome_ready) {
		const Params *w = &s->pool->welcome;
		for (int i = 0; i < w->n; i++)
			if (param_is_reported(w->items[i].name) && !params_get(&c->params, w->items[i].name))
				params_set(&c->params, w->items[i].name, w->items[i].value);
		c->params_have_defaults = true;
	}
	sql.off = sql.len = 0;
	/* versions are unique per list and change, so equal versions mean nothing to compare */
	if ((s->synced_client_version != c->params.version || s->synced_server_version != s->params.version) &&
	    params_fingerprint(&c->params) != params_fingerprint(&s->params) &&
	    param_sync_sql(&c->params, &s->params, &sql)) {
		buf_append(&sql, "", 1);
		proto_simple_query(&s->conn.out, (const char *)sql.data);
		s->swallow_rfq++;
		prep_server_sent_sync(s);
	}
	s->synced_client_version = c->params.version;
	s->synced_server_version = s->params.version;
	if (c->deferred_begin) {
		/* the BEGIN the client was told succeeded, now that the transaction has a server */
		proto_simple_query(&s->conn.out, c->deferred_begin);
		s->swallow_rfq++;
		prep_server_sent_sync(s);
		free(c->deferred_begin);
		c->deferred_begin = NULL;
	}
}

/* ---------------------------------------------------------------------------------------
 * Tenant state injection. The state SET travels as Parse/Bind/Execute in front of the
 * client's first message of a unit, so PostgreSQL runs it in the same implicit
 * transaction as the client's statements: if it fails, the client's statements are
 * skipped up to the Sync and the client gets the error.
 *
 * A Query (or FunctionCall) has no Sync of its own. None is sent after it: PostgreSQL
 * flushes its output at every ReadyForQuery, so a Sync there would split the reply in
 * two and cost a wake-up and a read more per transaction. Instead nothing more goes to
 * the server until the SET has completed (inject_unsynced; in the same reply as the
 * Query's results, so this holds back only a client that pipelines), and when the SET
 * fails - PostgreSQL then skips the Query and waits for a Sync - pgtenant sends the
 * Sync, whose ReadyForQuery answers the client's Query.
 */

typedef struct RfqMark {
	uint64_t ordinal;
	uint8_t kind;
} RfqMark;

enum { MARK_INJECT_END = 1, MARK_INJECT_OWN = 2 };

/* pgtenant's own Sync: after a state SET sent on its own, or ending a skip (server_forward) */
static const uint8_t sync_msg[5] = {'S', 0, 0, 0, 4};

static void mark_push(ServerConn *s, uint64_t ordinal, uint8_t kind)
{
	if (s->n_marks == s->cap_marks) {
		s->cap_marks = s->cap_marks ? s->cap_marks * 2 : 8;
		s->marks = xrealloc(s->marks, sizeof(RfqMark) * (size_t)s->cap_marks);
	}
	s->marks[s->n_marks].ordinal = ordinal;
	s->marks[s->n_marks].kind = kind;
	s->n_marks++;
}

static void mark_pop(ServerConn *s)
{
	s->n_marks--;
	memmove(s->marks, s->marks + 1, sizeof(RfqMark) * (size_t)s->n_marks);
}

/* The same text may sit at another address (a reload, tenants sharing a state): the
 * hash settles most comparisons without touching either string. */
/*
 * The unit whose replies come next (ordinal rfq_recv + 1) starts with an injected
 * SET: its ParseComplete, BindComplete and CommandComplete are pgtenant's. Counted per
 * unit, by position: several units may be in flight with a SET each, and a client's
 * own replies must never be taken for one of them.
 */
static void inject_arm(ServerConn *s)
{
	s->inject_swallow = s->n_marks && s->marks[0].ordinal == s->rfq_recv + 1 ? 3 : 0;
}

static bool state_in_force(const ServerConn *s, const Tenant *t)
{
	return s->st_inflight == 0 && s->st_sql &&
	       (s->st_sql == t->state_sql || (s->st_hash == t->state_hash && strcmp(s->st_sql, t->state_sql) == 0));
}

void server_unit_begin(ServerConn *s, Client *c, uint8_t type)
{
	const Tenant *t = c->tenant;

	s->unit_start = false;
	if (!t->state_sql || state_in_force(s, t))
		return;
	buf_append(&s->conn.out, t->state_msgs, t->state_msgs_len);
	s->st_inflight++;
	s->st_pending_sql = t->state_sql;
	s->st_pending_hash = t->state_hash;
	s->inject_open = true;
	/* the unit's ReadyForQuery will be the next one counted in server_unit_end */
	mark_push(s, s->rfq_sent + 1, MARK_INJECT_END);
	if (s->rfq_sent == s->rfq_recv)
		inject_arm(s);
}

void server_unit_begin_standalone(ServerConn *s, Client *c)
{
	const Tenant *t = c->tenant;

	if (!t->state_sql || state_in_force(s, t))
		return;
	buf_append(&s->conn.out, t->state_msgs, t->state_msgs_len);
	buf_append(&s->conn.out, sync_msg, sizeof(sync_msg));
	s->st_inflight++;
	s->st_pending_sql = t->state_sql;
	s->st_pending_hash = t->state_hash;
	if (s->expect_rfq == 0)
		s->busy_since = g_now;
	s->rfq_sent++;
	s->expect_rfq++;
	prep_server_sent_sync(s);
	mark_push(s, s->rfq_sent, MARK_INJECT_OWN);
	if (s->rfq_sent == s->rfq_recv + 1)
		inject_arm(s);
	s->hold = true;
	s->hold_failed = false;
}

void server_unit_end(ServerConn *s, uint8_t type)
{
	if (s->expect_rfq == 0)
		s->busy_since = g_now;
	s->rfq_sent++;
	s->expect_rfq++;
	s->unit_start = true;
	prep_server_sent_sync(s);
	if (!s->inject_open)
		return;
	s->inject_open = false;
	if (type != 'S')
		s->inject_unsynced = true;
}

/* ReadyForQuery arrived for a client unit: settle the tenant state. Returns false to drop it. */
static bool settle_rfq(ServerConn *s, char status)
{
	uint64_t ordinal = ++s->rfq_recv;
	bool forward = true;
	bool ended_inject = false;

	if (s->n_marks && s->marks[0].ordinal == ordinal) {
		uint8_t kind = s->marks[0].kind;
		mark_pop(s);
		ended_inject = true;
		if (kind == MARK_INJECT_OWN) {
			forward = false;
			s->hold = false;
			s->hold_failed = s->error_seen;
			s->hold_released = true;
		}
	}
	if (ended_inject) {
		s->st_inflight--;
		if (s->error_seen || s->rollback_seen || status == 'E') {
			s->st_sql = NULL;
			s->st_in_xact = false;
		} else {
			s->st_sql = s->st_pending_sql;
			s->st_hash = s->st_pending_hash;
			s->st_in_xact = status == 'T';
			s->st_spoiled = false;
		}
	} else if (s->st_in_xact && s->rollback_seen) {
		s->st_spoiled = true;
	}
	if (status == 'I' && s->st_in_xact) {
		/* the transaction that applied the state is over: kept only if it committed whole */
		if (s->st_spoiled || s->rollback_seen)
			s->st_sql = NULL;
		s->st_in_xact = false;
		s->st_spoiled = false;
	}
	s->error_seen = false;
	s->rollback_seen = false;
	return forward;
}

/* Marks a connection whose state a client statement may have changed. */
void server_state_unknown(ServerConn *s)
{
	s->st_sql = NULL;
	/* a unit in flight that applied the state does not make it known again */
	s->st_pending_sql = NULL;
}

void server_unlink(ServerConn *s)
{
	if (s->client) {
		Client *c = s->client;
		c->server = NULL;
		if ((c->bp_paused || s->unsynced_paused) && !c->closing) {
			c->bp_paused = false;
			conn_want_read(&c->conn, true);
		}
		s->unsynced_paused = false;
	}
	s->client = NULL;
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
		/* DISCARD ALL / RESET ALL return every setting to its default: forget what we SET. */
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
	}
	proto_simple_query(&s->conn.out, q);
	s->swallow_rfq++;
	prep_server_sent_sync(s);
	s->st_sql = NULL;
	server_flush(s);
}

static void note_parameter(ServerConn *s, const uint8_t *body, size_t len)
{
	MsgReader r;
	const char *name, *value;
	msg_reader_init(&r, body, len);
	if (!msg_get_cstr(&r, &name) || !msg_get_cstr(&r, &value))
		return;
	params_set(&s->params, name, value);
	if (s->client && !param_is_readonly(name))
		params_set(&s->client->params, name, value);
}

/* Is this message one pgtenant must see whole (not just stream through)? */
static inline bool must_inspect(uint8_t type)
{
	return type == 'Z' || type == 'S' || type == 'E' || type == 'C';
}

static bool is_rollback_tag(const uint8_t *body, size_t len)
{
	return (len >= 8 && memcmp(body, "ROLLBACK", 8) == 0) || (len >= 7 && memcmp(body, "PREPARE", 7) == 0);
}

static void server_forward(ServerConn *s)
{
	Buf *in = &s->conn.in;
	bool release = false;
	bool send_sync = false; /* an injected SET failed ahead of a Query: end the skip */
	bool resume = false;    /* the client held back by inject_unsynced may go on */

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
		if (buf_avail(in) < MSG_HEADER_LEN)
			break;
		uint8_t type = buf_head(in)[0];
		uint32_t len = read_u32be(buf_head(in) + 1);
		size_t total = 1 + (size_t)len;
		if (len < 4 || len > 0x40000000u) {
			server_close(s, "invalid message length from server");
			return;
		}
		if (must_inspect(type) && buf_avail(in) < total) {
			buf_reserve(in, total - buf_avail(in));
			break;
		}
		const uint8_t *body = buf_head(in) + MSG_HEADER_LEN;
		size_t blen = len - 4;
		bool drop = s->swallow_rfq > 0 || !c;

		switch (type) {
		case 'S':
			note_parameter(s, body, blen);
			/* ParameterStatus is legal at any time; pass it on even around pgtenant's own queries. */
			if (c)
				drop = false;
			break;
		case 'E':
			if (proto_error_is_fatal(body, blen)) {
				/* The server is going away; its client hears 08006 from server_close instead. */
				const char *code, *msg;
				char why[300];
				proto_error_fields(body, blen, &code, &msg);
				snprintf(why, sizeof(why), "%s (%s)", msg ? msg : "fatal error", code ? code : "?");
				buf_consume(in, total);
				server_close(s, why);
				return;
			}
			if (drop) {
				const char *code, *msg;
				proto_error_fields(body, blen, &code, &msg);
				server_log(LOG_LVL_WARNING, s, "error in a statement of pgtenant's: %s (%s)",
					   msg ? msg : "?", code ? code : "?");
				/* a reset that failed leaves the connection in a state nobody knows */
				if (s->state == SV_RESET)
					s->dirty = true;
				if (!c && s->swallow_rfq == 0) {
					server_close(s, "server sent an error while idle");
					return;
				}
				break;
			}
			s->error_seen = true;
			prep_server_error(s);
			if (s->timeout_cancel) {
				const char *code, *msg;
				proto_error_fields(body, blen, &code, &msg);
				if (code && strcmp(code, "57014") == 0) {
					/* the server says "user request"; the client should learn why */
					proto_error(&c->conn.out, "ERROR", "57014", "canceling statement due to query_timeout",
						    NULL);
					s->timeout_cancel = false;
					drop = true;
					break;
				}
			}
			if (s->inject_swallow > 0) {
				/* The state SET itself failed: PostgreSQL skips the client's unit up to
				 * its Sync, and when the unit is the Query sent with none (always the
				 * last one sent), pgtenant sends it now. */
				s->inject_swallow = 0;
				if (s->inject_unsynced && s->rfq_recv + 1 == s->rfq_sent) {
					s->inject_unsynced = false;
					send_sync = true;
				}
			}
			break;
		case '1':
			if (s->inject_swallow > 0 && !drop) {
				s->inject_swallow--;
				drop = true;
			} else if (prep_server_parse_complete(s)) {
				drop = true;
			}
			break;
		case '2':
			if (s->inject_swallow > 0 && !drop) {
				s->inject_swallow--;
				drop = true;
			}
			break;
		case '3':
			if (prep_server_close_complete(s, c))
				drop = true;
			break;
		case 'C':
			if (s->inject_swallow > 0 && !drop) {
				/* the SET completed; behind a Query without Sync, what was held back may follow */
				if (--s->inject_swallow == 0 && s->inject_unsynced && s->rfq_recv + 1 == s->rfq_sent) {
					s->inject_unsynced = false;
					resume = s->unsynced_paused;
					s->unsynced_paused = false;
				}
				drop = true;
			} else if (!drop && is_rollback_tag(body, blen)) {
				s->rollback_seen = true;
			}
			break;
		case 'Z':
			s->tx_status = (char)body[0];
			prep_server_ready(s);
			if (s->swallow_rfq > 0) {
				s->swallow_rfq--;
				if (s->swallow_rfq == 0 && s->state == SV_RESET) {
					buf_consume(in, total);
					pool_server_ready(s);
					return;
				}
				break;
			}
			if (!c) {
				drop = true;
				break;
			}
			if (s->expect_rfq > 0)
				s->expect_rfq--;
			s->busy_since = g_now;
			s->idle_since = g_now;
			if (s->expect_rfq == 0)
				s->timeout_cancel = false;
			if (!settle_rfq(s, s->tx_status))
				drop = true;
			inject_arm(s);
			if (s->inject_unsynced && s->expect_rfq == 0) {
				/* defensive: the unit ended without its SET's completion counted */
				s->inject_unsynced = false;
				resume = s->unsynced_paused;
				s->unsynced_paused = false;
			}
			if (!drop) {
				TenantStats *st = &c->tenant->stats;
				if (c->query_start) {
					st->query_time_us += (uint64_t)(g_now - c->query_start);
					c->query_start = 0;
				}
				if (c->tx_status == 'I' && s->tx_status != 'I')
					c->xact_start = g_now;
				if (s->tx_status == 'I') {
					st->xacts++;
					if (c->xact_start)
						st->xact_time_us += (uint64_t)(g_now - c->xact_start);
					c->xact_start = 0;
				}
			}
			c->tx_status = s->tx_status;
			if (s->expect_rfq == 0 && s->tx_status == 'I' && c->fwd_remain == 0 && !s->hold_released &&
			    !s->batch_open &&
			    (g_shutdown || c->tenant->pool_mode == POOL_MODE_TRANSACTION))
				release = true;
			break;
		case 'N':
		case 'A':
			break;
		default:
			if (!c) {
				server_close(s, "unexpected message from an idle server");
				return;
			}
			break;
		}
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
		if (c && conn_out_full(&c->conn)) {
			conn_want_read(&s->conn, false);
			s->bp_paused = true;
			break;
		}
	}
	if (s->state == SV_FREE)
		return;
	if (send_sync) {
		buf_append(&s->conn.out, sync_msg, sizeof(sync_msg));
		if (!server_flush(s))
			return;
	}
	Client *c = s->client;
	if (c && s->hold_released) {
		s->hold_released = false;
		if (!client_flush(c))
			return;
		client_hold_done(c, s->hold_failed);
		if (s->state == SV_FREE || s->client != c)
			return;
	}
	if (c) {
		if (!client_flush(c))
			return; /* closing the client released or closed s */
		if (s->bp_paused && !release && s->client == c && buf_avail(&c->conn.out) < CONN_LOW_WATER) {
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
			pool_release(s);
			/* a removed or disabled tenant's clients leave at the end of their transaction */
			if (c->tenant->removed) {
				client_fatal(c, "57P01", "terminating connection: the tenant was removed from the configuration", NULL);
				return;
			}
			if (c->tenant->disabled) {
				client_fatal(c, "55000", "terminating connection: the tenant was disabled", NULL);
				return;
			}
			/* the client may have pipelined its next transaction already */
			if (!c->closing && buf_avail(&c->conn.in))
				client_output_drained(c);
		}
	}
	if (s->state != SV_FREE && !buf_avail(in))
		conn_shrink(&s->conn);
	/* released above, the client went on already (client_output_drained there) */
	if (resume && c && !c->closing && c->server == s)
		client_output_drained(c);
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
	int fd = net_connect(pool_host(s->pool), pool_port(s->pool), &in_progress, err, sizeof(err));

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

	if (s->expect_rfq > 0) {
		usec_t limit = config_tenant_query_timeout(g_cfg, tc);
		if (limit > 0 && !s->timeout_cancel && g_now - s->busy_since > limit) {
			server_log(LOG_LVL_INFO, s, "query_timeout: cancelling backend pid %u", s->be_pid);
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
			server_unlink(s);
			server_reset(s, "ROLLBACK", false);
			client_set_state(c, CL_IDLE);
			client_fatal(c, "25P03", "terminating connection due to idle_transaction_timeout", NULL);
		}
		return;
	}
	/* session mode: a client idle outside a transaction while holding its server */
	usec_t limit = config_tenant_client_idle_timeout(g_cfg, tc);
	if (limit > 0 && g_now - s->idle_since > limit)
		client_fatal(c, "57P05", "terminating connection due to client_idle_timeout", NULL);
}

/* Cancels that never settle (a backend gone silent) release their target after the connect timeout. */
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
