/*
 * auth: the auth_file (user -> secret) and the password checks that do not
 * need a SASL exchange (cleartext and MD5).
 *
 * The file is loaded whole into a new AuthFile, so a reload that fails
 * leaves the old one in place. Entries are kept in file order (foreach is
 * deterministic) and indexed by an open-addressing table of entry indexes,
 * kept at most half full so probes stay short even with 100k users. Only
 * the file's contents decide the table's shape; client-supplied names are
 * only looked up, never inserted, so they cannot lengthen probe chains.
 *
 * Secret comparisons are constant time; cleartext secrets are compared via
 * their SHA-256 so not even their length leaks through timing.
 */
#include "auth.h"

#include "scram.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define AUTH_MD5_LEN    35 /* "md5" + 32 hex digits */
#define AUTH_SLOT_EMPTY (-1)

typedef struct AuthEntry {
	char *user;
	char *secret;
	uint64_t hash;
} AuthEntry;

struct AuthFile {
	AuthEntry *entries; /* file order, one per distinct user */
	int count;
	int cap;
	int32_t *slots; /* indexes into entries, or AUTH_SLOT_EMPTY */
	size_t nslots;  /* power of two */
};

/* FNV-1a: the keys are short and admin-supplied, so a simple hash is enough. */
static uint64_t auth_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;
	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* The slot holding user, or the empty slot where it would go. */
static size_t auth_find_slot(const AuthFile *af, const char *user, uint64_t h)
{
	size_t mask = af->nslots - 1, i = (size_t)h & mask;
	for (;;) {
		int32_t idx = af->slots[i];
		if (idx == AUTH_SLOT_EMPTY)
			return i;
		const AuthEntry *e = &af->entries[idx];
		if (e->hash == h && strcmp(e->user, user) == 0)
			return i;
		i = (i + 1) & mask;
	}
}

static void auth_rehash(AuthFile *af, size_t nslots)
{
	free(af->slots);
	af->nslots = nslots;
	af->slots = xmalloc(nslots * sizeof(*af->slots));
	for (size_t i = 0; i < nslots; i++)
		af->slots[i] = AUTH_SLOT_EMPTY;
	for (int k = 0; k < af->count; k++)
		af->slots[auth_find_slot(af, af->entries[k].user, af->entries[k].hash)] = k;
}

/* Takes ownership of user and secret; a repeated user replaces the earlier secret. */
static void auth_insert(AuthFile *af, char *user, char *secret)
{
	uint64_t h = auth_hash(user);
	size_t slot = auth_find_slot(af, user, h);

	if (af->slots[slot] != AUTH_SLOT_EMPTY) {
		AuthEntry *e = &af->entries[af->slots[slot]];
		OPENSSL_cleanse(e->secret, strlen(e->secret));
		free(e->secret);
		e->secret = secret;
		free(user);
		return;
	}
	if (af->count == af->cap) {
		af->cap = af->cap ? af->cap * 2 : 64;
		af->entries = xrealloc(af->entries, (size_t)af->cap * sizeof(*af->entries));
	}
	af->entries[af->count] = (AuthEntry){user, secret, h};
	af->slots[slot] = af->count++;
	if ((size_t)af->count * 2 > af->nslots)
		auth_rehash(af, af->nslots * 2);
}

