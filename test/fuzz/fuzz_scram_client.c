/*
 * Fuzz target: pgtenant as the SCRAM client logging in to PostgreSQL, i.e.
 * what a hostile or broken server (or a man in the middle before TLS)
 * controls. The input is server-first-message, "\n--\n",
 * server-final-message; "@N@" in the first is replaced by pgtenant's client
 * nonce so the parser gets past the nonce check.
 *
 * Iteration counts above 4096 are skipped: pgtenant accepts up to
 * SCRAM_MAX_ITERATIONS by design and PBKDF2 over millions of rounds would
 * only make the fuzzer slow, not find more.
 */
#include "scram.h"

#include "fuzz.h"

static bool iterations_too_high(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 2 <= n; i++) {
		if (p[i] != 'i' || p[i + 1] != '=')
			continue;
		unsigned long v = 0;
		for (size_t j = i + 2; j < n && p[j] >= '0' && p[j] <= '9'; j++) {
			v = v * 10 + (unsigned long)(p[j] - '0');
			if (v > 4096)
				return true;
		}
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ScramClient c;
	uint8_t *first, *final, *first_sub;
	size_t first_len, final_len, sub_len;
	char *out = NULL, err[256];

	fuzz_split(data, size, &first, &first_len, &final, &final_len);
	FUZZ_ASSERT(scram_client_first(&c, &out));
	FUZZ_ASSERT(out != NULL && strncmp(out, "n,,n=,r=", 8) == 0);
	free(out);
	out = NULL;
	first_sub = fuzz_substitute(first, first_len, c.client_nonce, &sub_len);
	if (iterations_too_high(first_sub, sub_len))
		goto done;
	err[0] = '\0';
	if (!scram_client_final(&c, "pencil", first_sub, sub_len, &out, err, sizeof(err))) {
		FUZZ_ASSERT(out == NULL && err[0] != '\0');
		FUZZ_ASSERT(!scram_client_verify(&c, final, final_len, err, sizeof(err)));
		goto done;
	}
	FUZZ_ASSERT(out != NULL && strncmp(out, "c=biws,r=", 9) == 0 && strstr(out, ",p=") != NULL);
	free(out);
	out = NULL;
	err[0] = '\0';
	if (!scram_client_verify(&c, final, final_len, err, sizeof(err)))
		FUZZ_ASSERT(err[0] != '\0' && strlen(err) < sizeof(err));
	/* verifying twice is refused whatever the first answer was */
	FUZZ_ASSERT(!scram_client_verify(&c, final, final_len, err, sizeof(err)));
done:
	scram_client_free(&c);
	free(first_sub);
	free(first);
	free(final);
	return 0;
}
