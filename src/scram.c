/*
 * scram: SCRAM-SHA-256 for both ends of the pooler.
 *
 * Every message arrives as untrusted bytes with a length. Parsing walks a
 * ScramReader that never reads past its end, and rejects NUL bytes up front
 * so the strings built from message parts (client_first_bare, the auth
 * message) are exactly the bytes that were signed. A failed step leaves the
 * exchange in a dead state: nothing can be retried on the same object, so a
 * client gets exactly one proof attempt per exchange.
 *
 * SASLprep is not applied to passwords: ASCII passwords and passwords that
 * are already NFKC-normalised UTF-8 (what PostgreSQL stores in practice)
 * hash identically either way.
 */
#include "scram.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define SCRAM_PREFIX "SCRAM-SHA-256$"
/* PostgreSQL's own salt length for new verifiers. */
#define SCRAM_SALT_LEN 16
/* Random bytes in a nonce: 18 for the server part (as PostgreSQL), 24 for ours as a client. */
#define SCRAM_SERVER_NONCE_RAW 18
#define SCRAM_CLIENT_NONCE_RAW 24
/* No legitimate SCRAM message comes near this; refuse before copying anything. */
#define SCRAM_MAX_MESSAGE 8192
/* A salt sent to us by a server; generous, but bounds the stack buffer. */
#define SCRAM_MAX_SERVER_SALT 256

/* Exchange steps; SCRAM_STEP_FAILED is terminal. */
enum {
	SCRAM_STEP_START = 0,
	SCRAM_STEP_FIRST_DONE,
	SCRAM_STEP_FINAL_DONE,
	SCRAM_STEP_VERIFIED,
	SCRAM_STEP_FAILED = -1
};

/* ---- base64 (RFC 4648, with padding) ---- */

static const char scram_b64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Encoded length of n bytes, without the NUL; a constant expression for buffer sizes. */
#define scram_b64_enclen(n) (4 * (((size_t)(n) + 2) / 3))

/* Writes scram_b64_enclen(n) characters and a NUL to out. */
static void scram_b64_encode(const uint8_t *src, size_t n, char *out)
{
	size_t i = 0;
	char *o = out;

	while (i + 3 <= n) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
		*o++ = scram_b64_alphabet[v >> 18];
		*o++ = scram_b64_alphabet[(v >> 12) & 63];
		*o++ = scram_b64_alphabet[(v >> 6) & 63];
		*o++ = scram_b64_alphabet[v & 63];
		i += 3;
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)src[i] << 16;
		*o++ = scram_b64_alphabet[v >> 18];
		*o++ = scram_b64_alphabet[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
		*o++ = scram_b64_alphabet[v >> 18];
		*o++ = scram_b64_alphabet[(v >> 12) & 63];
		*o++ = scram_b64_alphabet[(v >> 6) & 63];
		*o++ = '=';
	}
	*o = '\0';
}

static char *scram_b64_encode_alloc(const uint8_t *src, size_t n)
{
	char *out = xmalloc(scram_b64_enclen(n) + 1);
	scram_b64_encode(src, n, out);
	return out;
}

