/*
 * The reply queue (expect.c) as tables of message sequences: what a client
 * (or pgtenant) wrote, what PostgreSQL answered, and how each answer must be
 * matched. The sequences are the ones PostgreSQL 15 produces for them (as seen
 * in the integration tests' traffic): extended batches, errors mid-batch and
 * the skip to Sync, a failed implicit COMMIT at Sync, COPY in both protocols
 * with the Syncs PostgreSQL ignores in copy-in, and pipelines.
 */
#include "expect.h"
#include "unit.h"

#include <stdlib.h>

typedef struct Case {
	const char *name;
	const char
	        *sent; /* frontend message types written, in order ('c' CopyDone, 'd' CopyData) */
	const char *replies; /* backend message types received, in order */
	const char *verdict; /* per reply: A async, P part, D done, S skip, B bad */
	int left;            /* entries still queued at the end */
} Case;

static const Case cases[] = {
        {"simple query", "Q", "TDCZ", "PPPD", 0},
        {"simple query with notice and parameter status", "Q", "NTDSCZ", "APPAPD", 0},
        {"extended unnamed", "PBDES", "12TDCZ", "DDDPDD", 0},
        {"extended with statement describe", "PDBES", "1tT2DDCZ", "DPDDPPDD", 0},
        {"error at bind skips to sync", "PBDES", "1EZ", "DSD", 0},
        {"error at parse skips everything up to sync, query included", "PBEQS", "EZ", "SD", 0},
        {"failed implicit commit errors at sync", "PBES", "12CEZ", "DDDPD", 0},
        {"pipeline of two batches, error in the first", "PBESPBES", "1EZ12CZ", "DSDDDDD", 0},
        {"query error ends the query only", "QQ", "EZTDCZ", "PDPPPD", 0},
        {"copy in, simple", "Qdc", "GCZ", "PPD", 0},
        {"copy in, extended: the Sync after Execute is ignored", "PBESddcS", "12GCZ", "DDPDD", 0},
        {"copy in sent blind (CopyDone before CopyInResponse): the Sync after it counts", "QdcS",
         "GCZZ", "PPDD", 0},
        {"copy in, extended, error mid-copy: skip to the Sync after CopyDone", "PBESdcS", "12GEZ",
         "DDPSD", 0},
        {"copy out, extended", "PBES", "12HddcCZ", "DDPPPPDD", 0},
        {"portal suspended", "PBESES", "12DsZDCZ", "DDPDDPDD", 0},
        {"empty query", "PBES", "12IZ", "DDDD", 0},
        {"close", "CS", "3Z", "DD", 0},
        {"function call", "F", "VZ", "PD", 0},
        {"reply nobody asked for", "", "Z", "B", 0},
        {"row before any request", "Q", "Z1", "DB", 0},
        {"bind complete where a parse was asked", "PS", "2", "B", 2},
        {"flush and copy data owe nothing", "HdQ", "TCZ", "PPD", 0},
};

static void push_all(ExpectQueue *q, const char *sent)
{
	for (const char *p = sent; *p; p++) {
		uint8_t kind = (uint8_t)expect_kind_of((uint8_t)*p);
		if (kind != EX_NONE)
			expect_push(q, kind, 0, *p == 'Q' || *p == 'S' || *p == 'F', NULL);
	}
}

static char verdict_char(ExpectMatch m)
{
	switch (m) {
	case XM_ASYNC:
		return 'A';
	case XM_PART:
		return 'P';
	case XM_DONE:
		return 'D';
	case XM_SKIP:
		return 'S';
	default:
		return 'B';
	}
}

static int skipped;

static void count_skip(void *arg, Expect *e)
{
	(void)arg;
	(void)e;
	skipped++;
}

