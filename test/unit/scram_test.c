/*
 * scram unit tests: verifiers against PostgreSQL 15's own output, the
 * RFC 7677 example exchange on both sides, in-memory round trips, and
 * malformed or truncated messages (each fed from an exact-size heap copy so
 * valgrind sees any read past the end).
 */
#include "scram.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

/* Verifiers read from pg_authid of a PostgreSQL 15 (password_encryption = scram-sha-256). */
static const struct {
	const char *password;
	uint8_t salt[16];
	const char *verifier;
} pg_verifiers[] = {
        {"secret",
         {0xf9, 0x46, 0x6c, 0x18, 0xa6, 0xbd, 0xc6, 0xe7, 0xd0, 0xa9, 0xe7, 0xe1, 0x69, 0xff, 0xd1,
          0xd3},
         "SCRAM-SHA-256$4096:+UZsGKa9xufQqefhaf/R0w==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg=:"
         "QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0="},
        {"p\xc3\xa4ssw\xc3\xb6rd with spaces",
         {0xaf, 0xdf, 0xb3, 0x08, 0x07, 0x9a, 0xe1, 0x17, 0x98, 0xda, 0x24, 0x59, 0xea, 0xa8, 0xe7,
          0x86},
         "SCRAM-SHA-256$4096:r9+zCAea4ReY2iRZ6qjnhg==$C4uzIkhbUkxNFVNL3hfFjPWB4iGWEb6mCiWIUsmy7Lw=:"
         "kkkWTiT86pkF1ri1hqOvtLPLrmscoroPbtd9ONK4Xe0="},
};

/* RFC 7677 section 3: user "user", password "pencil". */
#define RFC_CLIENT_NONCE      "rOprNGfwEbeRWgbNEkqO"
#define RFC_CLIENT_FIRST_BARE "n=user,r=" RFC_CLIENT_NONCE
#define RFC_FULL_NONCE        RFC_CLIENT_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SERVER_FIRST      "r=" RFC_FULL_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CLIENT_FINAL                                                                           \
	"c=biws,r=" RFC_FULL_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
static const uint8_t rfc_salt[16] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
                                     0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};

/* An exact-size heap copy: reading one byte past len is a valgrind error. */
static uint8_t *dup_bytes(const void *p, size_t len)
{
	uint8_t *d = malloc(len ? len : 1);
	memcpy(d, p, len);
	return d;
}

static bool server_first_str(ScramServer *s, const char *msg, size_t len, char **out, char *err)
{
	uint8_t *m = dup_bytes(msg, len);
	bool ok = scram_server_first(s, m, len, out, err, 256);
	free(m);
	return ok;
}

static bool server_final_str(ScramServer *s, const char *msg, size_t len, char **out, char *err)
{
	uint8_t *m = dup_bytes(msg, len);
	bool ok = scram_server_final(s, m, len, out, err, 256);
	free(m);
	return ok;
}

static bool client_final_str(ScramClient *c, const char *pw, const char *msg, size_t len,
                             char **out, char *err)
{
	uint8_t *m = dup_bytes(msg, len);
	bool ok = scram_client_final(c, pw, m, len, out, err, 256);
	free(m);
	return ok;
}

static bool client_verify_str(ScramClient *c, const char *msg, size_t len, char *err)
{
	uint8_t *m = dup_bytes(msg, len);
	bool ok = scram_client_verify(c, m, len, err, 256);
	free(m);
	return ok;
}

/* A whole exchange in memory; err says which step failed. */
static bool run_exchange(const char *secret, const char *password, char *err)
{
	ScramServer s;
	ScramClient c;
	char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
	bool ok = false;

	err[0] = '\0';
	if (!scram_server_init(&s, secret, "u")) {
		strcpy(err, "server_init");
		return false;
	}
	if (scram_client_first(&c, &m1) && server_first_str(&s, m1, strlen(m1), &m2, err) &&
	    client_final_str(&c, password, m2, strlen(m2), &m3, err) &&
	    server_final_str(&s, m3, strlen(m3), &m4, err) &&
	    client_verify_str(&c, m4, strlen(m4), err))
		ok = true;
	free(m1);
	free(m2);
	free(m3);
	free(m4);
	scram_server_free(&s);
	scram_client_free(&c);
	return ok;
}