static int scram_b64_value(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Strict decoder: length a multiple of 4, padding only at the very end, no
 * whitespace. Decodes into out (room for outmax bytes); false when the input
 * is malformed or would not fit.
 */
static bool scram_b64_decode(const uint8_t *src, size_t n, uint8_t *out, size_t outmax,
                             size_t *outlen)
{
	size_t pad = 0, len = 0;

	if (n == 0 || n % 4 != 0)
		return false;
	if (src[n - 1] == '=')
		pad = src[n - 2] == '=' ? 2 : 1;
	if (n / 4 * 3 - pad > outmax)
		return false;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		bool last = i + 4 == n;
		for (int k = 0; k < 4; k++) {
			/* '=' is only valid as the trailing pad of the last quantum */
			if (last && src[i + k] == '=' && (size_t)k >= 4 - pad) {
				v[k] = 0;
				continue;
			}
			v[k] = scram_b64_value(src[i + k]);
			if (v[k] < 0)
				return false;
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		             (uint32_t)v[3];
		out[len++] = (uint8_t)(w >> 16);
		if (!last || pad < 2)
			out[len++] = (uint8_t)(w >> 8);
		if (!last || pad < 1)
			out[len++] = (uint8_t)w;
	}
	*outlen = len;
	return true;
}

/* ---- primitives ---- */

static bool scram_sha256(const uint8_t *data, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int olen = 0;
	return EVP_Digest(data, len, out, &olen, EVP_sha256(), NULL) == 1 && olen == SCRAM_KEY_LEN;
}

static bool scram_hmac(const uint8_t key[SCRAM_KEY_LEN], const void *data, size_t len,
                       uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int olen = 0;
	return HMAC(EVP_sha256(), key, SCRAM_KEY_LEN, data, len, out, &olen) != NULL &&
	       olen == SCRAM_KEY_LEN;
}

/* A key random per process: plain-text salts and unknown users' secrets derive from it. */
static const uint8_t *process_key(void)
{
	static uint8_t key[SCRAM_KEY_LEN];
	static bool have;
	if (!have) {
		if (RAND_bytes(key, sizeof(key)) != 1)
			abort(); /* no randomness: nothing about authentication can be trusted */
		have = true;
	}
	return key;
}

/*
 * PBKDF2 is nearly all a SCRAM login costs (4096 rounds of HMAC-SHA256, about a
 * millisecond), and its inputs repeat: a user's password and salt at each of its
 * logins, a backend's password and PostgreSQL's salt at each new server
 * connection. Results are kept in a direct-mapped table keyed by a digest of the
 * inputs (no password is kept); a slot taken by other inputs is computed again.
 */
#define SALTED_CACHE_SLOTS 1024
static struct {
	uint8_t key[SCRAM_KEY_LEN];
	uint8_t salted[SCRAM_KEY_LEN];
	bool used;
} salted_cache[SALTED_CACHE_SLOTS];

static bool salted_cache_key(const char *password, size_t plen, const uint8_t *salt,
                             size_t salt_len, int iterations, uint8_t key[SCRAM_KEY_LEN])
{
	uint8_t head[8] = {(uint8_t)(iterations >> 24), (uint8_t)(iterations >> 16),
	                   (uint8_t)(iterations >> 8),  (uint8_t)iterations,
	                   (uint8_t)(salt_len >> 24),   (uint8_t)(salt_len >> 16),
	                   (uint8_t)(salt_len >> 8),    (uint8_t)salt_len};
	unsigned int len = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	          EVP_DigestUpdate(md, head, sizeof(head)) == 1 &&
	          EVP_DigestUpdate(md, salt, salt_len) == 1 &&
	          EVP_DigestUpdate(md, password, plen) == 1 &&
	          EVP_DigestFinal_ex(md, key, &len) == 1 && len == SCRAM_KEY_LEN;
	EVP_MD_CTX_free(md);
	return ok;
}

static bool scram_salted_password(const char *password, const uint8_t *salt, size_t salt_len,
                                  int iterations, uint8_t out[SCRAM_KEY_LEN])
{
	uint8_t key[SCRAM_KEY_LEN];
	size_t plen = strlen(password);
	if (plen > INT_MAX || salt_len > INT_MAX || iterations < 1)
		return false;
	bool keyed = salted_cache_key(password, plen, salt, salt_len, iterations, key);
	unsigned slot = keyed ? ((unsigned)key[0] | (unsigned)key[1] << 8) % SALTED_CACHE_SLOTS : 0;
	if (keyed && salted_cache[slot].used &&
	    CRYPTO_memcmp(salted_cache[slot].key, key, SCRAM_KEY_LEN) == 0) {
		memcpy(out, salted_cache[slot].salted, SCRAM_KEY_LEN);
		return true;
	}
	if (PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)salt_len, iterations, EVP_sha256(),
	                      SCRAM_KEY_LEN, out) != 1)
		return false;
	if (keyed) {
		memcpy(salted_cache[slot].key, key, SCRAM_KEY_LEN);
		memcpy(salted_cache[slot].salted, out, SCRAM_KEY_LEN);
		salted_cache[slot].used = true;
	}
	return true;
}

/* SaltedPassword -> StoredKey and ServerKey. */
static bool scram_derive_keys(const uint8_t salted[SCRAM_KEY_LEN],
                              uint8_t stored_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN])
{
	uint8_t client_key[SCRAM_KEY_LEN];
	bool ok = scram_hmac(salted, "Client Key", 10, client_key) &&
	          scram_sha256(client_key, SCRAM_KEY_LEN, stored_key) &&
	          scram_hmac(salted, "Server Key", 10, server_key);
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return ok;
}

static bool scram_random(uint8_t *buf, size_t n)
{
	return n <= INT_MAX && RAND_bytes(buf, (int)n) == 1;
}

static void scram_set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		strlcpy_safe(err, msg, errlen);
}

