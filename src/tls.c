/*
 * tls: see include/tls.h.
 *
 * Two contexts: accept_ctx (pgtenant as the TLS server; built whenever
 * tls_cert_file and tls_key_file are set, so a console SET of tls_mode finds
 * it ready) and connect_ctx (towards backends; one for all of them, since
 * server_tls_ca_file is global — the per-backend server_tls_mode only
 * changes how each session verifies). Session caching and tickets are off,
 * as in PostgreSQL: every login shows its certificate again, and a reload
 * that changes tls_ca_file applies to the very next connection.
 *
 * Client certificates are requested when tls_ca_file is set but a bad or
 * missing one does not abort the handshake: auth_type = cert then refuses
 * the login with a FATAL the client can read (tls_peer_cn), instead of a
 * bare TLS alert.
 */
#include "tls.h"

#include "log.h"
#include "pgtenant.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

static SSL_CTX *accept_ctx;
static SSL_CTX *connect_ctx;

static const unsigned char alpn_postgresql[] = "\x0apostgresql";

static void ssl_error_text(const char *what, const char *file, char *err, size_t errlen)
{
	unsigned long e = ERR_peek_last_error();
	char reason[200];

	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	else
		strlcpy_safe(reason, "unknown error", sizeof(reason));
	if (file)
		snprintf(err, errlen, "%s \"%s\": %s", what, file, reason);
	else
		snprintf(err, errlen, "%s: %s", what, reason);
	ERR_clear_error();
}

static void ctx_common(SSL_CTX *ctx)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                                 SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	/*
	 * conn_flush hands SSL_write whatever the out buffer holds and may offer a
	 * moved or grown buffer on retry; idle connections give their buffers back.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                              SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* fewer reads per record; conn_read re-arms itself for what OpenSSL buffered */
	SSL_CTX_set_read_ahead(ctx, 1);
}

/* The certificate check happens at login (auth_type = cert), with a readable error. */
static int accept_any_cert(int preverify_ok, X509_STORE_CTX *store)
{
	(void)preverify_ok;
	(void)store;
	return 1;
}

/* Offer "postgresql" when the client asks for it; a client without ALPN is fine (SSLRequest). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, alpn_postgresql,
	                          sizeof(alpn_postgresql) - 1, in, inlen) == OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

/* Accept every server name: which tenant it names is decided at startup (SPEC §3). */
static int sni_accept(SSL *ssl, int *alert, void *arg)
{
	(void)ssl;
	(void)alert;
	(void)arg;
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *build_accept_ctx(const Config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	static const unsigned char sid[] = "pgtenant";

	if (!ctx) {
		ssl_error_text("cannot create a TLS context", NULL, err, errlen);
		return NULL;
	}
	ctx_common(ctx);
	SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
		ssl_error_text("tls_cert_file: cannot load", cfg->tls_cert_file, err, errlen);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1) {
		ssl_error_text("tls_key_file: cannot load", cfg->tls_key_file, err, errlen);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_error_text("tls_key_file does not match tls_cert_file", cfg->tls_key_file, err,
		               errlen);
		goto fail;
	}
	if (cfg->tls_ca_file && *cfg->tls_ca_file) {
		STACK_OF(X509_NAME) * names;
		if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca_file, NULL) != 1 ||
		    !(names = SSL_load_client_CA_file(cfg->tls_ca_file))) {
			ssl_error_text("tls_ca_file: cannot load", cfg->tls_ca_file, err, errlen);
			goto fail;
		}
		/* tells clients which CA their certificate must come from */
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, accept_any_cert);
	}
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_tlsext_servername_callback(ctx, sni_accept);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static SSL_CTX *build_connect_ctx(const Config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		ssl_error_text("cannot create a TLS context", NULL, err, errlen);
		return NULL;
	}
	ctx_common(ctx);
	if (cfg->server_tls_ca_file && *cfg->server_tls_ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->server_tls_ca_file, NULL) != 1) {
			ssl_error_text("server_tls_ca_file: cannot load", cfg->server_tls_ca_file,
			               err, errlen);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else {
		SSL_CTX_set_default_verify_paths(ctx);
	}
	/* PostgreSQL 17 expects it on direct TLS; older servers ignore it */
	SSL_CTX_set_alpn_protos(ctx, alpn_postgresql, sizeof(alpn_postgresql) - 1);
	return ctx;
}

bool tls_configure(const Config *cfg, char *err, size_t errlen)
{
	SSL_CTX *acc = NULL, *con;
	bool have_cert = cfg->tls_cert_file && *cfg->tls_cert_file && cfg->tls_key_file &&
	                 *cfg->tls_key_file;

	if (have_cert) {
		acc = build_accept_ctx(cfg, err, errlen);
		if (!acc) {
			if (cfg->tls_mode != TLS_DISABLE)
				return false;
			log_warning("%s (tls_mode = disable, so no client uses it)", err);
		}
	}
	/*
	 * Loading the system's CA store costs tens of milliseconds; without a CA file of
	 * its own and with no backend using TLS, it waits for the first TLS connect.
	 * A configured CA file is still loaded now, so a bad one fails the (re)load.
	 */
	bool want_connect = cfg->server_tls_ca_file && *cfg->server_tls_ca_file;
	for (int i = 0; i < cfg->n_backends && !want_connect; i++)
		want_connect = config_backend_server_tls_mode(cfg, &cfg->backends[i]) !=
		               SERVER_TLS_DISABLE;
	con = want_connect ? build_connect_ctx(cfg, err, errlen) : NULL;
	if (want_connect && !con) {
		SSL_CTX_free(acc);
		return false;
	}
	SSL_CTX_free(accept_ctx);
	SSL_CTX_free(connect_ctx);
	accept_ctx = acc;
	connect_ctx = con;
	return true;
}

