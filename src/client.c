/*
 * client: see include/client.h.
 *
 * The data path starts here: client_on_read() -> client_forward() frames
 * the client's messages, acquires a server connection when the client has
 * none (pool_acquire), and appends the bytes to the server's output. Only
 * the message type and length are looked at, and the whole text of Query and
 * Parse where statements are analysed; bodies stream through, so a 1 GB COPY
 * never sits in memory whole.
 *
 * Invariants: a client's messages reach a server only while the client is
 * CL_ACTIVE and linked to it; every message written queues its answer on the
 * server (server_expect_client, or prepare.c for what it rewrites); the first
 * message of a unit goes through server_unit_start, which puts the tenant's
 * state in force ahead of it or holds the client until it can.
 */
#include "client.h"

#include "admin.h"
#include "audit.h"
#include "authq.h"
#include "control.h"
#include "log.h"
#include "onboard.h"
#include "net.h"
#include "pgtenant.h"
#include "pool.h"
#include "prepare.h"
#include "router.h"
#include "proto.h"
#include "server.h"
#include "sqllex.h"
#include "stats.h"
#include "template.h"
#include "tenant.h"
#include "tls.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

List g_login_clients = {&g_login_clients, &g_login_clients};
List g_idle_clients = {&g_idle_clients, &g_idle_clients};
List g_active_clients = {&g_active_clients, &g_active_clients};
List g_console_clients = {&g_console_clients, &g_console_clients};
int g_n_clients;

/* Closed clients are freed at the end of the loop turn, so callers up the stack stay valid. */
static List free_later = {&free_later, &free_later};

#define CANCEL_HASH_SIZE 4096
static Client *cancel_hash[CANCEL_HASH_SIZE];

static void client_on_read(evutil_socket_t fd, short what, void *arg);
static void client_on_write(evutil_socket_t fd, short what, void *arg);
static void client_forward(Client *c);
static void login_process(Client *c);
static bool direct_tls_hello(Client *c);
static void tls_handshake_step(Client *c);
static void client_throttle_fire(evutil_socket_t fd, short what, void *arg);
struct LoginCtx;
static void login_ctx_free(struct LoginCtx *ctx);

static const char *const state_names[] = {"free",    "login",  "welcome", "idle",
                                          "waiting", "active", "console"};

const char *client_state_name(ClientState st)
{
	return state_names[st];
}