static void test_build_verifier_matches_postgresql(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(pg_verifiers); i++) {
		char *v = scram_build_verifier(pg_verifiers[i].password, pg_verifiers[i].salt, 16,
		                               4096);
		CHECK_STREQ(v, pg_verifiers[i].verifier);
		free(v);
	}
	CHECK(scram_build_verifier("x", rfc_salt, 0, 4096) == NULL);
	CHECK(scram_build_verifier("x", rfc_salt, 16, 0) == NULL);
	CHECK(scram_build_verifier("x", rfc_salt, SCRAM_MAX_SALT_LEN + 1, 4096) == NULL);
}

static void test_verify_password_against_postgresql_verifiers(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(pg_verifiers); i++) {
		CHECK(scram_verify_password(pg_verifiers[i].verifier, pg_verifiers[i].password));
		CHECK(!scram_verify_password(pg_verifiers[i].verifier, "wrong"));
		CHECK(!scram_verify_password(pg_verifiers[i].verifier, ""));
	}
	CHECK(!scram_verify_password("secret", "secret"));
}

static void test_parse_verifier_accepts_only_well_formed(void)
{
	static const struct {
		const char *secret;
		bool ok;
	} cases[] = {
	        {"SCRAM-SHA-256$4096:+UZsGKa9xufQqefhaf/"
	         "R0w==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         true},
	        /* one-byte salt: padding "==" */
	        {"SCRAM-SHA-256$1:AA==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         true},
	        {"SCRAM-SHA-1$4096:AA==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         false},
	        {"SCRAM-SHA-256$0:AA==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         false},
	        {"SCRAM-SHA-256$-1:AA==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         false},
	        {"SCRAM-SHA-256$99999999999:AA==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         false},
	        {"SCRAM-SHA-256$4x:AA==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         false},
	        /* empty salt */
	        {"SCRAM-SHA-256$4096:$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         false},
	        /* salt length not a multiple of 4, '=' in the middle */
	        {"SCRAM-SHA-256$4096:AAA$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         false},
	        {"SCRAM-SHA-256$4096:A=AA$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         false},
	        {"SCRAM-SHA-256$4096:A===$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         false},
	        /* StoredKey of 16 bytes */
	        {"SCRAM-SHA-256$4096:AA==$+UZsGKa9xufQqefhaf/"
	         "R0w==:QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=",
	         false},
	        /* ServerKey missing, truncated, with trailing junk */
	        {"SCRAM-SHA-256$4096:AA==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg=", false},
	        {"SCRAM-SHA-256$4096:AA==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg=:", false},
	        {"SCRAM-SHA-256$4096:AA==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg="
	         ":QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0=x",
	         false},
	        {"SCRAM-SHA-256$", false},
	        {"SCRAM-SHA-256$4096", false},
	        {"", false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int iter = 0, salt_len = 0;
		uint8_t salt[SCRAM_MAX_SALT_LEN], stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
		bool ok = scram_parse_verifier(cases[i].secret, &iter, salt, &salt_len, stored,
		                               server);
		CHECK_MSG(ok == cases[i].ok, "case %zu: %s", i, cases[i].secret);
	}
	int iter = 0, salt_len = 0;
	uint8_t salt[SCRAM_MAX_SALT_LEN], stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	CHECK(scram_parse_verifier(pg_verifiers[0].verifier, &iter, salt, &salt_len, stored,
	                           server));
	CHECK(iter == 4096 && salt_len == 16 && memcmp(salt, pg_verifiers[0].salt, 16) == 0);
}

static void test_round_trip_accepts_right_password_only(void)
{
	char *rfc_verifier = scram_build_verifier("pencil", rfc_salt, 16, 4096);
	const struct {
		const char *secret;
		const char *password;
		bool ok;
	} cases[] = {
	        {"secret", "secret", true},
	        {"secret", "Secret", false},
	        {"secret", "secret ", false},
	        {"p\xc3\xa4ssw\xc3\xb6rd with spaces", "p\xc3\xa4ssw\xc3\xb6rd with spaces", true},
	        {pg_verifiers[0].verifier, "secret", true},
	        {pg_verifiers[0].verifier, "wrong", false},
	        {pg_verifiers[1].verifier, pg_verifiers[1].password, true},
	        {rfc_verifier, "pencil", true},
	        {rfc_verifier, "", false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char err[256];
		bool ok = run_exchange(cases[i].secret, cases[i].password, err);
		CHECK_MSG(ok == cases[i].ok, "case %zu: %s", i, err);
		if (!cases[i].ok)
			CHECK_MSG(strstr(err, "proof") != NULL, "case %zu: %s", i, err);
	}
	free(rfc_verifier);
}

/* Plain-text secrets: one salt per user (its PBKDF2 result is then cached), never
 * one per password, so two users sharing a password cannot be told apart by it. */
static void test_plain_text_salt_is_stable_per_user_not_per_password(void)
{
	ScramServer a, b, c;
	CHECK(scram_server_init(&a, "secret", "alice"));
	CHECK(scram_server_init(&b, "secret", "alice"));
	CHECK(scram_server_init(&c, "secret", "bob"));
	CHECK(a.salt_len == 16 && b.salt_len == 16 && c.salt_len == 16);
	CHECK(memcmp(a.salt, b.salt, 16) == 0);
	CHECK(memcmp(a.stored_key, b.stored_key, SCRAM_KEY_LEN) == 0);
	CHECK(memcmp(a.salt, c.salt, 16) != 0);
	CHECK(memcmp(a.stored_key, c.stored_key, SCRAM_KEY_LEN) != 0);
	scram_server_free(&a);
	scram_server_free(&b);
	scram_server_free(&c);
	/* the cached result is the right one: a login goes through twice, a wrong password not */
	for (int i = 0; i < 2; i++) {
		char err[256];
		CHECK_MSG(run_exchange("cached secret", "cached secret", err), "round %d: %s", i,
		          err);
		CHECK(!run_exchange("cached secret", "cached secreT", err));
	}
}

static void test_fake_secret_is_stable_per_user(void)
{
	char x[65], y[65], z[65];
	scram_fake_secret("nobody", x);
	scram_fake_secret("nobody", y);
	scram_fake_secret("somebody", z);
	CHECK(strlen(x) == 64 && strspn(x, "0123456789abcdef") == 64);
	CHECK(strcmp(x, y) == 0);
	CHECK(strcmp(x, z) != 0);
}

static void test_server_init_refuses_unusable_secrets(void)
{
	static const char *bad[] = {
	        "md5132ecbcbfa11be529b63ea4c4e734056",
	        "",
	        NULL,
	        "SCRAM-SHA-256$4096:AA==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg=",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		ScramServer s;
		CHECK_MSG(!scram_server_init(&s, bad[i], "u"), "case %zu", i);
		scram_server_free(&s);
	}
	/* "md5" + 31 hex is a plain password, as in PostgreSQL */
	ScramServer s;
	CHECK(scram_server_init(&s, "md5132ecbcbfa11be529b63ea4c4e73405", "u"));
	CHECK(s.iterations == SCRAM_DEFAULT_ITERATIONS && s.salt_len == 16);
	scram_server_free(&s);
}

/* Server side of RFC 7677's example, with our random nonce replaced by the RFC's. */
static void test_server_reproduces_rfc7677_example(void)
{
	char *verifier = scram_build_verifier("pencil", rfc_salt, 16, 4096);
	ScramServer s;
	char *out = NULL, err[256];

	CHECK(scram_server_init(&s, verifier, "u"));
	CHECK(server_first_str(&s, "n,," RFC_CLIENT_FIRST_BARE, strlen("n,," RFC_CLIENT_FIRST_BARE),
	                       &out, err));
	CHECK(out && strncmp(out, "r=" RFC_CLIENT_NONCE, strlen("r=" RFC_CLIENT_NONCE)) == 0);
	CHECK(out && strlen(out) == strlen(RFC_SERVER_FIRST) -
	                                    strlen("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0") + 24);
	free(out);
	free(s.server_nonce);
	free(s.server_first);
	s.server_nonce = strdup(RFC_FULL_NONCE);
	s.server_first = strdup(RFC_SERVER_FIRST);
	CHECK(server_final_str(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out, err));
	CHECK_STREQ(out, RFC_SERVER_FINAL);
	free(out);
	scram_server_free(&s);
	free(verifier);
}

/* Client side of RFC 7677's example, with our nonce and empty n= replaced by the RFC's. */
static void test_client_reproduces_rfc7677_example(void)
{
	ScramClient c;
	char *out = NULL, err[256];

	CHECK(scram_client_first(&c, &out));
	CHECK(out && strncmp(out, "n,,n=,r=", 8) == 0 && strlen(out) == 8 + 32);
	free(out);
	free(c.client_nonce);
	free(c.client_first_bare);
	c.client_nonce = strdup(RFC_CLIENT_NONCE);
	c.client_first_bare = strdup(RFC_CLIENT_FIRST_BARE);
	CHECK(client_final_str(&c, "pencil", RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &out,
	                       err));
	CHECK_STREQ(out, RFC_CLIENT_FINAL);
	free(out);
	CHECK(client_verify_str(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), err));
	scram_client_free(&c);

	/* a server that does not know the password cannot forge the final signature */
	CHECK(scram_client_first(&c, &out));
	free(out);
	free(c.client_nonce);
	free(c.client_first_bare);
	c.client_nonce = strdup(RFC_CLIENT_NONCE);
	c.client_first_bare = strdup(RFC_CLIENT_FIRST_BARE);
	CHECK(client_final_str(&c, "pencil2", RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &out,
	                       err));
	free(out);
	CHECK(!client_verify_str(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), err));
	CHECK(strstr(err, "signature") != NULL);
	scram_client_free(&c);
}

static void test_server_first_rejects_malformed(void)
{
	static const struct {
		const char *msg;
		size_t len;      /* 0: strlen */
		const char *err; /* NULL: accepted */
	} cases[] = {
	        {"n,,n=,r=abc", 0, NULL},
	        {"y,,n=,r=abc", 0, NULL},
	        {"n,,n=someone,r=abc,x=ext", 0, NULL},
	        {"p=tls-server-end-point,,n=,r=abc", 0, "channel binding"},
	        {"n,a=bob,n=,r=abc", 0, "authorization identity"},
	        {"n,,m=ext,n=,r=abc", 0, "mandatory extensions"},
	        {"", 0, "malformed"},
	        {"n", 0, "gs2 header"},
	        {"n,", 0, "malformed"},
	        {"x,,n=,r=abc", 0, "gs2 header"},
	        {"n,,", 0, "malformed"},
	        {"n,,r=abc", 0, "expected n="},
	        {"n,,n=", 0, "nonce"},
	        {"n,,n=,", 0, "malformed"},
	        {"n,,n=,r=", 0, "nonce"},
	        {"n,,n=,r=ab\x01", 0, "nonce"},
	        {"n,,n=,r=ab \x7f", 0, "nonce"},
	        {"n,,n=,r=abc,", 0, "malformed"},
	        {"n,,n=,r=abc,junk", 0, "malformed"},
	        {"n,,n=,r=a\0bc", 11, "malformed"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		ScramServer s;
		char *out = NULL, err[256] = "";
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].msg);
		CHECK(scram_server_init(&s, "secret", "u"));
		bool ok = server_first_str(&s, cases[i].msg, len, &out, err);
		if (!cases[i].err) {
			CHECK_MSG(ok && out, "case %zu: %s", i, err);
		} else {
			CHECK_MSG(!ok && !out && strstr(err, cases[i].err), "case %zu: got '%s'", i,
			          err);
		}
		free(out);
		scram_server_free(&s);
	}

	/* oversized messages are refused before anything is copied */
	size_t big = 100000;
	char *msg = malloc(big);
	memset(msg, 'a', big);
	memcpy(msg, "n,,n=,r=", 8);
	ScramServer s;
	char *out = NULL, err[256];
	CHECK(scram_server_init(&s, "secret", "u"));
	CHECK(!server_first_str(&s, msg, big, &out, err) && out == NULL);
	scram_server_free(&s);
	free(msg);
}

/* Runs a server through client-first; returns the full nonce in nonce. */
static void server_at_final(ScramServer *s, char gs2, char *nonce, size_t nsize)
{
	char first[64], *out = NULL, err[256];
	snprintf(first, sizeof(first), "%c,,n=,r=clientnonce", gs2);
	CHECK(scram_server_init(s, "secret", "u"));
	CHECK(server_first_str(s, first, strlen(first), &out, err));
	snprintf(nonce, nsize, "%s", s->server_nonce);
	free(out);
}

static void test_server_final_rejects_malformed(void)
{
	static const struct {
		char gs2;
		const char *fmt; /* %s = the full nonce */
		const char *err;
	} cases[] = {
	        {'n', "c=biws,r=%s", "expected p="},
	        {'n', "c=biws,r=%s,", "malformed"},
	        {'n', "c=biws,r=%s,p=", "bad proof"},
	        {'n', "c=biws,r=%s,p=AAAA", "bad proof"},
	        {'n', "c=biws,r=%s,p=not base64 at all!!", "bad proof"},
	        {'n', "c=biws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=y",
	         "bad proof"},
	        {'n', "c=biws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	         "proof does not match"},
	        {'n', "c=biws,r=%s,x=ext,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	         "proof does not match"},
	        {'n',
	         "c=eSws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "channel binding"},
	        {'y',
	         "c=biws,r=%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "channel binding"},
	        {'n', "c=biws,r=%sX,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "nonce"},
	        {'n',
	         "c=biws,r=clientnonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "nonce"},
	        {'n', "r=%s,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "expected c="},
	        {'n', "c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "expected r="},
	        {'n', "", "malformed"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		ScramServer s;
		char nonce[128], msg[512], *out = NULL, err[256] = "";
		server_at_final(&s, cases[i].gs2, nonce, sizeof(nonce));
		snprintf(msg, sizeof(msg), cases[i].fmt, nonce);
		CHECK_MSG(!server_final_str(&s, msg, strlen(msg), &out, err) && !out &&
		                  strstr(err, cases[i].err),
		          "case %zu: got '%s'", i, err);
		/* a failed exchange is dead: no second attempt on the same state */
		CHECK(!server_final_str(&s, msg, strlen(msg), &out, err) && !out);
		scram_server_free(&s);
	}

	ScramServer s;
	char *out = NULL, err[256];
	CHECK(scram_server_init(&s, "secret", "u"));
	CHECK(!server_final_str(&s, "c=biws,r=x,p=AAAA", 17, &out, err));
	CHECK(strstr(err, "unexpected") != NULL);
	scram_server_free(&s);
}

static void test_client_final_rejects_malformed_server_first(void)
{
	static const struct {
		const char *fmt; /* %s = our client nonce */
		const char *err;
	} cases[] = {
	        {"r=%sXYZ,s=QSXCR+Q6sek8bf92,i=4096", NULL},
	        {"r=%sXYZ,s=QSXCR+Q6sek8bf92,i=4096,x=ext", NULL},
	        {"r=%s,s=QSXCR+Q6sek8bf92,i=4096", "does not extend"},
	        {"r=otherXYZ,s=QSXCR+Q6sek8bf92,i=4096", "does not extend"},
	        {"r=%sXYZ,s=QSXCR+Q6sek8bf92,i=0", "iteration"},
	        {"r=%sXYZ,s=QSXCR+Q6sek8bf92,i=10000001", "iteration"},
	        {"r=%sXYZ,s=QSXCR+Q6sek8bf92,i=-5", "iteration"},
	        {"r=%sXYZ,s=QSXCR+Q6sek8bf92,i=", "iteration"},
	        {"r=%sXYZ,s=QSXCR+Q6sek8bf92,i=40x", "iteration"},
	        {"r=%sXYZ,s=QSXCR+Q6sek8bf92", "iteration"},
	        {"r=%sXYZ,s=,i=4096", "salt"},
	        {"r=%sXYZ,s=QSX,i=4096", "salt"},
	        {"r=%sXYZ,i=4096", "salt"},
	        {"r=%sXYZ,s=QSXCR+Q6sek8bf92,i=4096,", "malformed"},
	        {"m=ext,r=%sXYZ,s=QSXCR+Q6sek8bf92,i=4096", "mandatory"},
	        {"e=other-error", "nonce"},
	        {"", "malformed"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		ScramClient c;
		char *first = NULL, *out = NULL, msg[512], err[256] = "";
		CHECK(scram_client_first(&c, &first));
		free(first);
		snprintf(msg, sizeof(msg), cases[i].fmt, c.client_nonce);
		bool ok = client_final_str(&c, "pw", msg, strlen(msg), &out, err);
		if (!cases[i].err)
			CHECK_MSG(ok && out && strncmp(out, "c=biws,r=", 9) == 0, "case %zu: %s", i,
			          err);
		else
			CHECK_MSG(!ok && !out && strstr(err, cases[i].err), "case %zu: got '%s'", i,
			          err);
		free(out);
		scram_client_free(&c);
	}
}

static void test_client_verify_reports_server_errors(void)
{
	static const struct {
		const char *msg;
		const char *err;
	} cases[] = {
	        {"e=invalid-proof", "SCRAM server error: invalid-proof"},
	        {"e=bad\x01"
	         "char",
	         "SCRAM server error: bad?char"},
	        {"v=", "bad verifier"},
	        {"v=AAAA", "bad verifier"},
	        {"v=6rriTRBi23WpRR/wtup+mMhUZUn/dOYJ4Te7n3f8QZM", "bad verifier"},
	        {"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", "signature is invalid"},
	        {"x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", "bad verifier"},
	        {"", "malformed"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		ScramClient c;
		char *first = NULL, *out = NULL, msg[256], err[256] = "";
		CHECK(scram_client_first(&c, &first));
		free(first);
		snprintf(msg, sizeof(msg), "r=%sXYZ,s=QSXCR+Q6sek8bf92,i=1", c.client_nonce);
		CHECK(client_final_str(&c, "pw", msg, strlen(msg), &out, err));
		free(out);
		CHECK_MSG(!client_verify_str(&c, cases[i].msg, strlen(cases[i].msg), err) &&
		                  strstr(err, cases[i].err),
		          "case %zu: got '%s'", i, err);
		scram_client_free(&c);
	}
	/* verify before final is a protocol error */
	ScramClient c;
	char *first = NULL, err[256];
	CHECK(scram_client_first(&c, &first));
	free(first);
	CHECK(!client_verify_str(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), err));
	scram_client_free(&c);
}

/* Every prefix of every valid message must be handled without reading past it. */
static void test_truncated_messages_never_crash(void)
{
	ScramServer s;
	ScramClient c;
	char *m1, *m2, *m3, *m4, err[256];

	CHECK(scram_server_init(&s, "secret", "u"));
	CHECK(scram_client_first(&c, &m1));
	CHECK(server_first_str(&s, m1, strlen(m1), &m2, err));
	CHECK(client_final_str(&c, "secret", m2, strlen(m2), &m3, err));
	CHECK(server_final_str(&s, m3, strlen(m3), &m4, err));

	int accepted = 0;
	for (size_t n = 0; n < strlen(m1); n++) {
		ScramServer t;
		char *out = NULL;
		CHECK(scram_server_init(&t, "secret", "u"));
		accepted += server_first_str(&t, m1, n, &out, err);
		free(out);
		scram_server_free(&t);
	}
	/* prefixes from "n,,n=,r=X" (9 bytes) on are valid messages with a shorter nonce */
	CHECK(accepted == (int)strlen(m1) - 9);
	for (size_t n = 0; n < strlen(m3); n++) {
		ScramServer t;
		char *out = NULL, nonce[128];
		server_at_final(&t, 'n', nonce, sizeof(nonce));
		CHECK(!server_final_str(&t, m3, n, &out, err) && !out);
		scram_server_free(&t);
	}
	for (size_t n = 0; n < strlen(m2); n++) {
		ScramClient d;
		char *first = NULL, *out = NULL;
		CHECK(scram_client_first(&d, &first));
		free(first);
		CHECK(!client_final_str(&d, "secret", m2, n, &out, err) && !out);
		scram_client_free(&d);
	}
	for (size_t n = 0; n < strlen(m4); n++) {
		ScramClient d = c;
		/* a copy of the client state: verify only reads it */
		d.step = c.step;
		CHECK(!client_verify_str(&d, m4, n, err));
	}
	CHECK(client_verify_str(&c, m4, strlen(m4), err));
	free(m1);
	free(m2);
	free(m3);
	free(m4);
	scram_server_free(&s);
	scram_client_free(&c);
}

int main(void)
{
	test_build_verifier_matches_postgresql();
	test_verify_password_against_postgresql_verifiers();
	test_parse_verifier_accepts_only_well_formed();
	test_round_trip_accepts_right_password_only();
	test_server_init_refuses_unusable_secrets();
	test_plain_text_salt_is_stable_per_user_not_per_password();
	test_fake_secret_is_stable_per_user();
	test_server_reproduces_rfc7677_example();
	test_client_reproduces_rfc7677_example();
	test_server_first_rejects_malformed();
	test_server_final_rejects_malformed();
	test_client_final_rejects_malformed_server_first();
	test_client_verify_reports_server_errors();
	test_truncated_messages_never_crash();
	return unit_finish("scram");
}