static bool auth_is_space(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Reads a double-quoted field starting at line[*pos] == '"'. "" stands for
 * one quote. On success *out is the malloc'd unquoted text.
 */
static bool auth_parse_quoted(const char *line, size_t len, size_t *pos, char **out,
                              const char **msg)
{
	size_t i = *pos + 1, n = 0;
	char *buf = xmalloc(len + 1); /* the field cannot be longer than the line */

	for (;;) {
		if (i >= len) {
			free(buf);
			*msg = "unterminated quoted field";
			return false;
		}
		if (line[i] == '"') {
			if (i + 1 < len && line[i + 1] == '"') {
				buf[n++] = '"';
				i += 2;
				continue;
			}
			i++;
			break;
		}
		buf[n++] = line[i++];
	}
	buf[n] = '\0';
	*pos = i;
	*out = buf;
	return true;
}

typedef enum { AUTH_LINE_SKIP, AUTH_LINE_ENTRY, AUTH_LINE_ERROR } AuthLine;

static AuthLine auth_parse_line(const char *line, size_t len, char **user, char **secret,
                                const char **msg)
{
	size_t i = 0;
	char *extra;

	*user = *secret = NULL;
	if (memchr(line, '\0', len)) {
		*msg = "NUL byte in line";
		return AUTH_LINE_ERROR;
	}
	while (i < len && auth_is_space(line[i]))
		i++;
	if (i == len || line[i] == ';' || line[i] == '#')
		return AUTH_LINE_SKIP;
	if (line[i] != '"') {
		*msg = "expected a double-quoted user name";
		return AUTH_LINE_ERROR;
	}
	if (!auth_parse_quoted(line, len, &i, user, msg))
		return AUTH_LINE_ERROR;
	if ((*user)[0] == '\0') {
		*msg = "empty user name";
		goto fail;
	}
	if (i >= len || !auth_is_space(line[i])) {
		*msg = "expected whitespace and a double-quoted secret after the user name";
		goto fail;
	}
	while (i < len && auth_is_space(line[i]))
		i++;
	if (i >= len || line[i] != '"') {
		*msg = "expected a double-quoted secret after the user name";
		goto fail;
	}
	if (!auth_parse_quoted(line, len, &i, secret, msg))
		goto fail;
	/* PgBouncer ignores further fields; accept them if they are well-formed quoted fields */
	for (;;) {
		while (i < len && auth_is_space(line[i]))
			i++;
		if (i >= len)
			break;
		if (line[i] != '"') {
			*msg = "unexpected text after the secret";
			goto fail;
		}
		if (!auth_parse_quoted(line, len, &i, &extra, msg))
			goto fail;
		free(extra);
	}
	/* a broken verifier would otherwise be taken for a cleartext password */
	if (strncmp(*secret, "SCRAM-SHA-256$", 14) == 0 &&
	    auth_secret_kind(*secret) != SECRET_SCRAM) {
		*msg = "malformed SCRAM-SHA-256 secret";
		goto fail;
	}
	return AUTH_LINE_ENTRY;
fail:
	free(*user);
	if (*secret) {
		OPENSSL_cleanse(*secret, strlen(*secret));
		free(*secret);
	}
	*user = *secret = NULL;
	return AUTH_LINE_ERROR;
}

AuthFile *authfile_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	AuthFile *af = xcalloc(1, sizeof(*af));
	auth_rehash(af, 128);

	char *line = NULL;
	size_t linecap = 0;
	ssize_t n;
	long lineno = 0;
	bool ok = true;
	while ((n = getline(&line, &linecap, f)) >= 0) {
		char *user, *secret;
		const char *msg = NULL;
		size_t len = (size_t)n;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		switch (auth_parse_line(line, len, &user, &secret, &msg)) {
		case AUTH_LINE_SKIP:
			break;
		case AUTH_LINE_ENTRY:
			auth_insert(af, user, secret);
			break;
		case AUTH_LINE_ERROR:
			snprintf(err, errlen, "%s:%ld: %s", path, lineno, msg);
			ok = false;
			break;
		}
		if (!ok)
			break;
	}
	if (ok && ferror(f)) {
		snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
		ok = false;
	}
	if (line) {
		OPENSSL_cleanse(line, linecap);
		free(line);
	}
	fclose(f);
	if (!ok) {
		authfile_free(af);
		return NULL;
	}
	return af;
}

void authfile_free(AuthFile *af)
{
	if (!af)
		return;
	for (int i = 0; i < af->count; i++) {
		free(af->entries[i].user);
		OPENSSL_cleanse(af->entries[i].secret, strlen(af->entries[i].secret));
		free(af->entries[i].secret);
	}
	free(af->entries);
	free(af->slots);
	free(af);
}

const char *authfile_lookup(const AuthFile *af, const char *user)
{
	if (!af || !user)
		return NULL;
	int32_t idx = af->slots[auth_find_slot(af, user, auth_hash(user))];
	return idx == AUTH_SLOT_EMPTY ? NULL : af->entries[idx].secret;
}

int authfile_count(const AuthFile *af)
{
	return af ? af->count : 0;
}

void authfile_foreach(const AuthFile *af, void (*fn)(const char *user, void *arg), void *arg)
{
	if (!af)
		return;
	for (int i = 0; i < af->count; i++)
		fn(af->entries[i].user, arg);
}

/* ---- secrets ---- */

