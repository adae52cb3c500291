/*
 * stats: the statement normaliser (what SHOW QUERIES groups together and
 * what it keeps apart), that sql_analyze_norm gives the same text as the
 * lexer-only pass, and histogram buckets and quantiles. A timing loop
 * prints the cost of normalising a pgbench SELECT.
 */
#include "sqllex.h"
#include "stats.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void normalize(const char *sql, char *out, size_t cap, uint64_t *hash)
{
	SqlNorm n;
	size_t len = strlen(sql);
	char *copy = malloc(len ? len : 1); /* exact size, no NUL: reads past the end show */

	if (!copy)
		abort();
	memcpy(copy, sql, len);
	sql_norm_init(&n, out, cap);
	sql_normalize(copy, len, &n);
	*hash = n.hash;
	free(copy);
}

static void test_normaliser_folds_literals_case_space_and_comments(void)
{
	static const struct {
		const char *sql;
		const char *want;
	} cases[] = {
	        {"select * from t where id = 1", "select * from t where id = ?"},
	        {"SELECT *\n  FROM t\tWHERE id = 2;", "select * from t where id = ?"},
	        {"select * from t where id = $1", "select * from t where id = ?"},
	        {"select * from t /* hi */ where id = 'x' -- bye", "select * from t where id = ?"},
	        {"select a, b from \"T\" where x in (1, 2, 3)",
	         "select a, b from \"T\" where x in (?)"},
	        {"insert into t values (1, 'a', E'b\\n', $$c$$)", "insert into t values (?)"},
	        {"select count(*) from t", "select count(*) from t"},
	        {"select t.a from s.t", "select t.a from s.t"},
	        {"select f(x, 1)", "select f(x, ?)"},
	        {"select (1, x)", "select (?, x)"},
	        {"begin; select 1; commit;", "begin; select ?; commit"},
	        {"select 1.5e3, 0x1F, B'101'", "select ?"},
	        {"", ""},
	        {"   -- only a comment", ""},
	        {"select 'unterminated", "select"},
	};
	char buf[256];
	uint64_t h;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		normalize(cases[i].sql, buf, sizeof(buf), &h);
		CHECK_MSG(strcmp(buf, cases[i].want) == 0, "%s -> [%s], want [%s]", cases[i].sql,
		          buf, cases[i].want);
	}
}

static void test_same_statement_same_hash_different_statement_different_hash(void)
{
	static const struct {
		const char *a, *b;
		bool same;
	} cases[] = {
	        {"select * from t where id = 1", "select * from t where id = 2", true},
	        {"select * from t where id = 1", "SELECT * FROM t WHERE id = $1", true},
	        {"select * from t where id = 1", "select * from u where id = 1", false},
	        {"select * from t where id = 1", "select * from \"T\" where id = 1", false},
	        {"select 1 as c1", "select 1 as c2", false},
	        {"select * from t where id in (1,2)", "select * from t where id in (3, 4, 5)",
	         true},
	};
	char buf[256];
	uint64_t ha, hb;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		normalize(cases[i].a, buf, sizeof(buf), &ha);
		normalize(cases[i].b, buf, sizeof(buf), &hb);
		CHECK_MSG((ha == hb) == cases[i].same, "%s vs %s", cases[i].a, cases[i].b);
	}
}

static void test_truncated_text_keeps_the_whole_hash(void)
{
	char small[16], other[16];
	uint64_t h1, h2, h3;

	/* the hash depends on the buffer size (pgtenant's is fixed), not on what it holds */
	normalize("select aaaa, bbbb, cccc, dddd from t where x = 1", small, sizeof(small), &h1);
	normalize("select aaaa, bbbb, cccc, dddd from t where x = 2", other, sizeof(other), &h2);
	normalize("select aaaa, bbbb, cccc, eeee from t where x = 1", small, sizeof(small), &h3);
	CHECK(h1 == h2);
	CHECK(h1 != h3);
	CHECK(strlen(small) < sizeof(small));
	CHECK(strcmp(small + strlen(small) - 3, "...") == 0);
}