static void run_case(const Case *tc)
{
	ExpectQueue q;
	char got[64] = "";
	size_t n = 0;

	expect_init(&q);
	push_all(&q, tc->sent);
	for (const char *r = tc->replies; *r && n < sizeof(got) - 1; r++) {
		ExpectMatch m = expect_match(&q, expect_head(&q), (uint8_t)*r);
		got[n++] = verdict_char(m);
		if (m == XM_BAD)
			break;
		if (*r == 'G')
			expect_copy_in(&q);
		if (m == XM_DONE) {
			Expect e;
			expect_pop(&q, &e);
		} else if (m == XM_SKIP) {
			expect_skip(&q, count_skip, NULL);
		}
	}
	got[n] = '\0';
	CHECK_MSG(unit_streq(got, tc->verdict), "%s: verdicts %s, expected %s", tc->name, got,
	          tc->verdict);
	(void)expect_head(&q);
	CHECK_MSG((int)q.n == tc->left, "%s: %u entries left, expected %d", tc->name, q.n,
	          tc->left);
	if (tc->left == 0)
		CHECK_MSG(q.units == 0 && q.client_units == 0, "%s: units %u client %u left",
		          tc->name, q.units, q.client_units);
	expect_free(&q);
}

/* Deep pipelines wrap the ring and grow it: order and counts survive. */
static void pipeline_grows(void)
{
	ExpectQueue q;
	expect_init(&q);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 100; i++)
			push_all(&q, "PBES");
		CHECK(q.units == 100 && q.client_units == 100);
		for (int i = 0; i < 100; i++) {
			const char *replies = "12CZ";
			for (const char *r = replies; *r; r++) {
				ExpectMatch m = expect_match(&q, expect_head(&q), (uint8_t)*r);
				CHECK(m == XM_DONE);
				Expect e;
				expect_pop(&q, &e);
			}
		}
		CHECK(expect_empty(&q) && q.units == 0);
		CHECK(q.units_done == q.units_pushed);
	}
	expect_free(&q);
}

/* A Sync written while the server is in copy-in owes nothing; the one after CopyDone does. */
static void sync_during_copy_in(void)
{
	ExpectQueue q;
	expect_init(&q);
	push_all(&q, "Q");
	CHECK(expect_match(&q, expect_head(&q), 'G') == XM_PART);
	expect_copy_in(&q);
	CHECK(q.copy_in);
	push_all(&q, "dS"); /* ignored by PostgreSQL */
	CHECK(q.units == 1);
	push_all(&q, "cS");
	CHECK(!q.copy_in && q.units == 2);
	expect_free(&q);
}

/*
 * An error with no Sync queued yet (a pipelining driver that had not sent it): the
 * skip goes on into what is queued later, up to the Sync, as PostgreSQL does.
 */
static void skip_outlives_the_queue(void)
{
	ExpectQueue q;
	expect_init(&q);
	push_all(&q, "BDEBDE");
	CHECK(expect_match(&q, expect_head(&q), '2') == XM_DONE);
	Expect e;
	expect_pop(&q, &e);
	CHECK(expect_match(&q, expect_head(&q), 'E') == XM_SKIP);
	skipped = 0;
	expect_skip(&q, count_skip, NULL);
	CHECK(skipped == 5 && q.skip_pending && expect_empty(&q));
	push_all(&q, "BDES"); /* skipped by PostgreSQL too: only the Sync is answered */
	expect_skip(&q, count_skip, NULL);
	CHECK(skipped == 8 && !q.skip_pending);
	CHECK(expect_match(&q, expect_head(&q), 'Z') == XM_DONE);
	expect_pop(&q, &e);
	CHECK(expect_empty(&q) && q.units == 0 && q.client_units == 0);
	expect_free(&q);
}

int main(void)
{
	skip_outlives_the_queue();
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		run_case(&cases[i]);
	pipeline_grows();
	sync_during_copy_in();
	printf("expect_test: %d passed, %d failed\n", unit_passed, unit_failed);
	return unit_failed ? 1 : 0;
}