/* Concatenates up to five NUL-terminated parts into one malloc'd string. */
static char *scram_concat(const char *a, const char *b, const char *c, const char *d, const char *e)
{
	const char *parts[5] = {a, b, c, d, e};
	size_t total = 0, off = 0;
	for (int i = 0; i < 5; i++)
		total += parts[i] ? strlen(parts[i]) : 0;
	char *out = xmalloc(total + 1);
	for (int i = 0; i < 5; i++) {
		if (!parts[i])
			continue;
		size_t n = strlen(parts[i]);
		memcpy(out + off, parts[i], n);
		off += n;
	}
	out[off] = '\0';
	return out;
}

/* ---- message reader ---- */

typedef struct ScramReader {
	const uint8_t *p;
	size_t len;
	size_t pos;
} ScramReader;

/*
 * Rejects empty, oversized or NUL-containing messages before any parsing,
 * and a trailing ',' (an empty last attribute), which the attribute reader
 * would otherwise swallow.
 */
static bool scram_reader_init(ScramReader *r, const uint8_t *msg, size_t len)
{
	r->p = msg;
	r->len = len;
	r->pos = 0;
	return msg != NULL && len > 0 && len <= SCRAM_MAX_MESSAGE && msg[len - 1] != ',' &&
	       memchr(msg, '\0', len) == NULL;
}

static bool scram_reader_at_end(const ScramReader *r)
{
	return r->pos >= r->len;
}

/* True when the next attribute is "name=". */
static bool scram_reader_peek_attr(const ScramReader *r, char name)
{
	return r->len - r->pos >= 2 && r->p[r->pos] == (uint8_t)name && r->p[r->pos + 1] == '=';
}

/*
 * Reads "name=value" up to the next ',' (consumed) or the end. The value
 * points into the message and is not terminated.
 */
static bool scram_reader_attr(ScramReader *r, char name, const uint8_t **val, size_t *vlen)
{
	if (!scram_reader_peek_attr(r, name))
		return false;
	size_t start = r->pos + 2, end = start;
	while (end < r->len && r->p[end] != ',')
		end++;
	*val = r->p + start;
	*vlen = end - start;
	r->pos = end < r->len ? end + 1 : end;
	return true;
}

/* Skips one "x=value" extension attribute (RFC 5802 allows them; we ignore them). */
static bool scram_reader_skip_attr(ScramReader *r)
{
	if (r->len - r->pos < 2 || r->p[r->pos + 1] != '=')
		return false;
	uint8_t c = r->p[r->pos];
	if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
		return false;
	const uint8_t *v;
	size_t vl;
	return scram_reader_attr(r, (char)c, &v, &vl);
}

/* A nonce is printable ASCII except ',' (RFC 5802 "printable"). */
static bool scram_valid_nonce(const uint8_t *p, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',')
			return false;
	return true;
}

/* Strict positive decimal, 1..SCRAM_MAX_ITERATIONS, no sign or leading junk. */
static bool scram_parse_iterations(const uint8_t *p, size_t n, int *out)
{
	long v = 0;
	if (n == 0 || n > 9)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	if (v < 1 || v > SCRAM_MAX_ITERATIONS)
		return false;
	*out = (int)v;
	return true;
}

/* ---- verifiers ---- */

