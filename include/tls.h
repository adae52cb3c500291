/*
 * tls: the OpenSSL contexts and the questions asked of a TLS session —
 * pgtenant as a TLS server towards its clients (tls_mode, tls_cert_file,
 * tls_key_file, tls_ca_file) and as a TLS client towards backends
 * (server_tls_mode, server_tls_ca_file).
 *
 * Reading and writing through a session is conn.c's job (conn_read and
 * conn_flush switch to SSL_read/SSL_write when Conn.ssl is set), so the
 * data path never knows whether a socket is encrypted.
 *
 * Invariants: every SSL holds a reference to the context it was made from,
 * so a reload builds new contexts and drops the old ones without touching
 * open connections; they keep their certificate until they close. A reload
 * that cannot load a certificate or key changes nothing.
 */
#ifndef PGTENANT_TLS_H
#define PGTENANT_TLS_H

#include "config.h"

struct ssl_st;

/* Builds the contexts for cfg (startup and RELOAD). false + err: nothing was changed. */
bool tls_configure(const Config *cfg, char *err, size_t errlen);
void tls_cleanup(void);

/* May pgtenant answer an SSLRequest with 'S' (tls_mode allow/require and a context)? */
bool tls_accept_enabled(void);
/* A server-side session on an accepted socket; NULL when TLS is not set up. */
struct ssl_st *tls_accept_new(int fd);
/*
 * A client-side session towards a backend. mode decides verification:
 * verify-ca checks the chain against server_tls_ca_file, verify-full also the
 * host name (or IP address) the backend is configured with.
 */
struct ssl_st *tls_connect_new(int fd, ServerTlsMode mode, const char *host);

/* The server name the client sent (SNI), or NULL. */
const char *tls_server_name(struct ssl_st *ssl);
/* Did the client negotiate ALPN "postgresql" (required for direct TLS, as PostgreSQL 17 does)? */
bool tls_alpn_postgresql(struct ssl_st *ssl);
/*
 * The common name of a client certificate verified against tls_ca_file.
 * false with a client-presentable reason in err when there is no certificate,
 * it does not verify, or it has no usable CN.
 */
bool tls_peer_cn(struct ssl_st *ssl, char *cn, size_t cnlen, char *err, size_t errlen);
/* Why a handshake failed: the certificate verification result if that was it, else OpenSSL's error.
 */
void tls_describe_failure(struct ssl_st *ssl, char *err, size_t errlen);
/* Did the handshake fail because the peer's certificate did not verify? */
bool tls_verify_failed(struct ssl_st *ssl);
/*
 * SCRAM-SHA-256-PLUS channel binding data (RFC 5929 tls-server-end-point): the
 * hash of pgtenant's own certificate. Returns its length, 0 when the
 * certificate's signature has no usable hash (channel binding is then not offered).
 */
size_t tls_server_end_point(struct ssl_st *ssl, uint8_t *out, size_t cap);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs. */
void tls_describe(struct ssl_st *ssl, char *out, size_t outlen);

#endif