#define client_log(lvl, c, fmt, ...)                                                               \
	log_at(lvl, "C-%p %s/%s@%s:%d " fmt, (void *)(c), (c)->tenant ? (c)->tenant->name : "-",   \
	       (c)->user[0] ? (c)->user : "-", (c)->addr, (c)->port, ##__VA_ARGS__)

/* The per-tenant count a state is counted in (SHOW TENANTS, metrics), or NULL. */
static int *tenant_state_count(Client *c, ClientState st)
{
	if (!c->tenant)
		return NULL;
	switch (st) {
	case CL_IDLE:
		return &c->tenant->cl_idle;
	case CL_WAITING:
	case CL_WELCOME_WAIT:
		return &c->tenant->cl_waiting;
	case CL_ACTIVE:
		return &c->tenant->cl_active;
	default:
		return NULL;
	}
}

/* The one place a client changes state: unlink from the old list, link to the new one. */
void client_set_state(Client *c, ClientState st)
{
	Pool *p = c->pool;
	int *count = tenant_state_count(c, c->state);

	if (count)
		(*count)--;
	if ((count = tenant_state_count(c, st)) != NULL)
		(*count)++;

	/* the target's count and list of waiting pools (pool.c's hand-over between pools) */
	if (p) {
		int d = (st == CL_WAITING || st == CL_WELCOME_WAIT) -
		        (c->state == CL_WAITING || c->state == CL_WELCOME_WAIT);
		if (d)
			pool_wait_changed(p, d);
	}
	if (c->state == CL_WAITING && p) {
		TenantQueue *q = pool_tenant_queue(p, c->tenant);
		p->n_waiting--;
		list_del(&c->queue_node);
		if (--q->n_waiting == 0) {
			list_del(&q->ring_node);
			p->n_queues--;
		}
	}
	list_del(&c->node);
	c->state = st;
	switch (st) {
	case CL_LOGIN:
		list_append(&g_login_clients, &c->node);
		break;
	case CL_WELCOME_WAIT:
		list_append(&p->welcome_wait, &c->node);
		break;
	case CL_IDLE:
		list_append(&g_idle_clients, &c->node);
		c->idle_since = g_now;
		break;
	case CL_WAITING: {
		TenantQueue *q = pool_tenant_queue(p, c->tenant);
		list_append(&p->waiting, &c->node);
		list_append(&q->clients, &c->queue_node);
		p->n_waiting++;
		if (q->n_waiting++ == 0) {
			q->credit = c->tenant->weight;
			list_append(&p->ring, &q->ring_node);
			p->n_queues++;
		}
		break;
	}
	case CL_ACTIVE:
		list_append(&g_active_clients, &c->node);
		break;
	case CL_CONSOLE:
		list_append(&g_console_clients, &c->node);
		break;
	case CL_FREE:
		break;
	}
}

static void cancel_hash_add(Client *c)
{
	Client **slot;
	do {
		if (!auth_random_bytes((uint8_t *)&c->cancel_pid, 4) ||
		    !auth_random_bytes((uint8_t *)&c->cancel_key, 4)) {
			c->cancel_pid = (uint32_t)random();
			c->cancel_key = (uint32_t)random();
		}
		c->cancel_pid &= 0x7fffffff; /* a positive "pid", as clients expect */
		slot = &cancel_hash[c->cancel_pid % CANCEL_HASH_SIZE];
		Client *o;
		for (o = *slot; o; o = o->cancel_next)
			if (o->cancel_pid == c->cancel_pid)
				break;
		if (!o)
			break;
	} while (1);
	c->cancel_next = *slot;
	*slot = c;
}

static void cancel_hash_del(Client *c)
{
	Client **pp = &cancel_hash[c->cancel_pid % CANCEL_HASH_SIZE];
	for (; *pp; pp = &(*pp)->cancel_next) {
		if (*pp == c) {
			*pp = c->cancel_next;
			c->cancel_next = NULL;
			return;
		}
	}
}

void client_accept(int fd)
{
	Client *c = xcalloc(1, sizeof(*c));

	list_init(&c->node);
	list_init(&c->queue_node);
	list_init(&c->throttle_node);
	conn_init(&c->conn, fd, client_on_read, client_on_write, c);
	c->conn.watch_close = true;
	net_peer_name(fd, c->addr, sizeof(c->addr), &c->port);
	c->connect_time = g_now;
	c->tx_status = 'I';
	params_init(&c->params);
	g_n_clients++;
	client_set_state(c, CL_LOGIN);
	conn_want_read(&c->conn, true);
}

bool client_flush(Client *c)
{
	if (c->closing)
		return false;
	if (conn_flush(&c->conn) == IO_ERROR) {
		client_close(c, "client connection lost");
		return false;
	}
	if (c->close_after_flush && !buf_avail(&c->conn.out)) {
		client_close(c, NULL);
		return false;
	}
	return true;
}

void client_fatal(Client *c, const char *sqlstate, const char *msg, const char *hint)
{
	if (c->closing)
		return;
	if (c->state == CL_LOGIN && c->login_stage == LOGIN_TLS_HANDSHAKE) {
		/* mid-handshake there is no channel: plaintext now would only break the client's
		 * TLS */
		client_log(LOG_LVL_INFO, c, "closing during the TLS handshake: %s (%s)", msg,
		           sqlstate);
		client_close(c, NULL);
		return;
	}
	client_log(LOG_LVL_INFO, c, "closing: %s (%s)", msg, sqlstate);
	if (c->state == CL_LOGIN)
		audit_login(c->tenant ? c->tenant->name : NULL, c->user[0] ? c->user : NULL,
		            c->addr, false, msg);
	proto_error(&c->conn.out, "FATAL", sqlstate, msg, hint);
	c->close_after_flush = true;
	conn_want_read(&c->conn, false);
	client_flush(c);
}

/* What to do with the server of a client that goes away. */
static void detach_server(Client *c)
{
	ServerConn *s = c->server;

	if (!s)
		return;
	if (server_busy(s) || c->fwd_remain || s->dirty) {
		/* Replies owed, a message half-written or a transaction open: nobody else may have
		 * it (a connection leaves its client only with an empty reply queue). */
		server_unlink(s);
		server_close(s, "client went away mid-transaction");
		return;
	}
	server_release(s);
}

void client_close(Client *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	if (reason && (!g_cfg || g_cfg->log_disconnections) && c->state != CL_LOGIN)
		client_log(LOG_LVL_INFO, c, "closing: %s", reason);
	if (c->state == CL_WAITING)
		pool_unwait(c);
	if (c->console) {
		control_forget_console(c);
		onboard_forget_console(c);
	}
	list_del(&c->throttle_node);
	detach_server(c);
	if (c->cancel_pid)
		cancel_hash_del(c);
	if (c->tenant && c->state != CL_LOGIN)
		c->tenant->n_clients--;
	if (c->login_ctx)
		template_forget(c); /* a template check may be out for it */
	client_set_state(c, CL_FREE);
	conn_close(&c->conn);
	if (c->scram) {
		scram_server_free(c->scram);
		free(c->scram);
		c->scram = NULL;
	}
	params_free(&c->params);
	login_ctx_free(c->login_ctx);
	c->login_ctx = NULL;
	prep_client_free(c);
	stats_client_free(c);
	free(c->shape);
	c->shape = NULL;
	free(c->deferred_begin);
	c->deferred_begin = NULL;
	g_n_clients--;
	list_append(&free_later, &c->node);
}

/* Frees clients closed during this loop turn. */
void client_maintain(void)
{
	List *it, *tmp;
	list_for_each_safe(it, &free_later, tmp)
	{
		list_del(it);
		free(list_entry(it, Client, node));
	}
}

static void client_on_write(evutil_socket_t fd, short what, void *arg)
{
	Client *c = arg;
	time_update();
	if (c->state == CL_LOGIN && c->login_stage == LOGIN_TLS_HANDSHAKE) {
		tls_handshake_step(c);
		client_maintain();
		return;
	}
	if (!client_flush(c))
		return;
	if (buf_avail(&c->conn.out) < CONN_LOW_WATER && c->server)
		server_output_drained(c->server);
	client_maintain();
}

/*
 * A client queued for a server keeps its read event: re-arming it for every
 * queued transaction would cost two epoll_ctl calls each, and a client that
 * leaves while queued is noticed at once. What it sends meanwhile (a pipelined
 * next statement) waits in its buffer; past the high-water mark reading stops
 * until client_resume.
 */
static void client_wait_input(Client *c)
{
	if (buf_avail(&c->conn.in) > CONN_HIGH_WATER)
		conn_want_read(&c->conn, false);
}

static void client_on_read(evutil_socket_t fd, short what, void *arg)
{
	Client *c = arg;
	IoStatus st;

	time_update();
	if (c->conn.close_armed) {
		/* not read now: only a hang-up matters (conn.h) */
		if (conn_peer_gone(&c->conn, what))
			client_close(c, "client closed connection");
		client_maintain();
		return;
	}
	if (c->state == CL_LOGIN &&
	    (c->login_stage == LOGIN_TLS_HANDSHAKE || direct_tls_hello(c))) {
		tls_handshake_step(c);
		client_maintain();
		return;
	}
	st = conn_read(&c->conn);
	if (st == IO_EOF || st == IO_ERROR) {
		client_close(c, st == IO_EOF ? "client closed connection" : "client read error");
	} else if (st == IO_OK) {
		if (c->state == CL_LOGIN)
			login_process(c);
		else if (c->state == CL_CONSOLE)
			admin_process(c);
		else if (c->state == CL_WELCOME_WAIT)
			conn_want_read(&c->conn,
			               false); /* nothing is expected before the welcome */
		else if (c->state == CL_WAITING)
			client_wait_input(c);
		else
			client_forward(c);
	}
	client_maintain();
}

/* ---------------------------------------------------------------------------------------
 * Login: startup packet, authentication, tenant checks.
 */

static inline bool client_is_unix(const Client *c)
{
	return c->port == 0 && strcmp(c->addr, "unix") == 0;
}

/* SSLRequest accepted: 'S' goes out in clear, then the handshake runs on the read/write events. */
static void start_tls(Client *c)
{
	if (buf_avail(&c->conn.in)) {
		/* bytes sent before the handshake would later pass as encrypted (CVE-2021-23214) */
		client_fatal(c, "08P01", "received unencrypted data after SSL request", NULL);
		return;
	}
	buf_append(&c->conn.out, "S", 1);
	if (!client_flush(c))
		return;
	if (buf_avail(&c->conn.out)) {
		client_close(c, "could not send the SSLRequest answer");
		return;
	}
	c->conn.ssl = tls_accept_new(c->conn.fd);
	if (!c->conn.ssl) {
		client_log(LOG_LVL_WARNING, c, "cannot start TLS");
		client_close(c, NULL);
		return;
	}
	c->login_stage = LOGIN_TLS_HANDSHAKE;
	conn_want_read(&c->conn, true);
}

/*
 * PostgreSQL 17's direct TLS: the first byte is a TLS handshake record
 * instead of a startup packet (whose first byte, a length's top byte, is 0).
 * Peeked, so OpenSSL reads the ClientHello itself.
 */
static bool direct_tls_hello(Client *c)
{
	uint8_t first;
	ssize_t n;

	if (c->login_stage != LOGIN_STARTUP || c->conn.ssl || buf_avail(&c->conn.in) ||
	    !tls_accept_enabled())
		return false;
	do {
		n = recv(c->conn.fd, &first, 1, MSG_PEEK);
	} while (n < 0 && errno == EINTR);
	if (n != 1 || first != 0x16)
		return false;
	c->conn.ssl = tls_accept_new(c->conn.fd);
	if (!c->conn.ssl)
		return false;
	c->tls_direct = true;
	c->login_stage = LOGIN_TLS_HANDSHAKE;
	return true;
}

static void tls_handshake_step(Client *c)
{
	char err[256];
	IoStatus st = conn_tls_handshake(&c->conn, err, sizeof(err));

	if (st == IO_AGAIN)
		return;
	if (st != IO_OK) {
		client_log(LOG_LVL_INFO, c, "TLS handshake failed: %s", err);
		audit_login(NULL, NULL, c->addr, false, "TLS handshake failed");
		client_close(c, NULL);
		return;
	}
	c->login_stage = LOGIN_STARTUP;
	if (c->tls_direct && !tls_alpn_postgresql(c->conn.ssl)) {
		client_fatal(c, "08P01",
		             "direct TLS connection without ALPN protocol \"postgresql\"", NULL);
		return;
	}
	if (LOG_LVL_DEBUG <= g_log_level) {
		char desc[128];
		const char *sni = tls_server_name(c->conn.ssl);
		tls_describe(c->conn.ssl, desc, sizeof(desc));
		client_log(LOG_LVL_DEBUG, c, "TLS established: %s%s%s%s", desc,
		           c->tls_direct ? " (direct)" : "", sni ? ", server name " : "",
		           sni ? sni : "");
	}
	/* the startup packet may already sit decrypted inside OpenSSL: this kicks the read event */
	conn_want_read(&c->conn, true);
}

/*
 * A startup parameter kept for the client. client_encoding is reported back in
 * PostgreSQL's spelling of the name (utf8 -> UTF8, eucjp -> EUC_JP), as a
 * server would; an unknown one goes as sent (its SET fails at the first unit).
 */
static void set_startup_param(Client *c, const char *name, const char *value)
{
	if (strcasecmp(name, "client_encoding") == 0) {
		int enc = pg_char_to_encoding(value);
		const char *canon = enc >= 0 ? pg_encoding_to_char(enc) : NULL;
		if (canon && *canon)
			value = canon;
	}
	params_set(&c->params, name, value);
}

static bool parse_options(Client *c, const char *options, const char **tenant_opt, char *tenant_buf,
                          size_t tenant_len)
{
	/* "-c name=value" and "--name=value", separated by spaces; "\ " escapes a space. */
	const char *p = options;
	char word[1024];

	*tenant_opt = NULL;
	while (*p) {
		size_t n = 0;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		while (*p && *p != ' ' && *p != '\t' && n < sizeof(word) - 1) {
			if (*p == '\\' && p[1])
				p++;
			word[n++] = *p++;
		}
		word[n] = '\0';
		const char *setting = NULL;
		if (strcmp(word, "-c") == 0) {
			n = 0;
			while (*p == ' ' || *p == '\t')
				p++;
			while (*p && *p != ' ' && *p != '\t' && n < sizeof(word) - 1) {
				if (*p == '\\' && p[1])
					p++;
				word[n++] = *p++;
			}
			word[n] = '\0';
			setting = word;
		} else if (strncmp(word, "-c", 2) == 0) {
			setting = word + 2;
		} else if (strncmp(word, "--", 2) == 0) {
			setting = word + 2;
		} else {
			client_fatal(c, "08P01",
			             "unsupported startup option; only -c name=value is accepted",
			             NULL);
			return false;
		}
		char *eq = strchr(setting, '=');
		if (!eq || eq == setting) {
			client_fatal(c, "08P01", "invalid -c option in startup options", NULL);
			return false;
		}
		*eq = '\0';
		/* "--name" uses '-' where GUC names use '_' */
		for (char *q = (char *)setting; *q; q++)
			if (*q == '-')
				*q = '_';
		if (strcasecmp(setting, "pgtenant.tenant") == 0) {
			strlcpy_safe(tenant_buf, eq + 1, tenant_len);
			*tenant_opt = tenant_buf;
		} else {
			set_startup_param(c, setting, eq + 1);
		}
	}
	return true;
}

static bool forbidden_param(Client *c, const char *name)
{
	TenantMode mode = c->tenant->conf->mode;
	if (mode == TENANT_MODE_DATABASE)
		return false;
	return strcasecmp(name, "search_path") == 0 || strcasecmp(name, "role") == 0 ||
	       strcasecmp(name, "session_authorization") == 0 ||
	       strcasecmp(name, g_cfg->tenant_guc) == 0;
}

/* What the startup packet settled, kept until authentication is done (login_finish, client_close
 * free it). */
struct LoginCtx {
	TenantResult result;
	char bad[128];
	bool bound; /* the auth_file entry was "user.tenant": a credential for that tenant only */
	bool fake_auth; /* unknown user: go through the motions, then fail */
	uint8_t md5_salt[4];
	const char *secret;   /* from the auth file (not owned), or secret_buf */
	char *secret_buf;     /* owned: from auth_query */
	AuthqRequest *lookup; /* auth_query in flight: the login waits for it */
	bool tmpl_pending;    /* a template tenant's existence is being checked: same */
	bool tmpl_checked;
	bool tmpl_beside; /* bad names a template's tenant beside the tenant another source named */
	char fake[160];   /* the made-up secret of an unknown user */
	char bound_tenant[CONFIG_NAME_MAX + 1];
	char login_user[64]; /* the user name as the client sent it (md5 hashes with it) */
	char database[64];   /* the startup database, for "no tenant" errors */
};

static void login_finish(Client *c);
static void cert_auth(Client *c);

static void login_ctx_free(struct LoginCtx *ctx)
{
	if (!ctx)
		return;
	authq_cancel(ctx->lookup);
	if (ctx->secret_buf) {
		OPENSSL_cleanse(ctx->secret_buf, strlen(ctx->secret_buf));
		free(ctx->secret_buf);
	}
	free(ctx);
}

static void start_password_auth(Client *c)
{
	struct LoginCtx *ctx = c->login_ctx;
	AuthType at = g_cfg->auth_type;

	/* a user missing from auth_file has no secret: trust and cert need none (pg_isready) */
	if (at == AUTH_TRUST) {
		login_finish(c);
		return;
	}
	if (at == AUTH_CERT) {
		cert_auth(c);
		return;
	}
	/* unknown users carry a made-up plain secret (handle_startup) */
	SecretKind kind = ctx->secret ? auth_secret_kind(ctx->secret) : SECRET_PLAIN;
	/* md5 cannot be answered from a SCRAM verifier; SCRAM cannot use an md5 hash. */
	bool use_scram = (at == AUTH_SCRAM && kind != SECRET_MD5) ||
	                 (at == AUTH_MD5 && kind == SECRET_SCRAM);
	if (use_scram) {
		static const char mech[] = "SCRAM-SHA-256\0";
		/* over TLS, channel binding to our certificate (tls-server-end-point) is offered
		 * first */
		static const char mech_plus[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
		uint8_t cb[64];
		if (c->conn.ssl && tls_server_end_point(c->conn.ssl, cb, sizeof(cb)) > 0)
			proto_auth_request(&c->conn.out, AUTH_REQ_SASL, mech_plus,
			                   sizeof(mech_plus));
		else
			proto_auth_request(&c->conn.out, AUTH_REQ_SASL, mech, sizeof(mech));
		c->login_stage = LOGIN_SASL_INIT;
	} else {
		if (!auth_random_bytes(ctx->md5_salt, 4)) {
			client_fatal(c, "XX000", "could not generate random salt", NULL);
			return;
		}
		proto_auth_request(&c->conn.out, AUTH_REQ_MD5, ctx->md5_salt, 4);
		c->login_stage = LOGIN_PASSWORD;
	}
	client_flush(c);
}

/*
 * Authentication failed: counted as the named tenant's auth failure (not as
 * "refused", which is after authentication). c->tenant stays for the log
 * and audit lines; a client still logging in is no tenant's client.
 */
static void auth_refuse(Client *c, const char *sqlstate, const char *msg)
{
	if (c->tenant)
		c->tenant->stats.auth_failures++;
	client_fatal(c, sqlstate, msg, NULL);
}

static void auth_failed(Client *c)
{
	char msg[200];
	snprintf(msg, sizeof(msg), "password authentication failed for user \"%s\"", c->user);
	auth_refuse(c, "28P01", msg);
}

static void handle_password_message(Client *c, const uint8_t *body, size_t len)
{
	struct LoginCtx *ctx = c->login_ctx;
	MsgReader r;
	msg_reader_init(&r, body, len);

	if (!ctx) {
		client_fatal(c, "08P01", "unexpected password message", NULL);
		return;
	}
	if (c->login_stage == LOGIN_PASSWORD) {
		const char *resp;
		if (!msg_get_cstr(&r, &resp)) {
			client_fatal(c, "08P01", "invalid password packet", NULL);
			return;
		}
		/* libpq salts md5 with the user name it sent, tenant suffix included */
		if (ctx->fake_auth ||
		    !auth_md5_verify(ctx->secret, ctx->login_user, ctx->md5_salt, resp)) {
			auth_failed(c);
			return;
		}
		login_finish(c);
		return;
	}
	if (c->login_stage == LOGIN_SASL_INIT) {
		const char *mech;
		uint32_t n;
		const uint8_t *data;
		char *out = NULL;
		char err[160] = "";
		uint8_t cb[64];
		size_t cb_len = c->conn.ssl ? tls_server_end_point(c->conn.ssl, cb, sizeof(cb)) : 0;
		if (!msg_get_cstr(&r, &mech) || !msg_get_u32(&r, &n) || n == 0xffffffffu ||
		    !msg_get_bytes(&r, n, &data)) {
			client_fatal(c, "08P01", "malformed SASLInitialResponse", NULL);
			return;
		}
		bool plus = cb_len > 0 && strcmp(mech, "SCRAM-SHA-256-PLUS") == 0;
		if (!plus && strcmp(mech, "SCRAM-SHA-256") != 0) {
			client_fatal(c, "28000",
			             "client selected an invalid SASL authentication mechanism",
			             NULL);
			return;
		}
		if (!c->scram)
			c->scram = xcalloc(1, sizeof(ScramServer));
		bool ok = scram_server_init(c->scram, ctx->secret, c->user);
		if (ok) {
			scram_server_channel_binding(c->scram, cb_len > 0, plus, cb, cb_len);
			ok = scram_server_first(c->scram, data, n, &out, err, sizeof(err));
		}
		if (!ok) {
			client_fatal(c, "08P01", err[0] ? err : "malformed SCRAM message", NULL);
			free(out);
			return;
		}
		proto_auth_request(&c->conn.out, AUTH_REQ_SASL_CONTINUE, out, strlen(out));
		free(out);
		c->login_stage = LOGIN_SASL_FINAL;
		client_flush(c);
		return;
	}
	if (c->login_stage == LOGIN_SASL_FINAL) {
		char *out = NULL;
		char err[160];
		if (!c->scram || !scram_server_final(c->scram, body, len, &out, err, sizeof(err)) ||
		    ctx->fake_auth) {
			free(out);
			auth_failed(c);
			return;
		}
		proto_auth_request(&c->conn.out, AUTH_REQ_SASL_FINAL, out, strlen(out));
		free(out);
		scram_server_free(c->scram);
		free(c->scram);
		c->scram = NULL;
		login_finish(c);
		return;
	}
	client_fatal(c, "08P01", "unexpected password message", NULL);
}

static void handle_cancel(const uint8_t *p)
{
	uint32_t pid = read_u32be(p + 8), key = read_u32be(p + 12);
	for (Client *o = cancel_hash[pid % CANCEL_HASH_SIZE]; o; o = o->cancel_next) {
		if (o->cancel_pid == pid) {
			if (auth_ct_equal(&o->cancel_key, &key, 4) && o->server)
				server_cancel(o->server);
			return;
		}
	}
}

/*
 * auth_type = cert: the certificate (verified against tls_ca_file) names the
 * user in its CN, optionally as user.tenant — then it is a credential for
 * that tenant only, like an auth_file entry "user.tenant", and names the
 * tenant when nothing else does.
 */
static void cert_auth(Client *c)
{
	struct LoginCtx *ctx = c->login_ctx;
	char cn[128], err[200], msg[400];
	const char *suffix;
	size_t plen;

	if (!c->conn.ssl) {
		client_fatal(c, "28000", "certificate authentication requires a TLS connection",
		             "Connect with sslmode=require and a client certificate.");
		return;
	}
	if (!tls_peer_cn(c->conn.ssl, cn, sizeof(cn), err, sizeof(err))) {
		snprintf(msg, sizeof(msg), "certificate authentication failed for user \"%s\": %s",
		         c->user, err);
		auth_refuse(c, "28000", msg);
		return;
	}
	ctx->bound = false;
	if (strcmp(cn, c->user) != 0) {
		suffix = tenant_user_suffix(cn, g_cfg->tenant_separator, &plen);
		if (!suffix || plen != strlen(c->user) || strncmp(cn, c->user, plen) != 0) {
			snprintf(msg, sizeof(msg),
			         "certificate authentication failed for user \"%s\": the "
			         "certificate is for \"%s\"",
			         c->user, cn);
			auth_refuse(c, "28000", msg);
			return;
		}
		ctx->bound = true;
		strlcpy_safe(ctx->bound_tenant, suffix, sizeof(ctx->bound_tenant));
		if (ctx->result == TENANT_NONE || ctx->result == TENANT_UNKNOWN) {
			Tenant *t = tenant_lookup(suffix);
			if (t && ctx->result == TENANT_NONE) {
				c->tenant = t;
				ctx->result = TENANT_OK;
			} else if (!t && ctx->result == TENANT_NONE) {
				ctx->result = TENANT_UNKNOWN;
				snprintf(ctx->bad, sizeof(ctx->bad), "%.100s", suffix);
			}
		}
	}
	login_finish(c);
}

/*
 * Not a startup packet (a bad length, garbage, a Terminate sent first): closed
 * without a word, as PostgreSQL does — whatever sent it does not speak the
 * protocol, and a probe or scanner learns nothing. Only the log says why.
 */
static void login_drop(Client *c, const char *why)
{
	client_log(LOG_LVL_INFO, c, "closing: invalid startup packet: %s", why);
	audit_login(NULL, NULL, c->addr, false, "invalid startup packet");
	client_close(c, NULL);
}

/*
 * auth_query applies to a password login of a tenant's client whose user
 * auth_file lacks: the lookup runs where that tenant's pool would connect.
 * A name only a template may serve (not checked before authentication) is
 * looked up where the template would serve it: *tmp is that conf, the
 * caller's to free. NULL: auth_query does not apply.
 */
static const TenantConf *authq_target(const Client *c, const struct LoginCtx *ctx, TenantConf **tmp)
{
	const TenantConf *tmpl;

	*tmp = NULL;
	if (!authq_enabled(g_cfg) || c->console ||
	    (g_cfg->auth_type != AUTH_MD5 && g_cfg->auth_type != AUTH_SCRAM))
		return NULL;
	if (c->tenant && ctx->result == TENANT_OK)
		return c->tenant->conf;
	tmpl = ctx->result == TENANT_UNKNOWN ? config_template_for(g_cfg, ctx->bad) : NULL;
	if (!tmpl || !config_valid_name(ctx->bad))
		return NULL;
	*tmp = tenant_conf_from_template(tmpl, ctx->bad);
	return *tmp;
}

/* The database the lookup runs in: the tenant's (database mode) or its backend's. */
static const char *authq_dbname(const TenantConf *tc, const char *user)
{
	const char *db = config_tenant_dbname(g_cfg, tc);
	return db && *db ? db : user;
}

static bool authq_sync; /* authq_done is running inside authq_lookup: the caller still holds c */

/* The lookup's answer: the exchange goes on against it, or a made-up one. */
static void authq_done(void *arg, const char *secret, const char *error)
{
	Client *c = arg;
	struct LoginCtx *ctx = c->login_ctx;

	ctx->lookup = NULL;
	conn_want_read(&c->conn, true);
	if (error) {
		/* the same for every user: it tells nothing about who exists */
		client_fatal(c, "08006", "could not look up the password (auth_query failed)",
		             NULL);
	} else {
		if (secret) {
			ctx->secret_buf = xstrdup(secret);
			ctx->secret = ctx->secret_buf;
		} else {
			authq_fake_verifier(c->user, ctx->fake, sizeof(ctx->fake));
			ctx->secret = ctx->fake;
			ctx->fake_auth = true;
		}
		start_password_auth(c);
	}
	if (!authq_sync)
		client_maintain();
}

static void handle_startup(Client *c, const uint8_t *body, size_t len)
{
	Startup st;
	const char *why = NULL;
	char tenant_opt_buf[128];
	const char *tenant_opt = NULL;

	/* versions 1 and 2 existed: those clients are told; any other number is garbage */
	uint32_t major = len >= 4 ? read_u32be(body) >> 16 : 0;
	if (major == 1 || major == 2) {
		client_fatal(c, "0A000", "unsupported frontend protocol", NULL);
		return;
	}
	if (!proto_parse_startup(body, len, &st, &why)) {
		if (why == proto_no_user)
			client_fatal(c, "28000", why, NULL);
		else
			login_drop(c, why);
		return;
	}
	if ((st.version >> 16) != 3) {
		login_drop(c, "unsupported frontend protocol");
		return;
	}
	if ((st.version & 0xffff) > 0 || st.n_pq_ext > 0)
		proto_negotiate_version(&c->conn.out, PROTO_V3, st.pq_ext, st.n_pq_ext);
	strlcpy_safe(c->user, st.user, sizeof(c->user));
	if (st.replication) {
		client_fatal(c, "08P01", "replication connections are not supported by pgtenant",
		             NULL);
		return;
	}
	if (g_shutdown) {
		client_fatal(c, "57P03", "pgtenant is shutting down", NULL);
		return;
	}
	if (g_n_clients > g_cfg->max_client_conn) {
		client_fatal(c, "53300", "too many clients already", NULL);
		return;
	}
	c->console = strcmp(st.database, g_cfg->admin_db) == 0;
	for (int i = 0; i < st.n_params; i++)
		set_startup_param(c, st.params[i].name, st.params[i].value);
	if (st.options &&
	    !parse_options(c, st.options, &tenant_opt, tenant_opt_buf, sizeof(tenant_opt_buf)))
		return;

	TenantQuery q = {.user = st.user,
	                 .database = st.database,
	                 .options_tenant = tenant_opt,
	                 .sni = tls_server_name(c->conn.ssl)};
	char auth_user[64];
	const char *bad = NULL;
	size_t bad_len = 0;
	Tenant *t = NULL;
	TenantResult res = TENANT_OK;
	if (c->console)
		strlcpy_safe(auth_user, st.user, sizeof(auth_user));
	else
		res = tenant_resolve(g_cfg, &q, &t, auth_user, sizeof(auth_user), &bad, &bad_len);

	/*
	 * Credential lookup: the user as sent first, then the user that authenticates. An entry
	 * named "user<sep>tenant" of a configured tenant is a credential for that tenant only,
	 * whichever of the two found it ("app.acme" reached as "app.acme.globex" stays acme's).
	 */
	const char *entry = st.user;
	const char *secret = g_auth ? authfile_lookup(g_auth, st.user) : NULL;
	if (!secret && strcmp(st.user, auth_user) != 0) {
		entry = auth_user;
		secret = g_auth ? authfile_lookup(g_auth, auth_user) : NULL;
	}
	size_t plen;
	const char *bound_to =
	        secret ? tenant_user_suffix(entry, g_cfg->tenant_separator, &plen) : NULL;
	bool bound = bound_to && tenant_lookup(bound_to);
	strlcpy_safe(c->user, auth_user, sizeof(c->user));

	struct LoginCtx *ctx = xcalloc(1, sizeof(*ctx));
	ctx->result = res;
	if (bad)
		snprintf(ctx->bad, sizeof(ctx->bad), "%.*s", (int)(bad_len < 100 ? bad_len : 100),
		         bad);
	/* a template's tenant named beside a configured one: a mismatch if it exists (SPEC §3),
	 * which is checked after authentication */
	ctx->tmpl_beside = res == TENANT_OK && bad && config_template_for(g_cfg, ctx->bad) &&
	                   strcmp(ctx->bad, t->name) != 0;
	ctx->bound = bound;
	strlcpy_safe(ctx->login_user, st.user, sizeof(ctx->login_user));
	strlcpy_safe(ctx->database, st.database, sizeof(ctx->database));
	if (bound)
		strlcpy_safe(ctx->bound_tenant, bound_to, sizeof(ctx->bound_tenant));
	c->tenant = t; /* may be NULL; checked after authentication */
	c->pool = NULL;
	ctx->secret = secret;
	login_ctx_free(c->login_ctx);
	c->login_ctx = ctx;
	TenantConf *tmp_conf;
	const TenantConf *aq = secret ? NULL : authq_target(c, ctx, &tmp_conf);
	if (aq) {
		AuthqRequest *r;
		conn_want_read(&c->conn, false); /* nothing is expected before the auth request */
		authq_sync = true;
		r = authq_lookup(g_cfg, config_tenant_backend(g_cfg, aq), authq_dbname(aq, c->user),
		                 c->user, authq_done, c);
		authq_sync = false;
		tenant_conf_free(tmp_conf);
		if (r) /* else authq_done has run, and c may be closing: ctx is not to be touched */
			ctx->lookup = r;
		return;
	}
	if (!secret && g_cfg->auth_type != AUTH_TRUST) {
		/* Unknown user: run the exchange against a made-up secret so nothing is revealed.
		 */
		scram_fake_secret(c->user, ctx->fake);
		ctx->secret = ctx->fake;
		ctx->fake_auth = true;
	}
	start_password_auth(c);
}

static void login_process(Client *c)
{
	Buf *in = &c->conn.in;

	while (!c->closing && c->state == CL_LOGIN) {
		if (c->login_ctx && (c->login_ctx->lookup || c->login_ctx->tmpl_pending))
			return; /* auth_query or a template check in flight: what the client sent
			           waits for its answer */
		if (c->login_stage == LOGIN_STARTUP) {
			uint32_t len;
			if (buf_avail(in) < 4)
				return;
			len = read_u32be(buf_head(in));
			if (len < 8 || len > STARTUP_MAX_LEN) {
				login_drop(c, "invalid length of startup packet");
				return;
			}
			if (buf_avail(in) < len)
				return;
			uint32_t code = read_u32be(buf_head(in) + 4);
			if (code == PROTO_SSL || code == PROTO_GSSENC) {
				if (len != 8) {
					login_drop(c, "invalid length of encryption request");
					return;
				}
				buf_consume(in, len);
				if (c->conn.ssl) {
					client_fatal(
					        c, "08P01",
					        "encryption request inside an encrypted connection",
					        NULL);
					return;
				}
				if (code == PROTO_SSL && tls_accept_enabled() &&
				    !client_is_unix(c)) {
					start_tls(c);
					return;
				}
				buf_append(&c->conn.out, "N", 1);
				if (!client_flush(c))
					return;
				continue;
			}
			if (code == PROTO_CANCEL) {
				if (len == 16)
					handle_cancel(buf_head(in));
				client_close(c, NULL);
				return;
			}
			if (!c->conn.ssl && g_cfg->tls_mode == TLS_REQUIRE && !client_is_unix(c)) {
				client_fatal(c, "28000",
				             "TLS is required: pgtenant has tls_mode = require",
				             "Connect with sslmode=require (or verify-ca, "
				             "verify-full).");
				return;
			}
			/* copy: parsing keeps pointers into the packet, which is consumed below */
			uint8_t pkt[STARTUP_MAX_LEN];
			memcpy(pkt, buf_head(in) + 4, len - 4);
			buf_consume(in, len);
			handle_startup(c, pkt, len - 4);
			continue;
		}
		/* authentication messages: 'p' + length + body */
		if (buf_avail(in) < MSG_HEADER_LEN)
			return;
		uint8_t type = buf_head(in)[0];
		uint32_t len = read_u32be(buf_head(in) + 1);
		if (type != 'p' || len < 4 || len > 65536) {
			client_fatal(c, "08P01", "expected password response", NULL);
			return;
		}
		if (buf_avail(in) < 1 + (size_t)len)
			return;
		uint8_t body[65536];
		memcpy(body, buf_head(in) + MSG_HEADER_LEN, len - 4);
		buf_consume(in, 1 + (size_t)len);
		handle_password_message(c, body, len - 4);
	}
}

static void console_login(Client *c)
{
	char msg[200];
	Buf *out = &c->conn.out;

	c->console_admin = config_list_contains(g_cfg->admin_users, c->user);
	if (!c->console_admin && !config_list_contains(g_cfg->stats_users, c->user)) {
		snprintf(msg, sizeof(msg), "user \"%s\" may not use the admin console", c->user);
		client_fatal(c, "28000", msg, NULL);
		return;
	}
	if (g_cfg->log_connections)
		client_log(LOG_LVL_INFO, c, "console login (%s)",
		           c->console_admin ? "admin" : "stats");
	audit_login(NULL, c->user, c->addr, true, "console");
	proto_auth_request(out, AUTH_REQ_OK, NULL, 0);
	/* the console speaks for pgtenant itself; psql only needs a sane version and encoding */
	static const char *const params[][2] = {
	        {"server_version", "15.0 (pgtenant " PGTENANT_VERSION ")"},
	        {"server_encoding", "UTF8"},
	        {"client_encoding", "UTF8"},
	        {"DateStyle", "ISO, MDY"},
	        {"integer_datetimes", "on"},
	        {"standard_conforming_strings", "on"},
	        {"application_name", ""}};
	for (size_t i = 0; i < ARRAY_SIZE(params); i++)
		proto_parameter_status(out, params[i][0], params[i][1]);
	cancel_hash_add(c);
	proto_backend_key(out, c->cancel_pid, c->cancel_key);
	proto_ready(out, 'I');
	client_set_state(c, CL_CONSOLE);
	if (client_flush(c) && buf_avail(&c->conn.in))
		admin_process(c);
}

/*
 * No source named a tenant: the hint lists only the sources tenant_from
 * accepts, and a database name that was tried is said not to be a tenant.
 */
static void no_tenant_fatal(Client *c, const struct LoginCtx *ctx)
{
	char msg[200], hint[400];
	size_t n = 0;
	bool by_database = false;
	const Config *cfg = g_cfg;

	n = (size_t)snprintf(hint, sizeof(hint), "Name the tenant in ");
	for (int i = 0; i < cfg->n_tenant_from && n < sizeof(hint); i++) {
		const char *sep = i == 0 ? "" : i == cfg->n_tenant_from - 1 ? " or " : ", ";
		switch (cfg->tenant_from[i]) {
		case TENANT_SRC_USER:
			n += (size_t)snprintf(hint + n, sizeof(hint) - n,
			                      "%sthe user (user%sTENANT)", sep,
			                      cfg->tenant_separator);
			break;
		case TENANT_SRC_DATABASE:
			by_database = true;
			n += (size_t)snprintf(hint + n, sizeof(hint) - n, "%sthe database name",
			                      sep);
			break;
		case TENANT_SRC_OPTIONS:
			n += (size_t)snprintf(hint + n, sizeof(hint) - n,
			                      "%soptions=-c pgtenant.tenant=TENANT", sep);
			break;
		case TENANT_SRC_SNI:
			n += (size_t)snprintf(
			        hint + n, sizeof(hint) - n, "%sthe TLS server name (TENANT%s)", sep,
			        cfg->sni_suffix && *cfg->sni_suffix ? cfg->sni_suffix : ".domain");
			break;
		}
	}
	if (n < sizeof(hint))
		snprintf(hint + n, sizeof(hint) - n, ".");
	if (by_database && ctx->database[0])
		snprintf(msg, sizeof(msg), "no tenant given: database \"%s\" is not a tenant",
		         ctx->database);
	else
		snprintf(msg, sizeof(msg), "no tenant given");
	client_fatal(c, "3D000", msg, hint);
}

static bool template_sync; /* template_done runs inside template_check: login_finish goes on */

/* Whether the tenant a template would serve exists: the login goes on either way. */
static void template_done(void *arg, Tenant *t, const char *error)
{
	Client *c = arg;
	struct LoginCtx *ctx = c->login_ctx;

	ctx->tmpl_pending = false;
	if (error) {
		client_fatal(c, "08006", "could not check whether the tenant exists", NULL);
		if (!template_sync)
			client_maintain();
		return;
	}
	if (t && ctx->tmpl_beside)
		ctx->result = t == c->tenant ? TENANT_OK : TENANT_MISMATCH;
	else if (t) {
		c->tenant = t;
		ctx->result = TENANT_OK;
	}
	if (template_sync)
		return;
	conn_want_read(&c->conn, true);
	login_finish(c);
	client_maintain();
}

static void login_finish(Client *c)
{
	struct LoginCtx *ctx = c->login_ctx;
	Tenant *t;
	char msg[300];

	/* a name no section has may be a template's tenant: asked once, after authentication */
	if (ctx && !c->console && (ctx->result == TENANT_UNKNOWN || ctx->tmpl_beside) &&
	    !ctx->tmpl_checked) {
		ctx->tmpl_checked = true;
		ctx->tmpl_pending = true;
		template_sync = true;
		bool later = template_check(ctx->bad, c->user, template_done, c);
		template_sync = false;
		if (later) {
			conn_want_read(&c->conn, false);
			return;
		}
		if (c->closing)
			return;
	}
	t = c->tenant;
	c->login_ctx = NULL;
	if (!ctx) {
		client_fatal(c, "XX000", "internal error: no login context", NULL);
		return;
	}
	if (c->console) {
		login_ctx_free(ctx);
		console_login(c);
		return;
	}
	switch (ctx->result) {
	case TENANT_NONE:
		no_tenant_fatal(c, ctx);
		login_ctx_free(ctx);
		return;
	case TENANT_UNKNOWN:
		snprintf(msg, sizeof(msg), "tenant \"%s\" does not exist", ctx->bad);
		client_fatal(c, "3D000", msg, NULL);
		login_ctx_free(ctx);
		return;
	case TENANT_MISMATCH:
		snprintf(msg, sizeof(msg),
		         "tenant mismatch: the connection names tenants \"%s\" and \"%s\"",
		         t ? t->name : "?", ctx->bad);
		client_fatal(c, "28000", msg, NULL);
		login_ctx_free(ctx);
		return;
	case TENANT_OK:
		break;
	}
	if (ctx->bound && strcmp(ctx->bound_tenant, t->name) != 0) {
		snprintf(msg, sizeof(msg),
		         "tenant mismatch: the credential is tenant \"%s\"'s, the connection names "
		         "\"%s\"",
		         ctx->bound_tenant, t->name);
		client_fatal(c, "28000", msg, NULL);
		login_ctx_free(ctx);
		return;
	}
	login_ctx_free(ctx);
	if (!config_list_contains(config_tenant_users(g_cfg, t->conf), c->user)) {
		snprintf(msg, sizeof(msg), "user \"%s\" may not connect to tenant \"%s\"", c->user,
		         t->name);
		t->stats.refused++;
		client_fatal(c, "28000", msg, NULL);
		return;
	}
	if (t->disabled || t->conf->disabled) {
		snprintf(msg, sizeof(msg), "tenant \"%s\" is disabled", t->name);
		t->stats.refused++;
		client_fatal(c, "55000", msg, NULL);
		return;
	}
	if (t->conf->max_client_conn > 0 && t->n_clients >= t->conf->max_client_conn) {
		snprintf(msg, sizeof(msg), "too many clients for tenant \"%s\"", t->name);
		t->stats.refused++;
		client_fatal(c, "53300", msg, NULL);
		return;
	}
	for (int i = 0; i < c->params.n; i++) {
		if (forbidden_param(c, c->params.items[i].name)) {
			snprintf(msg, sizeof(msg),
			         "parameter \"%s\" is set by pgtenant for tenant \"%s\"",
			         c->params.items[i].name, t->name);
			client_fatal(c, "42501", msg, NULL);
			return;
		}
	}
	c->pool = c->home_pool = tenant_pool_for(t, c->user);
	/* a session whose transactions default to SERIALIZABLE cannot read on a hot standby */
	const char *iso = params_get(&c->params, "default_transaction_isolation");
	if (iso && strcasestr(iso, "serializable"))
		c->sticky_primary = true;
	if (!c->pool) {
		snprintf(msg, sizeof(msg), "no server credentials for tenant \"%s\"", t->name);
		client_fatal(c, "28000", msg, NULL);
		return;
	}
	t->n_clients++;
	if (g_cfg->log_connections)
		client_log(LOG_LVL_INFO, c, "login");
	audit_login(t->name, c->user, c->addr, true, NULL);
	if (c->pool->welcome_ready) {
		client_welcome(c, &c->pool->welcome);
		return;
	}
	c->wait_start = g_now;
	client_set_state(c, CL_WELCOME_WAIT);
	conn_want_read(&c->conn, false);
	if (c->pool->failing && g_now < c->pool->next_connect_at)
		client_welcome(c, NULL);
	else
		pool_maybe_connect(c->pool);
}

/*
 * The client has no server and pgtenant has answered what it owed: send it,
 * read on, and hand back the buffers if nothing more is waiting.
 */
static void client_go_idle(Client *c)
{
	client_set_state(c, CL_IDLE);
	if (!client_flush(c))
		return;
	conn_want_read(&c->conn, true);
	if (buf_avail(&c->conn.in))
		client_forward(c);
	else
		conn_shrink(&c->conn);
}

static void merge_defaults(Client *c, const Params *server_params)
{
	for (int i = 0; i < server_params->n; i++) {
		const Param *sp = &server_params->items[i];
		if (param_is_reported(sp->name) && !params_get(&c->params, sp->name))
			params_set(&c->params, sp->name, sp->value);
	}
	c->params_have_defaults = true;
}

void client_welcome(Client *c, const Params *server_params)
{
	Buf *out = &c->conn.out;

	proto_auth_request(out, AUTH_REQ_OK, NULL, 0);
	if (server_params) {
		for (int i = 0; i < server_params->n; i++) {
			const Param *sp = &server_params->items[i];
			const char *mine = params_get(&c->params, sp->name);
			proto_parameter_status(out, sp->name,
			                       mine && !param_is_readonly(sp->name) ? mine
			                                                            : sp->value);
		}
		merge_defaults(c, server_params);
	} else {
		/* The backend is unreachable: tell the client what it asked for plus safe defaults.
		 */
		static const char *const defaults[][2] = {{"server_encoding", "UTF8"},
		                                          {"client_encoding", "UTF8"},
		                                          {"DateStyle", "ISO, MDY"},
		                                          {"integer_datetimes", "on"},
		                                          {"standard_conforming_strings", "on"}};
		for (size_t i = 0; i < ARRAY_SIZE(defaults); i++) {
			const char *mine = params_get(&c->params, defaults[i][0]);
			proto_parameter_status(out, defaults[i][0], mine ? mine : defaults[i][1]);
		}
	}
	for (int i = 0; i < c->params.n; i++) {
		const Param *cp = &c->params.items[i];
		if (param_is_reported(cp->name) &&
		    (!server_params || !params_get(server_params, cp->name)))
			proto_parameter_status(out, cp->name, cp->value);
	}
	cancel_hash_add(c);
	proto_backend_key(out, c->cancel_pid, c->cancel_key);
	proto_ready(out, 'I');
	client_go_idle(c);
}

/* ---------------------------------------------------------------------------------------
 * The data path, client side.
 */

static inline bool known_frontend_type(uint8_t t)
{
	switch (t) {
	case 'Q':
	case 'P':
	case 'B':
	case 'E':
	case 'D':
	case 'C':
	case 'S':
	case 'H':
	case 'F':
	case 'd':
	case 'c':
	case 'f':
	case 'X':
	case 'p':
		return true;
	default:
		return false;
	}
}

static inline bool tracks_prepared(const Client *c)
{
	return c->tenant->pool_mode == POOL_MODE_TRANSACTION;
}

const char *client_state_sql(const Client *c)
{
	const TenantState *st = tenant_state_of(c->tenant, c->home_pool);
	return st ? st->sql : NULL;
}

/* Are this client's statements analysed (guard, state and session-state tracking)? */
static inline bool client_analyzes(const Client *c)
{
	return c->tenant->analyze || c->home_pool->needs_state;
}

/*
 * A statement the guard refuses is replaced by one that makes PostgreSQL raise
 * 42501 itself, so the transaction (or the batch's implicit transaction) aborts
 * exactly as if the server had refused it, and the session goes on.
 */
static void guard_raise_sql(Buf *b, const Client *c, SqlGuard g)
{
	char msg[256];
	/* tenant names are [A-Za-z0-9_-] and GUC names come from the config: no quote can appear,
	 * but quote_literal keeps that true whatever the config says */
	snprintf(msg, sizeof(msg), "pgtenant: changing %s is not allowed for tenant \"%s\"",
	         sql_guard_name(g, g_cfg->tenant_guc), c->tenant->name);
	static const char head[] =
	        "DO $pgtenant$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = ";
	static const char tail[] = "; END$pgtenant$";
	buf_append(b, head, sizeof(head) - 1);
	param_quote_literal(b, msg);
	buf_append(b, tail, sizeof(tail) - 1);
}

/* Rewrites a refused Query: the statements before the refused one run, then the error. */
static void forward_refused_query(Client *c, ServerConn *s, const char *sql, const SqlInfo *info)
{
	Buf *out = &s->conn.out;
	size_t start;

	server_expect_client(s, 'Q');
	pkt_begin(out, 'Q', &start);
	pkt_put_bytes(out, sql, info->guard_offset);
	guard_raise_sql(out, c, info->guard);
	pkt_put_u8(out, 0);
	pkt_finish(out, start);
}

/*
 * Rewrites a refused Parse: same statement name and parameter types, raising text.
 * In transaction mode the rewritten Parse goes through the prepared-statement
 * mapping like any other, so the client's later Bind finds it.
 */
static bool forward_refused_parse(Client *c, ServerConn *s, const uint8_t *body, size_t len,
                                  const SqlInfo *info)
{
	static Buf msg; /* scratch, reused */
	MsgReader r;
	const char *name, *query;
	uint16_t nparams;
	const uint8_t *types;
	size_t start;

	msg_reader_init(&r, body, len);
	if (!msg_get_cstr(&r, &name) || !msg_get_cstr(&r, &query) || !msg_get_u16(&r, &nparams) ||
	    !msg_get_bytes(&r, (size_t)nparams * 4, &types))
		return false;
	msg.off = msg.len = 0;
	pkt_begin(&msg, 'P', &start);
	pkt_put_cstr(&msg, name);
	guard_raise_sql(&msg, c, info->guard);
	pkt_put_u8(&msg, 0);
	/* keep the parameter count the client will Bind with */
	int n = info->max_param > nparams ? info->max_param : nparams;
	pkt_put_u16(&msg, (uint16_t)n);
	pkt_put_bytes(&msg, types, (size_t)nparams * 4);
	for (int i = nparams; i < n; i++)
		pkt_put_u32(&msg, 25); /* text */
	pkt_finish(&msg, start);
	if (!tracks_prepared(c) || prep_client_message(c, s, 'P', msg.data + MSG_HEADER_LEN,
	                                               msg.len - MSG_HEADER_LEN, 0) == PREP_PASS) {
		server_expect_client(s, 'P');
		buf_append(&s->conn.out, msg.data, msg.len);
	}
	return true;
}

/* The answer of the client's shape for sql, when it has one for it (true). */
static inline bool shape_info(Client *c, const char *sql, size_t len, SqlInfo *out)
{
	return c->shape && sql_shape_answer(c->shape, sql, len, g_cfg->tenant_guc,
	                                    g_cfg->read_only_functions, out);
}

/* sql_info without asking the shape (the caller asked it). */
static void sql_info_unshaped(Client *c, const char *sql, size_t len, SqlInfo *out, SqlNorm *norm)
{
	const Buf *in = &c->conn.in;
	const uint8_t *p = (const uint8_t *)sql;
	if (!in->data || p < buf_head(in) || p + len > in->data + in->len) {
		/* not in the input (a prepared statement's kept text): nothing names it */
		sql_analyze_norm(sql, len, g_cfg->tenant_guc, g_cfg->read_only_functions, out,
		                 norm);
		return;
	}
	uint64_t at = in->consumed + (uint64_t)(p - buf_head(in)) + 1;
	for (size_t i = 0; i < ARRAY_SIZE(c->sql_seen); i++) {
		if (c->sql_seen[i].at == at && c->sql_seen[i].len == len &&
		    c->sql_seen[i].epoch == g_cfg_epoch) {
			*out = c->sql_seen[i].info;
			if (norm)
				sql_normalize(sql, len, norm);
			return;
		}
	}
	if (norm) {
		sql_analyze_norm(sql, len, g_cfg->tenant_guc, g_cfg->read_only_functions, out,
		                 norm);
	} else {
		if (!c->shape) {
			c->shape = xmalloc(sizeof(SqlShape));
			c->shape->len = 0;
		}
		sql_analyze_shaped(sql, len, g_cfg->tenant_guc, g_cfg->read_only_functions, out,
		                   c->shape);
	}
	unsigned slot = c->sql_seen_next++ % ARRAY_SIZE(c->sql_seen);
	c->sql_seen[slot].at = at;
	c->sql_seen[slot].len = len;
	c->sql_seen[slot].epoch = g_cfg_epoch;
	c->sql_seen[slot].info = *out;
}

/*
 * client_sql_info, and with norm the statement's normalised text too (statement
 * statistics): from the same lexer pass when the analysis runs now, from a
 * lexer-only pass when it was taken from the cache.
 */
static void sql_info(Client *c, const char *sql, size_t len, SqlInfo *out, SqlNorm *norm)
{
	/* the shape is cheaper than a look at sql_seen, and as good for the next ask */
	if (!norm && shape_info(c, sql, len, out))
		return;
	sql_info_unshaped(c, sql, len, out, norm);
}

void client_sql_info(Client *c, const char *sql, size_t len, SqlInfo *out)
{
	sql_info(c, sql, len, out, NULL);
}

/*
 * Looks at a whole Query or Parse of a tenant whose statements are analysed.
 * Returns false when the message is malformed (the caller answers 08P01),
 * sets *replaced when it forwarded a rewritten message itself.
 */
static bool inspect_statement(Client *c, ServerConn *s, uint8_t type, const uint8_t *body,
                              size_t len, bool *replaced, unsigned *flags, SqlNorm *norm)
{
	const char *sql;
	size_t sql_len;
	SqlInfo info;

	*replaced = false;
	if (type == 'Q') {
		/* a Query is its text and a NUL (client_forward refused any other) */
		if (!len || body[len - 1] != 0)
			return false;
		sql = (const char *)body;
		sql_len = len - 1;
		/* a text the shape answers for holds no NUL: it is the Query's whole text */
		if (norm || !shape_info(c, sql, sql_len, &info)) {
			sql_len = strlen(sql);
			sql_info_unshaped(c, sql, sql_len, &info, norm);
		}
	} else {
		MsgReader r;
		const char *name, *query;
		msg_reader_init(&r, body, len);
		if (!msg_get_cstr(&r, &name) || !msg_get_cstr(&r, &query))
			return false;
		sql = query;
		sql_len = strlen(query);
		sql_info(c, sql, sql_len, &info, norm);
	}
	*flags = info.flags;
	if (type == 'P' && c->reset_in_unit && info.guard == SQL_GUARD_OK &&
	    info.n_statements > 0) {
		/* a statement after RESET ALL in the same unit would run with the state reset */
		info.guard = SQL_GUARD_AFTER_RESET;
		info.guard_offset = 0;
	}
	if (type == 'P' && (info.flags & SQLF_RESETS_STATE))
		c->reset_in_unit = true;
	if (info.guard != SQL_GUARD_OK && c->tenant->state.sql) {
		client_log(LOG_LVL_INFO, c, "guard: refused a change of %s",
		           sql_guard_name(info.guard, g_cfg->tenant_guc));
		if (type == 'Q')
			forward_refused_query(c, s, sql, &info);
		else if (!forward_refused_parse(c, s, body, len, &info))
			return false;
		*replaced = true;
		return true;
	}
	server_statement_flags(s, c->tenant, info.flags);
	if (info.flags & SQLF_DEALLOCATE_ALL && tracks_prepared(c)) {
		/* the session's statements go, pgtenant's with them: prepared again where needed */
		prep_server_reset(s);
		prep_client_free(c);
	}
	if (info.flags & (SQLF_SESSION_STATE | SQLF_STATE_UNKNOWN | SQLF_UNPARSED))
		c->sticky_primary = true; /* a replica would not see what the session left behind */
	return true;
}

/*
 * A client whose statements are not analysed (a database tenant with a pool of
 * its own) still must not leave pgtenant believing in statements PostgreSQL
 * dropped: DEALLOCATE ALL or DISCARD ALL anywhere in a Query or Parse (psycopg
 * sends one after ROLLBACK) wipes the server's and the client's names. A scan for
 * the words first: the lexer runs only when one is there.
 */
static void notice_deallocate_all(Client *c, ServerConn *s, uint8_t type, const uint8_t *body,
                                  size_t len)
{
	const uint8_t *sql = body;
	const uint8_t *end = body + len;
	bool maybe = false;

	if (type == 'P') {
		const uint8_t *nul = memchr(body, 0, len);
		if (!nul)
			return;
		sql = nul + 1;
	}
	const uint8_t *stop = memchr(sql, 0, (size_t)(end - sql));
	if (!stop)
		return;
	for (const uint8_t *p = sql; p + 7 <= stop && !maybe; p++)
		if ((*p | 0x20) == 'd' && (strncasecmp((const char *)p, "dealloc", 7) == 0 ||
		                           strncasecmp((const char *)p, "discard", 7) == 0))
			maybe = true;
	if (!maybe)
		return;
	SqlInfo info;
	client_sql_info(c, (const char *)sql, (size_t)(stop - sql), &info);
	if (info.flags & SQLF_DEALLOCATE_ALL) {
		prep_server_reset(s);
		prep_client_free(c);
	}
}

/*
 * rate_limit: clients whose next statement waits for a token. One timer serves them
 * all, set for the earliest token; nothing runs for tenants without a limit.
 */
static List throttled = {&throttled, &throttled};
static struct event *throttle_ev;

static void throttle_arm(usec_t wait)
{
	struct timeval tv = {(time_t)(wait / USEC_PER_SEC), (suseconds_t)(wait % USEC_PER_SEC)};
	if (!throttle_ev)
		throttle_ev = evtimer_new(g_base, client_throttle_fire, NULL);
	if (!evtimer_pending(throttle_ev, NULL))
		evtimer_add(throttle_ev, &tv);
}

static void client_throttle_fire(evutil_socket_t fd, short what, void *arg)
{
	List *it, *tmp;
	usec_t next = 0;

	time_update();
	list_for_each_safe(it, &throttled, tmp)
	{
		Client *c = list_entry(it, Client, throttle_node);
		usec_t wait = 0;
		if (!tenant_take_token(c->tenant, &wait)) {
			if (!next || wait < next)
				next = wait;
			continue;
		}
		list_del(&c->throttle_node);
		c->token_held = true;
		conn_want_read(&c->conn, true);
		client_forward(c);
	}
	if (next)
		throttle_arm(next);
	client_maintain();
}

/* A statement is about to start: true when it may go now. */
static bool rate_limit_pass(Client *c)
{
	usec_t wait = 0;
	if (c->token_held || c->tenant->rate_limit <= 0)
		return true;
	if (tenant_take_token(c->tenant, &wait)) {
		c->token_held = true; /* until the statement is forwarded */
		return true;
	}
	c->tenant->stats.rate_limited++;
	list_append(&throttled, &c->throttle_node);
	conn_want_read(&c->conn, false);
	throttle_arm(wait);
	return false;
}

void client_idle_timeouts(void)
{
	List *it, *tmp;
	list_for_each_safe(it, &g_idle_clients, tmp)
	{
		Client *c = list_entry(it, Client, node);
		usec_t limit = config_tenant_client_idle_timeout(g_cfg, c->tenant->conf);
		if (limit > 0 && g_now - c->idle_since > limit && list_empty(&c->throttle_node))
			client_fatal(c, "57P05",
			             "terminating connection due to client_idle_timeout", NULL);
	}
}

/* A Parse whose statement the guard lets through and that leaves no state behind. */
static bool parse_is_plain(Client *c, const uint8_t *body, size_t len)
{
	MsgReader r;
	const char *name, *query;
	SqlInfo info;

	msg_reader_init(&r, body, len);
	if (!msg_get_cstr(&r, &name) || !msg_get_cstr(&r, &query))
		return false;
	client_sql_info(c, query, strlen(query), &info);
	return info.guard == SQL_GUARD_OK &&
	       !(info.flags &
	         (SQLF_STATE_UNKNOWN | SQLF_RESETS_STATE | SQLF_SESSION_STATE | SQLF_UNPARSED));
}

/* Answers a message locally with a command tag and ReadyForQuery. */
static void answer_locally(Client *c, const char *tag, char status)
{
	size_t start;
	pkt_begin(&c->conn.out, 'C', &start);
	pkt_put_cstr(&c->conn.out, tag);
	pkt_finish(&c->conn.out, start);
	c->tx_status = status;
	proto_ready(&c->conn.out, status);
}

/*
 * Statement statistics of a Query, Parse, Bind, Execute or Sync about to be
 * forwarded (body whole for Q, P and B). norm: the text already normalised by
 * inspect_statement, or NULL when this tenant's statements are not analysed.
 */
static void note_statement(Client *c, uint8_t type, const uint8_t *body, size_t len, SqlNorm *norm)
{
	const char *name = "";
	const char *sql = (const char *)body;
	size_t sql_len = 0;

	switch (type) {
	case 'Q':
	case 'P':
		if (type == 'P') {
			MsgReader r;
			msg_reader_init(&r, body, len);
			if (!msg_get_cstr(&r, &name) || !msg_get_cstr(&r, &sql))
				return;
			sql_len = strlen(sql);
		} else {
			const uint8_t *nul = memchr(body, 0, len);
			sql_len = nul ? (size_t)(nul - body) : len;
		}
		if (!norm && g_cfg->query_stats) {
			norm = stats_norm_begin();
			sql_normalize(sql, sql_len, norm);
		}
		if (type == 'Q')
			stats_query_sent(c, norm);
		else
			stats_parse(c, name, norm);
		break;
	case 'B':
		stats_bind(c, body, len);
		break;
	case 'E':
		stats_execute_sent(c);
		break;
	case 'S':
	case 'F': /* a FunctionCall is a unit of its own, answered by its ReadyForQuery */
		stats_sync_sent(c);
		break;
	default:
		break;
	}
}

/* Must pgtenant hold this client message whole before forwarding it? */
static inline bool client_must_inspect(const Client *c, uint8_t type)
{
	switch (type) {
	case 'Q':
		return client_analyzes(c) || (c->prep && tracks_prepared(c)) ||
		       stats_statements_on(c->tenant);
	case 'P':
		return client_analyzes(c) || tracks_prepared(c) || stats_statements_on(c->tenant);
	case 'B':
		return tracks_prepared(c) || stats_statements_on(c->tenant);
	case 'D':
	case 'C':
		return tracks_prepared(c);
	default:
		return false;
	}
}

/* Is this message the end of a unit (its answer ends with ReadyForQuery)? */
static inline bool ends_unit(uint8_t type)
{
	return type == 'Q' || type == 'S' || type == 'F';
}

/* Does this message start a unit when nothing of one has been written yet? CopyData etc. never do.
 */
static inline bool starts_unit(uint8_t type)
{
	return type != 'd' && type != 'c' && type != 'f';
}

static void client_forward(Client *c)
{
	Buf *in = &c->conn.in;
	ServerConn *s;

again:
	while (buf_avail(in) && !c->closing) {
		s = c->server;
		if (c->fwd_remain) {
			size_t n = buf_avail(in) < c->fwd_remain ? buf_avail(in) : c->fwd_remain;
			if (s)
				buf_append(&s->conn.out, buf_head(in), n);
			buf_consume(in, n);
			c->fwd_remain -= n;
			if (!c->fwd_remain && c->skip_query_tail) {
				c->skip_query_tail = false;
				proto_ready(&c->conn.out, c->tx_status);
			}
			if (!c->fwd_remain && s && c->fwd_type)
				server_unit_end(s);
			if (!c->fwd_remain)
				c->fwd_type = 0;
			continue;
		}
		if (buf_avail(in) < MSG_HEADER_LEN)
			break;
		uint8_t type = buf_head(in)[0];
		uint32_t len = read_u32be(buf_head(in) + 1);
		if (len < 4 || (int64_t)len > g_cfg->max_packet_size ||
		    !known_frontend_type(type)) {
			client_fatal(c, "08P01",
			             known_frontend_type(type) ? "invalid message length"
			                                       : "invalid frontend message type",
			             NULL);
			return;
		}
		size_t total = 1 + (size_t)len;
		if (type == 'X') {
			client_close(c, "client closed connection");
			return;
		}
		if (type == 'p') {
			/* authentication is over: a password message now is a protocol violation */
			client_fatal(c, "08P01", "unexpected password message after authentication",
			             NULL);
			return;
		}
		if (c->skip_until_sync) {
			/* After an error pgtenant raised for a batch, drop until Sync, as
			 * PostgreSQL does. */
			if (type == 'S') {
				if (buf_avail(in) < total)
					break;
				buf_consume(in, total);
				c->skip_until_sync = false;
				proto_ready(&c->conn.out, c->tx_status);
				continue;
			}
			size_t n = buf_avail(in) < total ? buf_avail(in) : total;
			buf_consume(in, n);
			c->fwd_remain = total - n;
			continue;
		}
		if (c->prep_skip) {
			/* a Parse was refused: the rest of the batch goes nowhere, its Sync still
			 * does */
			if (type != 'S') {
				size_t n = buf_avail(in) < total ? buf_avail(in) : total;
				buf_consume(in, n);
				c->fwd_remain = total - n;
				continue;
			}
			c->prep_skip = false;
		}
		if (type == 'Q' && tracks_prepared(c)) {
			/* DEALLOCATE of a name only pgtenant knows is answered here */
			if (buf_avail(in) < total) {
				buf_reserve(in, total - buf_avail(in));
				break;
			}
			if (prep_query_may_deallocate(buf_head(in) + MSG_HEADER_LEN, len - 4) &&
			    prep_client_message(c, s, 'Q', buf_head(in) + MSG_HEADER_LEN, len - 4,
			                        0) == PREP_ANSWERED) {
				buf_consume(in, total);
				continue;
			}
		}
		if ((type == 'Q' || type == 'E') && !rate_limit_pass(c))
			return;
		if (!s && type == 'P' && tracks_prepared(c) &&
		    buf_avail(in) >= total + MSG_HEADER_LEN && buf_head(in)[total] == 'S' &&
		    read_u32be(buf_head(in) + total + 1) == 4 &&
		    parse_is_plain(c, buf_head(in) + MSG_HEADER_LEN, len - 4) &&
		    prep_client_parse_only(c, buf_head(in) + MSG_HEADER_LEN, len - 4)) {
			static const uint8_t parse_complete[5] = {'1', 0, 0, 0, 4};
			if (stats_statements_on(c->tenant))
				note_statement(c, 'P', buf_head(in) + MSG_HEADER_LEN, len - 4,
				               NULL);
			buf_consume(in, total + MSG_HEADER_LEN);
			buf_append(&c->conn.out, parse_complete, sizeof(parse_complete));
			proto_ready(&c->conn.out, c->tx_status);
			continue;
		}
		if (!s) {
			Route route = router_route_batch(c);
			if (route == ROUTE_WAIT)
				break; /* the rest of the batch decides where it goes */
			if (route >= ROUTE_DEFER_BEGIN) {
				const uint8_t *body = buf_head(in) + MSG_HEADER_LEN;
				if (route == ROUTE_DEFER_BEGIN) {
					c->deferred_begin = xstrndup((const char *)body, len - 4);
					answer_locally(c, "BEGIN", 'T');
				} else {
					free(c->deferred_begin);
					c->deferred_begin = NULL;
					answer_locally(c,
					               route == ROUTE_LOCAL_ROLLBACK ? "ROLLBACK"
					                                             : "COMMIT",
					               'I');
				}
				c->tenant->stats.queries++;
				buf_consume(in, total);
				continue;
			}
			if (!pool_acquire(c)) {
				/* queued: input goes on being read (client_wait_input) until a
				 * server is linked (client_resume); refused at once: the error
				 * went out and the input was handled */
				if (c->state == CL_WAITING)
					client_wait_input(c);
				return;
			}
			s = c->server;
		}
		if (client_must_inspect(c, type) && buf_avail(in) < total) {
			buf_reserve(in, total - buf_avail(in));
			break;
		}
		if (type == 'Q' && buf_avail(in) >= total &&
		    (len == 4 || buf_head(in)[total - 1] != 0)) {
			/* refused before anything of the unit is written */
			client_fatal(c, "08P01", "invalid string in Query message", NULL);
			return;
		}
		if (!s->unit_open && starts_unit(type)) {
			if (!server_unit_start(s, c)) {
				/* held: reading goes on (a hang-up is noticed), up to the
				 * high-water mark */
				client_wait_input(c);
				break;
			}
			if (!c->query_start)
				c->query_start = g_now;
		}
		bool replaced = false;
		if (type == 'Q' || type == 'E') {
			c->tenant->stats.queries++;
			c->token_held = false;
		}
		unsigned flags = 0;
		bool track = stats_statements_on(c->tenant);
		SqlNorm *norm = track && g_cfg->query_stats && (type == 'Q' || type == 'P') &&
		                                client_analyzes(c)
		                        ? stats_norm_begin()
		                        : NULL;
		if ((type == 'Q' || type == 'P') && client_analyzes(c) &&
		    !inspect_statement(c, s, type, buf_head(in) + MSG_HEADER_LEN, len - 4,
		                       &replaced, &flags, norm)) {
			client_fatal(c, "08P01", "malformed message", NULL);
			return;
		}
		if ((type == 'Q' || type == 'P') && !client_analyzes(c) && tracks_prepared(c) &&
		    (c->prep || prep_server_holds(s)))
			notice_deallocate_all(c, s, type, buf_head(in) + MSG_HEADER_LEN, len - 4);
		if (!replaced && (type == 'P' || type == 'B' || type == 'D' || type == 'C') &&
		    tracks_prepared(c)) {
			PrepResult pr = prep_client_message(
			        c, s, type, buf_head(in) + MSG_HEADER_LEN, len - 4, flags);
			if (pr == PREP_REFUSED)
				c->prep_skip = true;
			replaced = pr != PREP_PASS;
		}
		if (track)
			note_statement(c, type, buf_head(in) + MSG_HEADER_LEN, len - 4, norm);
		size_t n = buf_avail(in) < total ? buf_avail(in) : total;
		if (replaced) {
			buf_consume(in, total);
		} else {
			if (type == 'B')
				s->last_bound = NULL; /* a statement pgtenant does not map */
			server_expect_client(s, type);
			buf_append(&s->conn.out, buf_head(in), n);
			buf_consume(in, n);
		}
		c->fwd_remain = replaced ? 0 : total - n;
		c->tenant->stats.bytes_in += n;
		if (ends_unit(type)) {
			c->reset_in_unit = false;
			if (c->fwd_remain)
				c->fwd_type = type;
			else
				server_unit_end(s);
		}
		if (c->server != s || c->closing)
			return;
		if (conn_out_full(&s->conn)) {
			conn_want_read(&c->conn, false);
			c->bp_paused = true;
			break;
		}
	}
	if (c->closing)
		return;
	s = c->server;
	if (s && buf_avail(&s->conn.out) && !server_flush(s))
		return;
	if (c->bp_paused && s && c->server == s && buf_avail(&s->conn.out) < CONN_LOW_WATER) {
		/* the kernel took it all at once: no write event will come to resume us */
		c->bp_paused = false;
		conn_want_read(&c->conn, true);
		goto again;
	}
	/* replies pgtenant wrote itself (skipped batches, local answers) */
	if (buf_avail(&c->conn.out) && !client_flush(c))
		return;
	if (!buf_avail(in))
		conn_shrink(&c->conn);
}

void client_resume_routing(Client *c)
{
	if (c->closing)
		return;
	c->pool = c->home_pool;
	conn_want_read(&c->conn, true);
	client_forward(c);
}

void client_resume(Client *c)
{
	if (c->closing)
		return;
	if (!conn_out_full(&c->server->conn))
		conn_want_read(&c->conn, true);
	client_forward(c);
}

/* The server's output drained: take more from the client. */
void client_output_drained(Client *c)
{
	if (c->closing || c->state == CL_LOGIN || c->state == CL_WELCOME_WAIT ||
	    c->state == CL_WAITING)
		return;
	c->bp_paused = false;
	conn_want_read(&c->conn, true);
	if (buf_avail(&c->conn.in))
		client_forward(c);
}

void client_wait_failed(Client *c, const char *sqlstate, const char *msg)
{
	Buf *in = &c->conn.in;

	if (c->closing)
		return;
	client_log(LOG_LVL_WARNING, c, "%s", msg);
	proto_error(&c->conn.out, "ERROR", sqlstate, msg, NULL);
	if (buf_avail(in) >= MSG_HEADER_LEN && buf_head(in)[0] == 'Q') {
		size_t total = 1 + (size_t)read_u32be(buf_head(in) + 1);
		size_t n = buf_avail(in) < total ? buf_avail(in) : total;
		buf_consume(in, n);
		c->fwd_remain = total - n;
		c->skip_until_sync = false;
		/* a Query whose tail has not arrived yet is dropped as it comes */
		if (c->fwd_remain == 0)
			proto_ready(&c->conn.out, 'I');
		else
			c->skip_query_tail = true;
	} else {
		c->skip_until_sync = true;
	}
	client_go_idle(c);
}

void client_server_lost(Client *c, const char *why)
{
	c->server = NULL;
	if (c->closing)
		return;
	/* As PostgreSQL and PgBouncer do (SPEC §8): the server's own FATAL went out already
	 * when it sent one; else 08006. Either way the client is closed. */
	client_set_state(c, CL_IDLE);
	if (c->server_fatal_sent) {
		client_log(LOG_LVL_INFO, c, "closing: %s", why);
		c->close_after_flush = true;
		conn_want_read(&c->conn, false);
		client_flush(c);
		return;
	}
	client_fatal(c, "08006", why, NULL);
}

void client_close_idle_for_shutdown(void)
{
	List *it, *tmp;
	list_for_each_safe(it, &g_idle_clients, tmp)
	{
		Client *c = list_entry(it, Client, node);
		client_fatal(c, "57P01", "pgtenant is shutting down", NULL);
	}
	/* session mode: clients holding a server but outside any transaction */
	list_for_each_safe(it, &g_active_clients, tmp)
	{
		Client *c = list_entry(it, Client, node);
		ServerConn *s = c->server;
		if (s && !server_busy(s) && c->fwd_remain == 0 && !buf_avail(&c->conn.in))
			client_fatal(c, "57P01", "pgtenant is shutting down", NULL);
	}
	/* clients queued for a server have not started a transaction: tell them to go */
	List *pit;
	list_for_each(pit, &g_pools)
	{
		Pool *p = list_entry(pit, Pool, node);
		list_for_each_safe(it, &p->waiting, tmp)
		{
			Client *c = list_entry(it, Client, node);
			pool_unwait(c);
			client_fatal(c, "57P01", "pgtenant is shutting down", NULL);
		}
	}
	list_for_each_safe(it, &g_login_clients, tmp)
	{
		Client *c = list_entry(it, Client, node);
		client_close(c, "shutdown");
	}
}