char *scram_build_verifier(const char *password, const uint8_t *salt, int salt_len, int iterations)
{
	uint8_t salted[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	char salt64[scram_b64_enclen(SCRAM_MAX_SALT_LEN) + 1];
	char stored64[scram_b64_enclen(SCRAM_KEY_LEN) + 1],
	        server64[scram_b64_enclen(SCRAM_KEY_LEN) + 1];

	if (!password || !salt || salt_len < 1 || salt_len > SCRAM_MAX_SALT_LEN || iterations < 1 ||
	    iterations > SCRAM_MAX_ITERATIONS)
		return NULL;
	bool ok = scram_salted_password(password, salt, (size_t)salt_len, iterations, salted) &&
	          scram_derive_keys(salted, stored, server);
	OPENSSL_cleanse(salted, sizeof(salted));
	if (!ok)
		return NULL;
	scram_b64_encode(salt, (size_t)salt_len, salt64);
	scram_b64_encode(stored, SCRAM_KEY_LEN, stored64);
	scram_b64_encode(server, SCRAM_KEY_LEN, server64);

	size_t n = strlen(SCRAM_PREFIX) + 12 + strlen(salt64) + strlen(stored64) +
	           strlen(server64) + 4;
	char *out = xmalloc(n);
	snprintf(out, n, SCRAM_PREFIX "%d:%s$%s:%s", iterations, salt64, stored64, server64);
	return out;
}

/* Decodes a base64 field of exactly want bytes (want 0: any length up to max). */
static bool scram_decode_field(const char *s, size_t n, uint8_t *out, size_t max, size_t want,
                               size_t *got)
{
	size_t len = 0;
	if (!scram_b64_decode((const uint8_t *)s, n, out, max, &len))
		return false;
	if (want && len != want)
		return false;
	*got = len;
	return true;
}

bool scram_parse_verifier(const char *secret, int *iterations, uint8_t *salt, int *salt_len,
                          uint8_t stored_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN])
{
	size_t plen = strlen(SCRAM_PREFIX), got;

	if (!secret || strncmp(secret, SCRAM_PREFIX, plen) != 0)
		return false;
	const char *p = secret + plen;
	const char *colon1 = strchr(p, ':');
	const char *dollar = colon1 ? strchr(colon1 + 1, '$') : NULL;
	const char *colon2 = dollar ? strchr(dollar + 1, ':') : NULL;
	if (!colon2)
		return false;
	if (!scram_parse_iterations((const uint8_t *)p, (size_t)(colon1 - p), iterations))
		return false;
	if (!scram_decode_field(colon1 + 1, (size_t)(dollar - colon1 - 1), salt, SCRAM_MAX_SALT_LEN,
	                        0, &got))
		return false;
	*salt_len = (int)got;
	if (!scram_decode_field(dollar + 1, (size_t)(colon2 - dollar - 1), stored_key,
	                        SCRAM_KEY_LEN, SCRAM_KEY_LEN, &got))
		return false;
	return scram_decode_field(colon2 + 1, strlen(colon2 + 1), server_key, SCRAM_KEY_LEN,
	                          SCRAM_KEY_LEN, &got);
}

bool scram_verify_password(const char *verifier, const char *password)
{
	int iterations, salt_len;
	uint8_t salt[SCRAM_MAX_SALT_LEN], stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	uint8_t salted[SCRAM_KEY_LEN], my_stored[SCRAM_KEY_LEN], my_server[SCRAM_KEY_LEN];

	if (!password ||
	    !scram_parse_verifier(verifier, &iterations, salt, &salt_len, stored, server))
		return false;
	bool ok = scram_salted_password(password, salt, (size_t)salt_len, iterations, salted) &&
	          scram_derive_keys(salted, my_stored, my_server) &&
	          CRYPTO_memcmp(stored, my_stored, SCRAM_KEY_LEN) == 0 &&
	          CRYPTO_memcmp(server, my_server, SCRAM_KEY_LEN) == 0;
	OPENSSL_cleanse(salted, sizeof(salted));
	return ok;
}

/* ---- server side ---- */

/* HMAC under the process key of a label, a NUL, a and b. */
static bool process_hmac(const char *label, const char *a, const char *b,
                         uint8_t out[SCRAM_KEY_LEN])
{
	size_t la = strlen(label) + 1, lu = strlen(a) + 1, lb = strlen(b);
	char *msg = malloc(la + lu + lb);
	if (!msg)
		return false;
	memcpy(msg, label, la);
	memcpy(msg + la, a, lu);
	memcpy(msg + la + lu, b, lb);
	bool ok = scram_hmac(process_key(), msg, la + lu + lb, out);
	OPENSSL_cleanse(msg, la + lu + lb);
	free(msg);
	return ok;
}

void scram_fake_secret(const char *user, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t mac[SCRAM_KEY_LEN];
	if (!process_hmac("pgtenant unknown user", user, "", mac) &&
	    RAND_bytes(mac, sizeof(mac)) != 1)
		memset(mac, 7, sizeof(mac));
	for (int i = 0; i < SCRAM_KEY_LEN; i++) {
		out[2 * i] = hex[mac[i] >> 4];
		out[2 * i + 1] = hex[mac[i] & 15];
	}
	out[64] = '\0';
}

