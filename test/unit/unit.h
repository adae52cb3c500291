/*
 * A minimal harness for pgtenant's C unit tests: tables of cases checked
 * with CHECK(); each binary prints "N passed, N failed" and exits non-zero
 * on any failure.
 */
#ifndef PGTENANT_UNIT_H
#define PGTENANT_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (cond) {                                                                        \
			unit_passed++;                                                             \
		} else {                                                                           \
			unit_failed++;                                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
		}                                                                                  \
	} while (0)

#define CHECK_MSG(cond, ...)                                                                       \
	do {                                                                                       \
		if (cond) {                                                                        \
			unit_passed++;                                                             \
		} else {                                                                           \
			unit_failed++;                                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);   \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

static inline int unit_streq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

#define CHECK_STREQ(a, b)                                                                          \
	do {                                                                                       \
		const char *unit_a_ = (a), *unit_b_ = (b);                                         \
		CHECK_MSG(unit_streq(unit_a_, unit_b_), "'%s' != '%s'",                            \
		          unit_a_ ? unit_a_ : "(null)", unit_b_ ? unit_b_ : "(null)");             \
	} while (0)

static inline int unit_finish(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, unit_passed, unit_failed);
	return unit_failed ? 1 : 0;
}

#endif
