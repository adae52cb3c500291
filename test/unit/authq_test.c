/*
 * authq: the made-up verifier of a user auth_query does not know must be a
 * well-formed SCRAM verifier (so the exchange costs what a real one does and
 * looks the same), stable for a user within the process, and different for
 * different users.
 */
#include "auth.h"
#include "authq.h"
#include "scram.h"
#include "unit.h"

#include <stdlib.h>

static const char *const users[] = {"alice", "bob", "", "a.b.c", "we\"ird\\user", "x"};

static void test_fake_verifier_is_a_stable_scram_verifier_per_user(void)
{
	char a[160], b[160], other[160];

	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		ScramServer s;
		authq_fake_verifier(users[i], a, sizeof(a));
		authq_fake_verifier(users[i], b, sizeof(b));
		CHECK_MSG(strcmp(a, b) == 0, "not stable for \"%s\"", users[i]);
		CHECK_MSG(auth_secret_kind(a) == SECRET_SCRAM, "not a SCRAM verifier: %s", a);
		CHECK_MSG(strncmp(a, "SCRAM-SHA-256$4096:", 19) == 0, "iterations: %s", a);
		CHECK(scram_server_init(&s, a, users[i]));
		scram_server_free(&s);
		authq_fake_verifier(users[(i + 1) % (sizeof(users) / sizeof(users[0]))], other,
		                    sizeof(other));
		CHECK_MSG(strcmp(a, other) != 0, "same verifier for two users: %s", a);
	}
}

int main(void)
{
	test_fake_verifier_is_a_stable_scram_verifier_per_user();
	return unit_finish("authq");
}