bool scram_server_init(ScramServer *s, const char *secret, const char *user)
{
	memset(s, 0, sizeof(*s));
	s->step = SCRAM_STEP_FAILED;
	if (!secret || !secret[0])
		return false;
	if (strncmp(secret, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) == 0) {
		/* a secret that looks like a verifier but is broken must not become a plain
		 * password */
		if (!scram_parse_verifier(secret, &s->iterations, s->salt, &s->salt_len,
		                          s->stored_key, s->server_key))
			return false;
	} else {
		/* "md5" + 32 hex digits: the password itself is unknown, so no SCRAM keys exist */
		if (strlen(secret) == 35 && strncmp(secret, "md5", 3) == 0 &&
		    strspn(secret + 3, "0123456789abcdefABCDEF") == 32)
			return false;
		uint8_t salted[SCRAM_KEY_LEN], mac[SCRAM_KEY_LEN];
		s->iterations = SCRAM_DEFAULT_ITERATIONS;
		s->salt_len = SCRAM_SALT_LEN;
		bool ok = process_hmac("pgtenant scram salt", user ? user : "", secret, mac);
		memcpy(s->salt, mac, SCRAM_SALT_LEN);
		ok = ok &&
		     scram_salted_password(secret, s->salt, SCRAM_SALT_LEN, s->iterations,
		                           salted) &&
		     scram_derive_keys(salted, s->stored_key, s->server_key);
		OPENSSL_cleanse(salted, sizeof(salted));
		if (!ok)
			return false;
	}
	s->step = SCRAM_STEP_START;
	return true;
}

void scram_server_channel_binding(ScramServer *s, bool offered, bool selected, const uint8_t *data,
                                  size_t len)
{
	s->cb_offered = offered;
	s->cb_selected = selected && len > 0 && len <= sizeof(s->cb_data);
	s->cb_len = s->cb_selected ? len : 0;
	if (s->cb_selected)
		memcpy(s->cb_data, data, len);
}

static bool scram_server_fail(ScramServer *s, char *err, size_t errlen, const char *msg)
{
	s->step = SCRAM_STEP_FAILED;
	scram_set_err(err, errlen, msg);
	return false;
}

