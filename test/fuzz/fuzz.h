/*
 * Helpers shared by pgtenant's fuzz targets. Each target defines
 * LLVMFuzzerTestOneInput() and is linked either with libFuzzer (clang
 * -fsanitize=fuzzer) or with driver.c, a plain main() that feeds it every
 * file named on the command line (the gcc + ASan fallback of fuzz-check).
 *
 * A target must be deterministic for a given input apart from the random
 * nonces pgtenant draws itself, free everything it allocates (leaks are
 * reported by LeakSanitizer), and call FUZZ_ASSERT for each property it
 * checks: a failed property aborts, so the fuzzer saves the input.
 */
#ifndef PGTENANT_FUZZ_H
#define PGTENANT_FUZZ_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__,   \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/*
 * Splits the input at the first "\n--\n" (targets that need two untrusted
 * messages). Without a separator the whole input is the first part and the
 * second is empty. The parts are exact-size heap copies, so a read one byte
 * past the end is an ASan error rather than a read into the other part.
 */
#define FUZZ_SEP "\n--\n"

static inline uint8_t *fuzz_dup(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);
	if (!d)
		abort();
	if (n)
		memcpy(d, p, n);
	return d;
}

static inline void fuzz_split(const uint8_t *data, size_t size, uint8_t **a, size_t *alen,
                              uint8_t **b, size_t *blen)
{
	const uint8_t *sep = size >= 4 ? memmem(data, size, FUZZ_SEP, 4) : NULL;
	if (!sep) {
		*a = fuzz_dup(data, size);
		*alen = size;
		*b = fuzz_dup(data, 0);
		*blen = 0;
		return;
	}
	*alen = (size_t)(sep - data);
	*a = fuzz_dup(data, *alen);
	*blen = size - *alen - 4;
	*b = fuzz_dup(sep + 4, *blen);
}

/* Replaces every "@N@" in msg with nonce (a value the peer chose at random); exact-size result. */
static inline uint8_t *fuzz_substitute(const uint8_t *msg, size_t len, const char *nonce,
                                       size_t *outlen)
{
	size_t nl = strlen(nonce), o = 0, cap = 1;
	uint8_t *out, *exact;

	for (size_t i = 0; i < len;) {
		if (i + 3 <= len && memcmp(msg + i, "@N@", 3) == 0) {
			cap += nl;
			i += 3;
		} else {
			cap++;
			i++;
		}
	}
	out = malloc(cap);
	if (!out)
		abort();
	for (size_t i = 0; i < len;) {
		if (i + 3 <= len && memcmp(msg + i, "@N@", 3) == 0) {
			memcpy(out + o, nonce, nl);
			o += nl;
			i += 3;
		} else {
			out[o++] = msg[i++];
		}
	}
	*outlen = o;
	exact = fuzz_dup(out, o);
	free(out);
	return exact;
}

/*
 * A private directory with one file in it, rewritten for every input (the
 * loaders under test take a path). The directory is otherwise empty, so a
 * relative include_dir finds nothing but the file itself.
 */
static char fuzz_dir[256];
static char fuzz_path[512];

static inline void fuzz_cleanup(void)
{
	unlink(fuzz_path);
	rmdir(fuzz_dir);
}

static inline const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size)
{
	char *path = fuzz_path;
	int fd;

	if (!fuzz_dir[0]) {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/pgtenant-fuzz-XXXXXX", base);
		if (!mkdtemp(fuzz_dir))
			abort();
		atexit(fuzz_cleanup);
	}
	snprintf(fuzz_path, sizeof(fuzz_path), "%s/%s", fuzz_dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	while (size > 0) {
		ssize_t n = write(fd, data, size);
		if (n <= 0)
			abort();
		data += n;
		size -= (size_t)n;
	}
	close(fd);
	return path;
}

#endif
