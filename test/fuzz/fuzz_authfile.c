/*
 * Fuzz target: auth_file parsing (authfile_load) from a file holding the
 * input. A load either fails with "FILE:LINE: message" or gives a table in
 * which every user found by authfile_foreach is found again by
 * authfile_lookup; everything is freed (secrets included).
 */
#include "auth.h"

#include "fuzz.h"

typedef struct {
	const AuthFile *af;
	int seen;
} Walk;

static void visit(const char *user, void *arg)
{
	Walk *w = arg;
	const char *secret = authfile_lookup(w->af, user);

	FUZZ_ASSERT(user[0] != '\0');
	FUZZ_ASSERT(secret != NULL);
	(void)auth_secret_kind(secret);
	w->seen++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	const char *path = fuzz_write_file("users.txt", data, size);
	AuthFile *af;
	Walk w;

	err[0] = '\0';
	af = authfile_load(path, err, sizeof(err));
	if (!af) {
		FUZZ_ASSERT(strncmp(err, path, strlen(path)) == 0);
		return 0;
	}
	w.af = af;
	w.seen = 0;
	authfile_foreach(af, visit, &w);
	FUZZ_ASSERT(w.seen == authfile_count(af));
	FUZZ_ASSERT(authfile_lookup(af, "") == NULL);
	(void)authfile_lookup(af, "app");
	authfile_free(af);
	return 0;
}