static void test_analyze_norm_matches_the_lexer_only_pass(void)
{
	static const char *const sqls[] = {
	        "select * from t where id = 1",
	        "SET search_path = a; select 2",
	        "with x as (select 1) select * from x for update",
	        "create function f() returns int begin atomic; select 1; end",
	};
	for (size_t i = 0; i < ARRAY_SIZE(sqls); i++) {
		char a[256], b[256];
		SqlNorm n;
		SqlInfo info;
		uint64_t h;
		normalize(sqls[i], a, sizeof(a), &h);
		sql_norm_init(&n, b, sizeof(b));
		sql_analyze_norm(sqls[i], strlen(sqls[i]), "app.tenant_id", NULL, &info, &n);
		CHECK_MSG(strcmp(a, b) == 0 && h == n.hash, "%s: [%s] vs [%s]", sqls[i], a, b);
	}
}

/*
 * Every statement is fingerprinted without its text, and the text is written only for a
 * fingerprint seen first (stats.c statement_fp): both passes must give the same hash, with
 * a buffer of any size, for every shape of statement the normaliser folds.
 */
static void test_fingerprint_is_the_same_with_and_without_the_text(void)
{
	static const char *const sqls[] = {
	        "select * from t where id = 1",
	        "SELECT *\n  FROM t\tWHERE id = 2;",
	        "select a, b from \"T\" where x in (1, 2, 3)",
	        "insert into t values (1, 'a', E'b\\n', $$c$$)",
	        "select count(*) from t where \"Mixed Case\".x >= $1 and y <> 'z'",
	        "begin; select 1; commit;",
	        "select 1,",
	        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
	        "select a_very_long_column_name_of_more_than_eight_bytes, ÄÖü from t",
	        "",
	};
	static const size_t caps[] = {0, 1, 4, 5, 9, 16, 256};

	for (size_t i = 0; i < ARRAY_SIZE(sqls); i++) {
		SqlNorm bare, full;
		sql_norm_init(&bare, NULL, 0);
		sql_normalize(sqls[i], strlen(sqls[i]), &bare);
		CHECK_MSG(bare.len == 0 && !bare.truncated, "%s: no text without a buffer",
		          sqls[i]);
		for (size_t k = 0; k < ARRAY_SIZE(caps); k++) {
			char buf[256];
			memset(buf, 'x', sizeof(buf));
			sql_norm_init(&full, buf, caps[k]);
			sql_normalize(sqls[i], strlen(sqls[i]), &full);
			CHECK_MSG(full.hash == bare.hash, "%s: cap %zu changes the fingerprint",
			          sqls[i], caps[k]);
			if (caps[k])
				CHECK_MSG(full.len < caps[k] && buf[full.len] == '\0',
				          "%s: cap %zu: text of %zu bytes not ended in bounds",
				          sqls[i], caps[k], full.len);
		}
		SqlInfo info;
		sql_norm_init(&full, NULL, 0);
		sql_analyze_norm(sqls[i], strlen(sqls[i]), "app.tenant_id", NULL, &info, &full);
		CHECK_MSG(full.hash == bare.hash, "%s: the analysis pass fingerprints alike",
		          sqls[i]);
	}
}