bool scram_server_first(ScramServer *s, const uint8_t *msg, size_t len, char **out, char *err,
                        size_t errlen)
{
	ScramReader r;
	const uint8_t *v;
	size_t vl;

	*out = NULL;
	if (s->step != SCRAM_STEP_START)
		return scram_server_fail(s, err, errlen, "unexpected SCRAM client-first-message");
	if (!scram_reader_init(&r, msg, len))
		return scram_server_fail(s, err, errlen, "malformed SCRAM client-first-message");

	/* gs2 header: cbind flag, then an (empty) authzid */
	static const char cb_type[] = "p=tls-server-end-point,";
	size_t flag_len = 2; /* "n," or "y," */
	if (len >= 1 && msg[0] == 'p') {
		if (!s->cb_selected)
			return scram_server_fail(
			        s, err, errlen,
			        "SCRAM channel binding is not supported by pgtenant "
			        "without SCRAM-SHA-256-PLUS");
		flag_len = sizeof(cb_type) - 1;
		if (len < flag_len || memcmp(msg, cb_type, flag_len) != 0)
			return scram_server_fail(s, err, errlen,
			                         "unsupported SCRAM channel-binding type");
	} else if (len < 3 || (msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',') {
		return scram_server_fail(s, err, errlen,
		                         "malformed SCRAM client-first-message: bad gs2 header");
	} else if (s->cb_selected) {
		return scram_server_fail(
		        s, err, errlen,
		        "SCRAM-SHA-256-PLUS was selected without channel binding data");
	} else if (msg[0] == 'y' && s->cb_offered) {
		/* the client can bind but believes we cannot: someone removed PLUS on the way */
		return scram_server_fail(s, err, errlen, "SCRAM channel binding negotiation error");
	}
	if (len <= flag_len || msg[flag_len] != ',')
		return scram_server_fail(s, err, errlen,
		                         "SCRAM authorization identity is not supported");
	s->gs2_flag = (char)msg[0];
	r.pos = flag_len + 1;
	size_t bare_start = r.pos;

	if (scram_reader_peek_attr(&r, 'm'))
		return scram_server_fail(s, err, errlen,
		                         "SCRAM mandatory extensions are not supported");
	/* PostgreSQL clients send "n=" empty: the user comes from the startup packet */
	if (!scram_reader_attr(&r, 'n', &v, &vl))
		return scram_server_fail(s, err, errlen,
		                         "malformed SCRAM client-first-message: expected n=");
	if (!scram_reader_attr(&r, 'r', &v, &vl) || !scram_valid_nonce(v, vl))
		return scram_server_fail(s, err, errlen,
		                         "malformed SCRAM client-first-message: bad nonce");
	const uint8_t *nonce = v;
	size_t nonce_len = vl;
	while (!scram_reader_at_end(&r))
		if (!scram_reader_skip_attr(&r))
			return scram_server_fail(s, err, errlen,
			                         "malformed SCRAM client-first-message");

	uint8_t raw[SCRAM_SERVER_NONCE_RAW];
	char ours[scram_b64_enclen(SCRAM_SERVER_NONCE_RAW) + 1];
	char salt64[scram_b64_enclen(SCRAM_MAX_SALT_LEN) + 1], iter[16];
	if (!scram_random(raw, sizeof(raw)))
		return scram_server_fail(s, err, errlen, "could not generate a SCRAM nonce");
	scram_b64_encode(raw, sizeof(raw), ours);
	scram_b64_encode(s->salt, (size_t)s->salt_len, salt64);
	snprintf(iter, sizeof(iter), "%d", s->iterations);

	s->client_first_bare = xstrndup((const char *)msg + bare_start, len - bare_start);
	s->client_nonce = xstrndup((const char *)nonce, nonce_len);
	s->server_nonce = scram_concat(s->client_nonce, ours, NULL, NULL, NULL);
	s->server_first = scram_concat("r=", s->server_nonce, ",s=", salt64, ",i=");
	char *full = scram_concat(s->server_first, iter, NULL, NULL, NULL);
	free(s->server_first);
	s->server_first = full;
	*out = xstrdup(full);
	s->step = SCRAM_STEP_FIRST_DONE;
	return true;
}

bool scram_server_final(ScramServer *s, const uint8_t *msg, size_t len, char **out, char *err,
                        size_t errlen)
{
	ScramReader r;
	const uint8_t *cb, *nonce, *proof64 = NULL;
	size_t cb_len, nonce_len, proof64_len = 0, without_proof_len = 0;

	*out = NULL;
	if (s->step != SCRAM_STEP_FIRST_DONE)
		return scram_server_fail(s, err, errlen, "unexpected SCRAM client-final-message");
	if (!scram_reader_init(&r, msg, len))
		return scram_server_fail(s, err, errlen, "malformed SCRAM client-final-message");
	if (!scram_reader_attr(&r, 'c', &cb, &cb_len))
		return scram_server_fail(s, err, errlen,
		                         "malformed SCRAM client-final-message: expected c=");
	if (!scram_reader_attr(&r, 'r', &nonce, &nonce_len))
		return scram_server_fail(s, err, errlen,
		                         "malformed SCRAM client-final-message: expected r=");
	/* extensions may come before the proof, which must be last */
	while (!scram_reader_at_end(&r)) {
		if (scram_reader_peek_attr(&r, 'p')) {
			without_proof_len = r.pos - 1; /* drop the ',' before "p=" */
			proof64 = r.p + r.pos + 2;
			proof64_len = r.len - r.pos - 2;
			break;
		}
		if (!scram_reader_skip_attr(&r))
			return scram_server_fail(s, err, errlen,
			                         "malformed SCRAM client-final-message");
	}
	if (!proof64)
		return scram_server_fail(s, err, errlen,
		                         "malformed SCRAM client-final-message: expected p=");

	/* c= is base64 of the gs2 header we saw ("n,,", "y,,"), or with 'p' of
	 * "p=tls-server-end-point,," followed by the certificate hash */
	static const char cb_hdr[] = "p=tls-server-end-point,,";
	uint8_t gs2[sizeof(cb_hdr) + sizeof(s->cb_data)];
	size_t gs2_len;
	if (s->gs2_flag == 'p') {
		memcpy(gs2, cb_hdr, sizeof(cb_hdr) - 1);
		memcpy(gs2 + sizeof(cb_hdr) - 1, s->cb_data, s->cb_len);
		gs2_len = sizeof(cb_hdr) - 1 + s->cb_len;
	} else {
		gs2[0] = (uint8_t)s->gs2_flag;
		gs2[1] = gs2[2] = ',';
		gs2_len = 3;
	}
	char gs2_64[scram_b64_enclen(sizeof(gs2)) + 1];
	scram_b64_encode(gs2, gs2_len, gs2_64);
	if (cb_len != strlen(gs2_64) || memcmp(cb, gs2_64, cb_len) != 0)
		return scram_server_fail(s, err, errlen, "SCRAM channel binding check failed");
	if (nonce_len != strlen(s->server_nonce) || memcmp(nonce, s->server_nonce, nonce_len) != 0)
		return scram_server_fail(s, err, errlen, "SCRAM nonce does not match");

	uint8_t proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	uint8_t check[SCRAM_KEY_LEN], server_sig[SCRAM_KEY_LEN];
	size_t got;
	if (!scram_b64_decode(proof64, proof64_len, proof, sizeof(proof), &got) ||
	    got != SCRAM_KEY_LEN)
		return scram_server_fail(s, err, errlen,
		                         "malformed SCRAM client-final-message: bad proof");

	char *without_proof = xstrndup((const char *)msg, without_proof_len);
	char *auth_message =
	        scram_concat(s->client_first_bare, ",", s->server_first, ",", without_proof);
	free(without_proof);

	bool ok = scram_hmac(s->stored_key, auth_message, strlen(auth_message), sig);
	for (int i = 0; ok && i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ sig[i];
	ok = ok && scram_sha256(client_key, SCRAM_KEY_LEN, check) &&
	     CRYPTO_memcmp(check, s->stored_key, SCRAM_KEY_LEN) == 0;
	ok = ok && scram_hmac(s->server_key, auth_message, strlen(auth_message), server_sig);
	free(auth_message);
	OPENSSL_cleanse(client_key, sizeof(client_key));
	if (!ok)
		return scram_server_fail(s, err, errlen, "SCRAM proof does not match the password");

	char *sig64 = scram_b64_encode_alloc(server_sig, SCRAM_KEY_LEN);
	*out = scram_concat("v=", sig64, NULL, NULL, NULL);
	free(sig64);
	s->step = SCRAM_STEP_VERIFIED;
	return true;
}

void scram_server_free(ScramServer *s)
{
	free(s->client_first_bare);
	free(s->server_first);
	free(s->client_nonce);
	free(s->server_nonce);
	OPENSSL_cleanse(s, sizeof(*s));
	s->step = SCRAM_STEP_FAILED;
}

/* ---- client side ---- */

static bool scram_client_fail(ScramClient *c, char *err, size_t errlen, const char *msg)
{
	c->step = SCRAM_STEP_FAILED;
	scram_set_err(err, errlen, msg);
	return false;
}

bool scram_client_first(ScramClient *c, char **out)
{
	uint8_t raw[SCRAM_CLIENT_NONCE_RAW];

	memset(c, 0, sizeof(*c));
	*out = NULL;
	c->step = SCRAM_STEP_FAILED;
	if (!scram_random(raw, sizeof(raw)))
		return false;
	c->client_nonce = scram_b64_encode_alloc(raw, sizeof(raw));
	/* PostgreSQL ignores the SCRAM user name; the startup packet already named the role */
	c->client_first_bare = scram_concat("n=,r=", c->client_nonce, NULL, NULL, NULL);
	*out = scram_concat("n,,", c->client_first_bare, NULL, NULL, NULL);
	c->step = SCRAM_STEP_FIRST_DONE;
	return true;
}

bool scram_client_final(ScramClient *c, const char *password, const uint8_t *server_first,
                        size_t len, char **out, char *err, size_t errlen)
{
	ScramReader r;
	const uint8_t *nonce, *salt64, *iter;
	size_t nonce_len, salt64_len, iter_len, salt_len;
	uint8_t salt[SCRAM_MAX_SERVER_SALT];
	int iterations;

	*out = NULL;
	if (c->step != SCRAM_STEP_FIRST_DONE)
		return scram_client_fail(c, err, errlen, "unexpected SCRAM server-first-message");
	if (!password)
		return scram_client_fail(c, err, errlen, "no password for SCRAM authentication");
	if (!scram_reader_init(&r, server_first, len))
		return scram_client_fail(c, err, errlen, "malformed SCRAM server-first-message");
	if (scram_reader_peek_attr(&r, 'm'))
		return scram_client_fail(c, err, errlen,
		                         "SCRAM mandatory extensions are not supported");
	if (!scram_reader_attr(&r, 'r', &nonce, &nonce_len) || !scram_valid_nonce(nonce, nonce_len))
		return scram_client_fail(c, err, errlen,
		                         "malformed SCRAM server-first-message: bad nonce");
	/* the server must extend our nonce, or it is replaying someone else's exchange */
	size_t ours = strlen(c->client_nonce);
	if (nonce_len <= ours || memcmp(nonce, c->client_nonce, ours) != 0)
		return scram_client_fail(c, err, errlen, "SCRAM server nonce does not extend ours");
	if (!scram_reader_attr(&r, 's', &salt64, &salt64_len) ||
	    !scram_b64_decode(salt64, salt64_len, salt, sizeof(salt), &salt_len) || salt_len == 0)
		return scram_client_fail(c, err, errlen,
		                         "malformed SCRAM server-first-message: bad salt");
	if (!scram_reader_attr(&r, 'i', &iter, &iter_len) ||
	    !scram_parse_iterations(iter, iter_len, &iterations))
		return scram_client_fail(
		        c, err, errlen,
		        "malformed SCRAM server-first-message: bad iteration count");
	while (!scram_reader_at_end(&r))
		if (!scram_reader_skip_attr(&r))
			return scram_client_fail(c, err, errlen,
			                         "malformed SCRAM server-first-message");

	if (!scram_salted_password(password, salt, salt_len, iterations, c->salted_password))
		return scram_client_fail(c, err, errlen, "SCRAM key derivation failed");

	char *nonce_str = xstrndup((const char *)nonce, nonce_len);
	char *without_proof = scram_concat("c=biws,r=", nonce_str, NULL, NULL, NULL);
	free(nonce_str);
	c->server_first = xstrndup((const char *)server_first, len);
	c->auth_message =
	        scram_concat(c->client_first_bare, ",", c->server_first, ",", without_proof);

	uint8_t client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN];
	uint8_t proof[SCRAM_KEY_LEN];
	bool ok = scram_hmac(c->salted_password, "Client Key", 10, client_key) &&
	          scram_sha256(client_key, SCRAM_KEY_LEN, stored) &&
	          scram_hmac(stored, c->auth_message, strlen(c->auth_message), sig);
	if (!ok) {
		OPENSSL_cleanse(client_key, sizeof(client_key));
		free(without_proof);
		return scram_client_fail(c, err, errlen, "SCRAM key derivation failed");
	}
	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = client_key[i] ^ sig[i];
	OPENSSL_cleanse(client_key, sizeof(client_key));
	char *proof64 = scram_b64_encode_alloc(proof, SCRAM_KEY_LEN);
	*out = scram_concat(without_proof, ",p=", proof64, NULL, NULL);
	free(proof64);
	free(without_proof);
	c->step = SCRAM_STEP_FINAL_DONE;
	return true;
}

bool scram_client_verify(ScramClient *c, const uint8_t *server_final, size_t len, char *err,
                         size_t errlen)
{
	ScramReader r;
	const uint8_t *v;
	size_t vl, got;

	if (c->step != SCRAM_STEP_FINAL_DONE)
		return scram_client_fail(c, err, errlen, "unexpected SCRAM server-final-message");
	if (!scram_reader_init(&r, server_final, len))
		return scram_client_fail(c, err, errlen, "malformed SCRAM server-final-message");
	if (scram_reader_attr(&r, 'e', &v, &vl)) {
		/* the server's reason is untrusted text: keep only printable ASCII */
		char msg[128];
		int n = snprintf(msg, sizeof(msg), "SCRAM server error: ");
		for (size_t i = 0; i < vl && (size_t)n + 1 < sizeof(msg); i++)
			msg[n++] = (v[i] >= 0x20 && v[i] < 0x7f) ? (char)v[i] : '?';
		msg[n] = '\0';
		return scram_client_fail(c, err, errlen, msg);
	}
	uint8_t sig[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN], expected[SCRAM_KEY_LEN];
	if (!scram_reader_attr(&r, 'v', &v, &vl) ||
	    !scram_b64_decode(v, vl, sig, sizeof(sig), &got) || got != SCRAM_KEY_LEN)
		return scram_client_fail(c, err, errlen,
		                         "malformed SCRAM server-final-message: bad verifier");
	while (!scram_reader_at_end(&r))
		if (!scram_reader_skip_attr(&r))
			return scram_client_fail(c, err, errlen,
			                         "malformed SCRAM server-final-message");
	bool ok = scram_hmac(c->salted_password, "Server Key", 10, server_key) &&
	          scram_hmac(server_key, c->auth_message, strlen(c->auth_message), expected) &&
	          CRYPTO_memcmp(sig, expected, SCRAM_KEY_LEN) == 0;
	OPENSSL_cleanse(server_key, sizeof(server_key));
	if (!ok)
		return scram_client_fail(c, err, errlen, "SCRAM server signature is invalid");
	c->step = SCRAM_STEP_VERIFIED;
	return true;
}

void scram_client_free(ScramClient *c)
{
	free(c->client_nonce);
	free(c->client_first_bare);
	free(c->server_first);
	free(c->auth_message);
	OPENSSL_cleanse(c, sizeof(*c));
	c->step = SCRAM_STEP_FAILED;
}
