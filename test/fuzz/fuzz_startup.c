/*
 * Fuzz target: the StartupMessage parser (proto_parse_startup) with
 * arbitrary bytes as the body after the length word — what any TCP peer
 * can send before authenticating. On success every string it hands back
 * must lie inside the packet and be terminated there.
 */
#include "proto.h"

#include "fuzz.h"

static void check_str(const char *s, const uint8_t *body, size_t len)
{
	if (!s)
		return;
	FUZZ_ASSERT((const uint8_t *)s >= body && (const uint8_t *)s < body + len);
	FUZZ_ASSERT(memchr(s, '\0', len - (size_t)((const uint8_t *)s - body)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Startup st;
	const char *why = NULL;

	if (size > STARTUP_MAX_LEN) /* pgtenant refuses longer packets before parsing */
		return 0;
	if (!proto_parse_startup(data, size, &st, &why)) {
		FUZZ_ASSERT(why != NULL && why[0] != '\0');
		return 0;
	}
	FUZZ_ASSERT(size >= 4);
	FUZZ_ASSERT(st.user != NULL && st.user[0] != '\0');
	FUZZ_ASSERT(st.database != NULL && st.database[0] != '\0');
	check_str(st.user, data, size);
	check_str(st.database, data, size);
	check_str(st.options, data, size);
	FUZZ_ASSERT(st.n_params >= 0 && st.n_params <= STARTUP_MAX_PARAMS);
	for (int i = 0; i < st.n_params; i++) {
		check_str(st.params[i].name, data, size);
		check_str(st.params[i].value, data, size);
		FUZZ_ASSERT(st.params[i].name[0] != '\0');
	}
	FUZZ_ASSERT(st.n_pq_ext >= 0 && st.n_pq_ext <= (int)ARRAY_SIZE(st.pq_ext));
	for (int i = 0; i < st.n_pq_ext; i++) {
		check_str(st.pq_ext[i], data, size);
		FUZZ_ASSERT(strncmp(st.pq_ext[i], "_pq_.", 5) == 0);
	}
	return 0;
}
