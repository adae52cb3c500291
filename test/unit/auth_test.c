/*
 * auth unit tests: auth_file parsing (quotes, comments, errors with line
 * numbers, overrides, 100k users), MD5 known answers (checked with md5sum
 * and against PostgreSQL 15's pg_authid), and password checks for every
 * kind of secret.
 */
#include "auth.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* From pg_authid of a PostgreSQL 15: role app / password "secret" (scram) and m1 / "secret" (md5).
 */
#define PG_SCRAM_SECRET                                                                            \
	"SCRAM-SHA-256$4096:+UZsGKa9xufQqefhaf/"                                                   \
	"R0w==$jv3u+ED2fb34BbMGfYHpNdljZOC5rlV6CYuC4SXWEfg=:"                                      \
	"QJEao0tTkZ1s1fblZOB+hCjLon6K4QgGadSeN6UqIf0="
#define PG_MD5_SECRET "md5132ecbcbfa11be529b63ea4c4e734056"

/* Writes content to a fresh temporary file; the caller unlinks and frees the path. */
static char *write_temp(const char *content, size_t len)
{
	char *path = strdup("/tmp/auth_test.XXXXXX");
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return path;
	CHECK(write(fd, content, len) == (ssize_t)len);
	close(fd);
	return path;
}

static void test_md5_password_hash_known_answers(void)
{
	static const struct {
		const char *password, *user, *hash;
	} cases[] = {
	        /* echo -n secretapp | md5sum */
	        {"secret", "app", "md56a422f785c9e20873908ce25d1736ae2"},
	        /* what PostgreSQL stored for CREATE ROLE m1 PASSWORD 'secret' */
	        {"secret", "m1", PG_MD5_SECRET},
	        /* echo -n 'a"bapp.acme' | md5sum */
	        {"a\"b", "app.acme", "md5027f1e61d36d345a39e3f0cad7aea243"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char out[36];
		auth_md5_password_hash(cases[i].password, cases[i].user, out);
		CHECK_MSG(strcmp(out, cases[i].hash) == 0, "case %zu: %s", i, out);
	}
}

static void test_md5_response_known_answers(void)
{
	static const struct {
		const char *secret, *user;
		uint8_t salt[4];
		const char *response; /* NULL: no md5 answer possible */
	} cases[] = {
	        /* printf '6a422f785c9e20873908ce25d1736ae2\x01\x02\x03\x04' | md5sum */
	        {"secret", "app", {1, 2, 3, 4}, "md5911f527656472583a006e7727877b33e"},
	        {"md56a422f785c9e20873908ce25d1736ae2",
	         "app",
	         {1, 2, 3, 4},
	         "md5911f527656472583a006e7727877b33e"},
	        /* a stored hash in upper case answers as clients compute it: lower case */
	        {"md56A422F785C9E20873908CE25D1736AE2",
	         "app",
	         {1, 2, 3, 4},
	         "md5911f527656472583a006e7727877b33e"},
	        /* printf '132ecbcbfa11be529b63ea4c4e734056\xde\xad\xbe\xef' | md5sum */
	        {PG_MD5_SECRET,
	         "m1",
	         {0xde, 0xad, 0xbe, 0xef},
	         "md50e9ab5bcaeeef8a403750eac1d1a267c"},
	        {"secret", "m1", {0xde, 0xad, 0xbe, 0xef}, "md50e9ab5bcaeeef8a403750eac1d1a267c"},
	        {PG_SCRAM_SECRET, "app", {1, 2, 3, 4}, NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char out[36];
		bool ok = auth_md5_response(cases[i].secret, cases[i].user, cases[i].salt, out);
		if (cases[i].response)
			CHECK_MSG(ok && strcmp(out, cases[i].response) == 0, "case %zu: %s", i,
			          out);
		else
			CHECK_MSG(!ok, "case %zu", i);
	}
}

static void test_md5_verify_accepts_only_the_right_answer(void)
{
	static const uint8_t salt[4] = {1, 2, 3, 4}, other[4] = {1, 2, 3, 5};
	static const struct {
		const char *secret, *user;
		const uint8_t *salt;
		const char *response;
		bool ok;
	} cases[] = {
	        {"secret", "app", salt, "md5911f527656472583a006e7727877b33e", true},
	        {"md56a422f785c9e20873908ce25d1736ae2", "app", salt,
	         "md5911f527656472583a006e7727877b33e", true},
	        {"secret", "app", other, "md5911f527656472583a006e7727877b33e", false},
	        {"secret", "app2", salt, "md5911f527656472583a006e7727877b33e", false},
	        {"Secret", "app", salt, "md5911f527656472583a006e7727877b33e", false},
	        {"secret", "app", salt, "md5911f527656472583a006e7727877b33", false},
	        {"secret", "app", salt, "md5911f527656472583a006e7727877b33e0", false},
	        {"secret", "app", salt, "MD5911F527656472583A006E7727877B33E", false},
	        {"secret", "app", salt, "", false},
	        {"", "app", salt, "md5911f527656472583a006e7727877b33e", false},
	        {PG_SCRAM_SECRET, "app", salt, "md5911f527656472583a006e7727877b33e", false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		CHECK_MSG(auth_md5_verify(cases[i].secret, cases[i].user, cases[i].salt,
		                          cases[i].response) == cases[i].ok,
		          "case %zu", i);
	CHECK(!auth_md5_verify("secret", "app", salt, NULL));
}

static void test_plain_verify_handles_every_secret_kind(void)
{
	static const struct {
		const char *secret, *user, *password;
		bool ok;
	} cases[] = {
	        {"secret", "app", "secret", true},
	        {"secret", "app", "secret2", false},
	        {"secret", "app", "secre", false},
	        {"secret", "app", "", false},
	        {"", "app", "", false},
	        {PG_MD5_SECRET, "m1", "secret", true},
	        {PG_MD5_SECRET, "m1", "wrong", false},
	        /* md5 salts with the user name: right password, wrong user */
	        {PG_MD5_SECRET, "app", "secret", false},
	        {PG_SCRAM_SECRET, "app", "secret", true},
	        {PG_SCRAM_SECRET, "anyone", "secret", true},
	        {PG_SCRAM_SECRET, "app", "Secret", false},
	        {PG_SCRAM_SECRET, "app", PG_SCRAM_SECRET, false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		CHECK_MSG(auth_plain_verify(cases[i].secret, cases[i].user, cases[i].password) ==
		                  cases[i].ok,
		          "case %zu", i);
}

static void test_secret_kind_follows_postgresql_rules(void)
{
	static const struct {
		const char *secret;
		SecretKind kind;
	} cases[] = {
	        {"secret", SECRET_PLAIN},
	        {"", SECRET_PLAIN},
	        {PG_MD5_SECRET, SECRET_MD5},
	        {"md5132ECBCBFA11BE529B63EA4C4E734056", SECRET_MD5},
	        {"md5132ecbcbfa11be529b63ea4c4e73405", SECRET_PLAIN},
	        {"md5132ecbcbfa11be529b63ea4c4e7340567", SECRET_PLAIN},
	        {"md5132ecbcbfa11be529b63ea4c4e73405g", SECRET_PLAIN},
	        {PG_SCRAM_SECRET, SECRET_SCRAM},
	        {"SCRAM-SHA-256$4096:abc", SECRET_PLAIN},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		CHECK_MSG(auth_secret_kind(cases[i].secret) == cases[i].kind, "case %zu", i);
}

static void test_authfile_parses_quotes_comments_and_overrides(void)
{
	static const char content[] = "; PgBouncer-style comment\n"
	                              "# another comment\n"
	                              "\n"
	                              "   \t\n"
	                              "\"app\" \"secret\"\n"
	                              "\"app.acme\"\t\"a\"\"b\"\n"
	                              "  \"with space\"   \"pass word\"  \n"
	                              "\"q\"\"\" \"\"\"\"\r\n"
	                              "\"empty\" \"\"\n"
	                              "\"m1\" \"" PG_MD5_SECRET "\"\n"
	                              "\"s\" \"" PG_SCRAM_SECRET "\"\n"
	                              "\"extra\" \"pw\" \"ignored field\"\n"
	                              "\"dup\" \"first\"\n"
	                              "\"dup\" \"second\"\n"
	                              "\"last\" \"no newline\"";
	static const struct {
		const char *user, *secret;
	} expect[] = {
	        {"app", "secret"},      {"app.acme", "a\"b"}, {"with space", "pass word"},
	        {"q\"", "\""},          {"empty", ""},        {"m1", PG_MD5_SECRET},
	        {"s", PG_SCRAM_SECRET}, {"extra", "pw"},      {"dup", "second"},
	        {"last", "no newline"},
	};
	char err[512] = "";
	char *path = write_temp(content, strlen(content));
	AuthFile *af = authfile_load(path, err, sizeof(err));
	CHECK_MSG(af != NULL, "%s", err);
	if (af) {
		for (size_t i = 0; i < ARRAY_SIZE(expect); i++)
			CHECK_STREQ(authfile_lookup(af, expect[i].user), expect[i].secret);
		CHECK(authfile_count(af) == (int)ARRAY_SIZE(expect));
		CHECK(authfile_lookup(af, "nobody") == NULL);
		CHECK(authfile_lookup(af, "App") == NULL);
		CHECK(authfile_lookup(af, "") == NULL);
		CHECK(authfile_lookup(af, NULL) == NULL);
	}
	authfile_free(af);
	unlink(path);
	free(path);
}

static void collect_user(const char *user, void *arg)
{
	char *buf = arg;
	strcat(buf, user);
	strcat(buf, ",");
}

static void test_authfile_foreach_visits_each_user_once_in_file_order(void)
{
	static const char content[] = "\"b\" \"1\"\n\"a\" \"2\"\n\"b\" \"3\"\n\"c\" \"4\"\n";
	char err[512], seen[64] = "";
	char *path = write_temp(content, strlen(content));
	AuthFile *af = authfile_load(path, err, sizeof(err));
	CHECK(af != NULL);
	authfile_foreach(af, collect_user, seen);
	CHECK_MSG(strcmp(seen, "b,a,c,") == 0, "%s", seen);
	CHECK_STREQ(authfile_lookup(af, "b"), "3");
	authfile_free(af);
	unlink(path);
	free(path);
}

static void test_authfile_rejects_malformed_lines_with_line_number(void)
{
	static const struct {
		const char *content;
		size_t len;      /* 0: strlen */
		const char *err; /* expected after "PATH:" */
	} cases[] = {
	        {"\"app\" \"secret\"\napp secret\n", 0, "2: expected a double-quoted user name"},
	        {"\"app\" \"secret\n", 0, "1: unterminated quoted field"},
	        {"; c\n\n\"app\n", 0, "3: unterminated quoted field"},
	        {"\"app\"\n", 0,
	         "1: expected whitespace and a double-quoted secret after the user name"},
	        {"\"app\"\"secret\"\n", 0,
	         "1: expected whitespace and a double-quoted secret after the user name"},
	        {"\"app\" \n", 0, "1: expected a double-quoted secret after the user name"},
	        {"\"app\" secret\n", 0, "1: expected a double-quoted secret after the user name"},
	        {"\"app\" \"secret\" trailing\n", 0, "1: unexpected text after the secret"},
	        {"\"app\" \"secret\" \"x\n", 0, "1: unterminated quoted field"},
	        {"\"\" \"secret\"\n", 0, "1: empty user name"},
	        {"\"a\" \"b\"\n\"app\" \"sec\0ret\"\n", 24, "2: NUL byte in line"},
	        {"\"a\" \"b\"\n\"s\" \"SCRAM-SHA-256$4096:AA==$AA==:AA==\"\n", 0,
	         "2: malformed SCRAM-SHA-256 secret"},
	        {" ; indented comment\n\t\"x\" \"y\"\n=\n", 0,
	         "3: expected a double-quoted user name"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].content);
		char *path = write_temp(cases[i].content, len);
		char err[512] = "", want[512];
		snprintf(want, sizeof(want), "%s:%s", path, cases[i].err);
		AuthFile *af = authfile_load(path, err, sizeof(err));
		CHECK_MSG(af == NULL, "case %zu", i);
		CHECK_MSG(strcmp(err, want) == 0, "case %zu: got '%s', want '%s'", i, err, want);
		authfile_free(af);
		unlink(path);
		free(path);
	}
}

static void test_authfile_missing_file_names_the_path(void)
{
	char err[512] = "";
	CHECK(authfile_load("/nonexistent/pgtenant/userlist.txt", err, sizeof(err)) == NULL);
	CHECK_MSG(strcmp(err, "/nonexistent/pgtenant/userlist.txt: No such file or directory") == 0,
	          "%s", err);

	/* an empty file is a valid file with no users */
	char *path = write_temp("", 0);
	AuthFile *af = authfile_load(path, err, sizeof(err));
	CHECK(af != NULL && authfile_count(af) == 0 && authfile_lookup(af, "x") == NULL);
	authfile_free(af);
	unlink(path);
	free(path);
}

static void test_authfile_holds_100k_users(void)
{
	enum { N = 100000 };
	size_t cap = (size_t)N * 64, len = 0; /* a line is at most 52 bytes */
	char *content = malloc(cap);
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(content + len, cap - len, "\"user%d\" \"md5%032x\"\n", i,
		                        i);
	char *path = write_temp(content, len);
	free(content);

	char err[512] = "";
	AuthFile *af = authfile_load(path, err, sizeof(err));
	CHECK_MSG(af != NULL, "%s", err);
	CHECK(authfile_count(af) == N);
	int found = 0;
	for (int i = 0; i < N; i++) {
		char user[32], secret[40];
		snprintf(user, sizeof(user), "user%d", i);
		snprintf(secret, sizeof(secret), "md5%032x", i);
		const char *s = authfile_lookup(af, user);
		found += s && strcmp(s, secret) == 0;
	}
	CHECK(found == N);
	CHECK(authfile_lookup(af, "user100000") == NULL);
	CHECK(authfile_lookup(af, "user") == NULL);
	CHECK(auth_secret_kind(authfile_lookup(af, "user7")) == SECRET_MD5);
	authfile_free(af);
	unlink(path);
	free(path);
}

static void test_random_bytes_and_constant_time_compare(void)
{
	uint8_t a[32] = {0}, b[32] = {0};
	CHECK(auth_random_bytes(a, sizeof(a)));
	CHECK(auth_random_bytes(b, sizeof(b)));
	CHECK(!auth_ct_equal(a, b, sizeof(a)));
	memcpy(b, a, sizeof(a));
	CHECK(auth_ct_equal(a, b, sizeof(a)));
	b[31] ^= 1;
	CHECK(!auth_ct_equal(a, b, sizeof(a)));
	CHECK(auth_ct_equal(a, b, 31));
	CHECK(auth_ct_equal(a, b, 0));
}

int main(void)
{
	test_md5_password_hash_known_answers();
	test_md5_response_known_answers();
	test_md5_verify_accepts_only_the_right_answer();
	test_plain_verify_handles_every_secret_kind();
	test_secret_kind_follows_postgresql_rules();
	test_authfile_parses_quotes_comments_and_overrides();
	test_authfile_foreach_visits_each_user_once_in_file_order();
	test_authfile_rejects_malformed_lines_with_line_number();
	test_authfile_missing_file_names_the_path();
	test_authfile_holds_100k_users();
	test_random_bytes_and_constant_time_compare();
	return unit_finish("auth");
}
