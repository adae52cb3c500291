/*
 * Fuzz target: pgtenant as the SCRAM server, i.e. what an unauthenticated
 * client controls. The input is client-first-message, "\n--\n",
 * client-final-message. The server's half of the nonce is random, so "@N@"
 * in the final message is replaced by the nonce pgtenant sent (otherwise
 * every final message would stop at the nonce check).
 *
 * The secret is a fixed stored verifier (no PBKDF2 per run). Properties:
 * an exchange either fails with a message or yields output; nothing leaks;
 * a correct proof for the password "pencil" is never needed and never
 * produced by chance.
 */
#include "scram.h"

#include "fuzz.h"

/* scram_build_verifier("pencil", RFC 7677 salt, 4096) */
static const char fuzz_verifier[] =
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ScramServer s;
	uint8_t *first, *final, *final_sub;
	size_t first_len, final_len, sub_len;
	char *out = NULL, err[256];

	FUZZ_ASSERT(scram_server_init(&s, fuzz_verifier, "u"));
	fuzz_split(data, size, &first, &first_len, &final, &final_len);
	err[0] = '\0';
	if (!scram_server_first(&s, first, first_len, &out, err, sizeof(err))) {
		FUZZ_ASSERT(out == NULL && err[0] != '\0');
		/* a failed exchange stays failed */
		FUZZ_ASSERT(!scram_server_final(&s, final, final_len, &out, err, sizeof(err)));
		FUZZ_ASSERT(out == NULL);
		goto done;
	}
	FUZZ_ASSERT(out != NULL && strncmp(out, "r=", 2) == 0);
	FUZZ_ASSERT(strstr(out, ",s=") != NULL && strstr(out, ",i=4096") != NULL);
	free(out);
	out = NULL;
	final_sub = fuzz_substitute(final, final_len, s.server_nonce, &sub_len);
	err[0] = '\0';
	if (scram_server_final(&s, final_sub, sub_len, &out, err, sizeof(err))) {
		/* only a client that knows the password gets here */
		FUZZ_ASSERT(out != NULL && strncmp(out, "v=", 2) == 0);
	} else {
		FUZZ_ASSERT(out == NULL && err[0] != '\0');
	}
	free(out);
	out = NULL;
	/* a second final message after the exchange ended is refused */
	FUZZ_ASSERT(!scram_server_final(&s, final_sub, sub_len, &out, err, sizeof(err)));
	FUZZ_ASSERT(out == NULL);
	free(final_sub);
done:
	scram_server_free(&s);
	free(first);
	free(final);
	return 0;
}