static void test_histogram_buckets_and_quantiles(void)
{
	static const struct {
		uint64_t us;
		int bucket;
	} cases[] = {
	        {0, 0},         {100, 0},       {101, 1},         {200, 1},
	        {999, 3},       {1000, 3},      {200000, 10},     {200001, 11},
	        {30000000, 17}, {30000001, 18}, {UINT64_MAX, 18},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		Hist h;
		memset(&h, 0, sizeof(h));
		hist_record(&h, cases[i].us);
		CHECK_MSG(h.b[cases[i].bucket] == 1 && h.count == 1, "%llu us",
		          (unsigned long long)cases[i].us);
	}

	Hist h;
	memset(&h, 0, sizeof(h));
	for (int i = 0; i < 90; i++)
		hist_record(&h, 300); /* (200, 500] µs */
	for (int i = 0; i < 10; i++)
		hist_record(&h, 250000); /* (200, 500] ms */
	double p50 = hist_quantile_ms(&h, 0.50), p95 = hist_quantile_ms(&h, 0.95);
	double p99 = hist_quantile_ms(&h, 0.99);
	CHECK_MSG(p50 > 0.2 && p50 <= 0.5, "p50 %f", p50);
	CHECK_MSG(p95 > 200 && p95 <= 500, "p95 %f", p95);
	CHECK_MSG(p99 > p95 && p99 <= 500, "p99 %f", p99);
	CHECK(h.sum_us == 90 * 300 + 10 * 250000);

	Hist empty;
	memset(&empty, 0, sizeof(empty));
	CHECK(hist_quantile_ms(&empty, 0.5) == 0);
	Hist inf;
	memset(&inf, 0, sizeof(inf));
	hist_record(&inf, 60000000);
	CHECK(hist_quantile_ms(&inf, 0.99) == 30000.0);
}

static void bench_normalise(void)
{
	static const char sql[] = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
	char buf[1024];
	struct timespec t0, t1;
	const int n = 200000;
	uint64_t sink = 0;

	for (int with_text = 0; with_text < 2; with_text++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int i = 0; i < n; i++) {
			SqlNorm nm;
			sql_norm_init(&nm, with_text ? buf : NULL, with_text ? sizeof(buf) : 0);
			sql_normalize(sql, sizeof(sql) - 1, &nm);
			sink += nm.hash & 1;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
		             (double)(t1.tv_nsec - t0.tv_nsec)) /
		            n;
		printf("normalise bench: %.0f ns/call (%zu-byte pgbench SELECT, %s)\n", ns,
		       sizeof(sql) - 1, with_text ? "with its text" : "fingerprint only");
	}
	CHECK(sink <= 2 * (uint64_t)n);
}

/* hist_bucket (a table by log2, then at most a few compares) is the plain search over bounds. */
static void test_hist_bucket_is_the_linear_search(void)
{
	int wrong = 0;
	uint64_t vals[4 * HIST_BOUNDS + 70];
	size_t n = 0;
	for (int i = 0; i < HIST_BOUNDS; i++) {
		vals[n++] = hist_bounds_us[i] - 1;
		vals[n++] = hist_bounds_us[i];
		vals[n++] = hist_bounds_us[i] + 1;
	}
	for (int k = 0; k < 64; k++)
		vals[n++] = 1ULL << k;
	vals[n++] = 0;
	vals[n++] = UINT64_MAX;
	for (size_t j = 0; j < n; j++) {
		int want = 0;
		while (want < HIST_BOUNDS && vals[j] > hist_bounds_us[want])
			want++;
		if (hist_bucket(vals[j]) != want && wrong++ < 3)
			CHECK_MSG(false, "hist_bucket(%llu) = %d, want %d",
			          (unsigned long long)vals[j], hist_bucket(vals[j]), want);
	}
	for (uint64_t us = 0; us < 40000000; us += 997) {
		int want = 0;
		while (want < HIST_BOUNDS && us > hist_bounds_us[want])
			want++;
		if (hist_bucket(us) != want && wrong++ < 3)
			CHECK_MSG(false, "hist_bucket(%llu) = %d, want %d", (unsigned long long)us,
			          hist_bucket(us), want);
	}
	CHECK_MSG(wrong == 0, "%d values in the wrong bucket", wrong);
}

int main(int argc, char **argv)
{
	test_normaliser_folds_literals_case_space_and_comments();
	test_same_statement_same_hash_different_statement_different_hash();
	test_truncated_text_keeps_the_whole_hash();
	test_analyze_norm_matches_the_lexer_only_pass();
	test_fingerprint_is_the_same_with_and_without_the_text();
	test_histogram_buckets_and_quantiles();
	test_hist_bucket_is_the_linear_search();
	if (!(argc > 1 && strcmp(argv[1], "--no-bench") == 0))
		bench_normalise();
	return unit_finish("stats");
}