static bool auth_is_md5_secret(const char *secret)
{
	return strlen(secret) == AUTH_MD5_LEN && strncmp(secret, "md5", 3) == 0 &&
	       strspn(secret + 3, "0123456789abcdefABCDEF") == 32;
}

SecretKind auth_secret_kind(const char *secret)
{
	int iterations, salt_len;
	uint8_t salt[SCRAM_MAX_SALT_LEN], stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];

	/* same rule as PostgreSQL: anything that is not a well-formed hash is a password */
	if (auth_is_md5_secret(secret))
		return SECRET_MD5;
	if (scram_parse_verifier(secret, &iterations, salt, &salt_len, stored, server))
		return SECRET_SCRAM;
	return SECRET_PLAIN;
}

/* "md5" + lowercase hex of md5(a || b) into out; out is "" if the digest is unavailable (FIPS). */
static bool auth_md5_hex(const void *a, size_t alen, const void *b, size_t blen, char out[36])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	          EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
	          EVP_DigestFinal_ex(ctx, digest, &dlen) == 1 && dlen == 16;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		out[0] = '\0';
		return false;
	}
	memcpy(out, "md5", 3);
	for (int i = 0; i < 16; i++) {
		out[3 + 2 * i] = hex[digest[i] >> 4];
		out[4 + 2 * i] = hex[digest[i] & 15];
	}
	out[AUTH_MD5_LEN] = '\0';
	return true;
}

void auth_md5_password_hash(const char *password, const char *user, char out[36])
{
	auth_md5_hex(password, strlen(password), user, strlen(user), out);
}

/* The stored "md5..." form of a plain or md5 secret, hex in lowercase as clients compute it. */
static bool auth_md5_stored(const char *secret, const char *user, char out[36])
{
	if (auth_is_md5_secret(secret)) {
		memcpy(out, "md5", 3);
		for (int i = 3; i < AUTH_MD5_LEN; i++)
			out[i] = (char)tolower((unsigned char)secret[i]);
		out[AUTH_MD5_LEN] = '\0';
		return true;
	}
	if (auth_secret_kind(secret) == SECRET_SCRAM)
		return false;
	return auth_md5_hex(secret, strlen(secret), user, strlen(user), out);
}

bool auth_md5_response(const char *secret, const char *user, const uint8_t salt[4], char out[36])
{
	char stored[36];

	out[0] = '\0';
	if (!secret || !user || !auth_md5_stored(secret, user, stored))
		return false;
	bool ok = auth_md5_hex(stored + 3, 32, salt, 4, out);
	OPENSSL_cleanse(stored, sizeof(stored));
	return ok;
}

bool auth_md5_verify(const char *secret, const char *user, const uint8_t salt[4],
                     const char *response)
{
	char expected[36];

	/* PostgreSQL never accepts an empty password; neither do we */
	if (!secret || !secret[0] || !response || strlen(response) != AUTH_MD5_LEN)
		return false;
	if (!auth_md5_response(secret, user, salt, expected))
		return false;
	return auth_ct_equal(expected, response, AUTH_MD5_LEN);
}

static bool auth_sha256(const char *s, uint8_t out[32])
{
	unsigned int olen = 0;
	return EVP_Digest(s, strlen(s), out, &olen, EVP_sha256(), NULL) == 1 && olen == 32;
}

bool auth_plain_verify(const char *secret, const char *user, const char *password)
{
	if (!secret || !user || !password || !secret[0] || !password[0])
		return false;
	switch (auth_secret_kind(secret)) {
	case SECRET_MD5: {
		char mine[36], stored[36];
		if (!auth_md5_stored(secret, user, stored) ||
		    !auth_md5_hex(password, strlen(password), user, strlen(user), mine))
			return false;
		return auth_ct_equal(mine, stored, AUTH_MD5_LEN);
	}
	case SECRET_SCRAM:
		return scram_verify_password(secret, password);
	case SECRET_PLAIN: {
		uint8_t a[32], b[32];
		if (!auth_sha256(secret, a) || !auth_sha256(password, b))
			return false;
		return auth_ct_equal(a, b, sizeof(a));
	}
	}
	return false;
}

bool auth_random_bytes(uint8_t *buf, size_t n)
{
	return n <= INT_MAX && RAND_bytes(buf, (int)n) == 1;
}

bool auth_ct_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}