void tls_cleanup(void)
{
	SSL_CTX_free(accept_ctx);
	SSL_CTX_free(connect_ctx);
	accept_ctx = connect_ctx = NULL;
}

bool tls_accept_enabled(void)
{
	return accept_ctx && g_cfg->tls_mode != TLS_DISABLE;
}

SSL *tls_accept_new(int fd)
{
	SSL *ssl;

	if (!accept_ctx)
		return NULL;
	ERR_clear_error();
	ssl = SSL_new(accept_ctx);
	if (!ssl)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

static bool is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *tls_connect_new(int fd, ServerTlsMode mode, const char *host)
{
	SSL *ssl;
	bool ip = is_ip_literal(host);

	if (!connect_ctx) {
		char err[256];
		connect_ctx = build_connect_ctx(g_cfg, err, sizeof(err));
		if (!connect_ctx) {
			log_warning("%s", err);
			return NULL;
		}
	}
	ERR_clear_error();
	ssl = SSL_new(connect_ctx);
	if (!ssl)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1)
		goto fail;
	SSL_set_connect_state(ssl);
	/* as libpq: SNI carries a host name, never an address */
	if (!ip && SSL_set_tlsext_host_name(ssl, host) != 1)
		goto fail;
	SSL_set_verify(ssl, mode >= SERVER_TLS_VERIFY_CA ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (mode == SERVER_TLS_VERIFY_FULL) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
		if (ip) {
			if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1)
				goto fail;
		} else {
			X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1)
				goto fail;
		}
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

const char *tls_server_name(SSL *ssl)
{
	return ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

bool tls_alpn_postgresql(SSL *ssl)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;
	SSL_get0_alpn_selected(ssl, &p, &n);
	return n == sizeof(alpn_postgresql) - 2 && memcmp(p, alpn_postgresql + 1, n) == 0;
}

bool tls_peer_cn(SSL *ssl, char *cn, size_t cnlen, char *err, size_t errlen)
{
	X509 *cert;
	long vr;
	bool ok = false;

	*cn = '\0';
	if (!ssl || !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)) {
		snprintf(err, errlen,
		         "client certificates are not verified (tls_ca_file is not set)");
		return false;
	}
	cert = SSL_get1_peer_certificate(ssl);
	if (!cert) {
		snprintf(err, errlen, "connection requires a valid client certificate");
		return false;
	}
	vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK) {
		snprintf(err, errlen, "client certificate verification failed: %s",
		         X509_verify_cert_error_string(vr));
		goto out;
	}
	X509_NAME *subject = X509_get_subject_name(cert);
	int idx = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
	if (idx < 0) {
		snprintf(err, errlen, "client certificate contains no common name");
		goto out;
	}
	unsigned char *utf8 = NULL;
	int n = ASN1_STRING_to_UTF8(&utf8,
	                            X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
	if (n <= 0 || (size_t)n >= cnlen || memchr(utf8, '\0', (size_t)n)) {
		/* an embedded NUL would let "admin\0.evil" pass as "admin" */
		snprintf(err, errlen, "client certificate common name is invalid");
	} else {
		memcpy(cn, utf8, (size_t)n);
		cn[n] = '\0';
		ok = true;
	}
	OPENSSL_free(utf8);
out:
	X509_free(cert);
	return ok;
}

bool tls_verify_failed(SSL *ssl)
{
	return ssl && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) &&
	       SSL_get_verify_result(ssl) != X509_V_OK;
}

void tls_describe_failure(SSL *ssl, char *err, size_t errlen)
{
	if (tls_verify_failed(ssl)) {
		snprintf(err, errlen, "certificate verify failed: %s",
		         X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
		ERR_clear_error();
		return;
	}
	unsigned long e = ERR_peek_last_error();
	if (e) {
		const char *reason = ERR_reason_error_string(e);
		if (reason)
			snprintf(err, errlen, "%s", reason);
		else
			ERR_error_string_n(e, err, errlen);
	} else {
		snprintf(err, errlen, "connection closed during the TLS handshake");
	}
	ERR_clear_error();
}

size_t tls_server_end_point(SSL *ssl, uint8_t *out, size_t cap)
{
	X509 *cert = ssl ? SSL_get_certificate(ssl) : NULL;
	unsigned char md_buf[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	const EVP_MD *md;
	int algo_nid;

	if (!cert || !OBJ_find_sigid_algs(X509_get_signature_nid(cert), &algo_nid, NULL))
		return 0;
	/* RFC 5929 4.1: MD5 and SHA-1 are replaced by SHA-256 */
	md = algo_nid == NID_md5 || algo_nid == NID_sha1 ? EVP_sha256()
	                                                 : EVP_get_digestbynid(algo_nid);
	if (!md || X509_digest(cert, md, md_buf, &n) != 1 || n > cap)
		return 0;
	memcpy(out, md_buf, n);
	return n;
}

void tls_describe(SSL *ssl, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}
