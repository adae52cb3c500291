/*
 * auth: the auth_file and the MD5 password scheme.
 *
 * auth_file lines are `"user" "secret"` (PgBouncer's userlist.txt format:
 * double-quoted fields, "" inside a field is a literal quote, lines starting
 * with ';' or '#' and blank lines ignored). A secret is plain text, "md5" +
 * 32 hex digits, or a SCRAM-SHA-256$iter:salt$StoredKey:ServerKey verifier.
 */
#ifndef PGTENANT_AUTH_H
#define PGTENANT_AUTH_H

#include "common.h"

typedef struct AuthFile AuthFile;

typedef enum { SECRET_PLAIN = 0, SECRET_MD5, SECRET_SCRAM } SecretKind;

/* Loads the file; NULL and a message ("FILE:LINE: ...") in err when it is unreadable or malformed.
 */
AuthFile *authfile_load(const char *path, char *err, size_t errlen);
void authfile_free(AuthFile *af);
/* The secret stored for user, or NULL. O(1) average (hash table). */
const char *authfile_lookup(const AuthFile *af, const char *user);
int authfile_count(const AuthFile *af);
/* Calls fn for every user (for tenant_users = "*"). */
void authfile_foreach(const AuthFile *af, void (*fn)(const char *user, void *arg), void *arg);

SecretKind auth_secret_kind(const char *secret);

/* "md5" + hex(md5(password || user)) into out (36 bytes incl. NUL). */
void auth_md5_password_hash(const char *password, const char *user, char out[36]);
/*
 * The answer to AuthenticationMD5Password: "md5" + hex(md5(hex(md5(password||user)) || salt)).
 * secret is plain text or an md5 secret. false for a SCRAM secret (cannot answer md5).
 */
bool auth_md5_response(const char *secret, const char *user, const uint8_t salt[4], char out[36]);
/* Checks a client's md5 response against a plain or md5 secret, in constant time. */
bool auth_md5_verify(const char *secret, const char *user, const uint8_t salt[4],
                     const char *response);
/* Checks a cleartext password against any kind of secret (SCRAM verifiers included). */
bool auth_plain_verify(const char *secret, const char *user, const char *password);

/* Fills buf with n cryptographically random bytes (OpenSSL RAND_bytes). */
bool auth_random_bytes(uint8_t *buf, size_t n);
/* Constant-time comparison of n bytes. */
bool auth_ct_equal(const void *a, const void *b, size_t n);

#endif
