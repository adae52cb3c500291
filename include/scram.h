/*
 * scram: SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both
 * as the server (authenticating pgtenant's clients) and as the client
 * (logging in to PostgreSQL). Crypto is OpenSSL's (HMAC, SHA-256, PBKDF2).
 *
 * Messages are parsed from untrusted bytes with explicit lengths; nothing
 * here assumes NUL termination of input. Output strings are malloc'd and
 * owned by the caller.
 */
#ifndef PGTENANT_SCRAM_H
#define PGTENANT_SCRAM_H

#include "common.h"

#define SCRAM_KEY_LEN            32
#define SCRAM_DEFAULT_ITERATIONS 4096
/* Largest salt accepted in a stored verifier (PostgreSQL writes 16 bytes). */
#define SCRAM_MAX_SALT_LEN 64
/* Iteration counts above this are refused: each login would cost seconds of CPU. */
#define SCRAM_MAX_ITERATIONS 10000000

typedef struct ScramServer {
	/* from the secret */
	int iterations;
	uint8_t salt[SCRAM_MAX_SALT_LEN];
	int salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
	/* exchange state */
	char *client_first_bare;
	char *server_first;
	char *client_nonce;
	char *server_nonce; /* full nonce: client's + ours */
	char gs2_flag;      /* 'n', 'y' or 'p': the client-final "c=" must echo this gs2 header */
	/* channel binding (SCRAM-SHA-256-PLUS, tls-server-end-point) */
	bool cb_offered;  /* PLUS was advertised: a client saying 'y' suspects a downgrade */
	bool cb_selected; /* the client chose PLUS: it must send 'p' and this data */
	uint8_t cb_data[64];
	size_t cb_len;
	int step;
} ScramServer;

typedef struct ScramClient {
	char *client_nonce;
	char *client_first_bare;
	char *server_first;
	uint8_t salted_password[SCRAM_KEY_LEN];
	char *auth_message;
	int step;
} ScramClient;

/*
 * Server side. secret is plain text or a SCRAM-SHA-256$ verifier; an md5
 * secret cannot be used (false). For plain text a verifier is derived with a
 * salt drawn from the user name and the password under a key random per
 * process: the same user keeps one salt, as in pg_authid, so its PBKDF2 result
 * is computed once (see the cache in scram.c), while two users with one
 * password still get different salts.
 */
bool scram_server_init(ScramServer *s, const char *secret, const char *user);
/*
 * The plain-text secret an unknown user is challenged with (so that nothing
 * tells it apart from a known one): stable per user name within the process,
 * so it costs what a known user's login costs. out gets 64 hex digits.
 */
void scram_fake_secret(const char *user, char out[65]);
/*
 * Channel binding, between scram_server_init and scram_server_first: offered
 * = SCRAM-SHA-256-PLUS was advertised, selected = the client chose it; data is
 * the tls-server-end-point hash of the server's certificate (at most 64 bytes).
 */
void scram_server_channel_binding(ScramServer *s, bool offered, bool selected, const uint8_t *data,
                                  size_t len);
/* client-first-message (the SASLInitialResponse data) -> server-first-message. */
bool scram_server_first(ScramServer *s, const uint8_t *msg, size_t len, char **out, char *err,
                        size_t errlen);
/* client-final-message -> server-final-message ("v=..."); false when the proof is wrong. */
bool scram_server_final(ScramServer *s, const uint8_t *msg, size_t len, char **out, char *err,
                        size_t errlen);
void scram_server_free(ScramServer *s);

/* Client side, with the plain password. */
bool scram_client_first(ScramClient *c, char **out);
bool scram_client_final(ScramClient *c, const char *password, const uint8_t *server_first,
                        size_t len, char **out, char *err, size_t errlen);
/* Checks the server's signature in server-final-message. */
bool scram_client_verify(ScramClient *c, const uint8_t *server_final, size_t len, char *err,
                         size_t errlen);
void scram_client_free(ScramClient *c);

/* Builds a SCRAM-SHA-256$iter:salt$StoredKey:ServerKey verifier from a password (tests, tooling).
 */
char *scram_build_verifier(const char *password, const uint8_t *salt, int salt_len, int iterations);
/*
 * Parses a SCRAM-SHA-256$iter:salt$StoredKey:ServerKey verifier; salt must
 * hold SCRAM_MAX_SALT_LEN bytes. false when it is malformed in any way.
 */
bool scram_parse_verifier(const char *secret, int *iterations, uint8_t *salt, int *salt_len,
                          uint8_t stored_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN]);
/* Checks a cleartext password against a verifier, in constant time (auth_plain_verify). */
bool scram_verify_password(const char *verifier, const char *password);

#endif
