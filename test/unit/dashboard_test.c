/*
 * The JSON escaping of /tenants.json (dashboard.c): quotes, backslashes and
 * control characters escaped, valid UTF-8 kept, anything else U+FFFD, so the
 * document stays strict JSON whatever a host name or an error text holds.
 */
#include "dashboard.h"
#include "unit.h"

#include <stdlib.h>

typedef struct Case {
	const char *name;
	const char *in;
	const char *out;
} Case;

static const Case cases[] = {
        {"plain", "acme-1_x", "acme-1_x"},
        {"empty", "", ""},
        {"quote and backslash", "we\\ird\"host", "we\\\\ird\\\"host"},
        {"newline, tab, control", "a\nb\tc\x01", "a\\u000ab\\u0009c\\u0001"},
        {"DEL", "x\x7fy", "x\\u007fy"},
        {"two-byte UTF-8 kept", "caf\xc3\xa9", "caf\xc3\xa9"},
        {"three-byte UTF-8 kept", "\xe2\x82\xac", "\xe2\x82\xac"},
        {"four-byte UTF-8 kept", "\xf0\x9f\x90\x98", "\xf0\x9f\x90\x98"},
        {"lone continuation byte", "a\x80z", "a\\ufffdz"},
        {"byte 0xff", "h\xffst", "h\\ufffdst"},
        {"truncated sequence at the end", "ab\xe2\x82", "ab\\ufffd\\ufffd"},
        {"overlong encoding of /", "\xc0\xaf", "\\ufffd\\ufffd"},
        {"overlong three-byte", "\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd"},
        {"UTF-16 surrogate", "\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd"},
        {"beyond U+10FFFF", "\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"},
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Buf b;
		buf_init(&b);
		dashboard_json_escape(&b, cases[i].in);
		/* an empty result has no buffer at all: no pointer to copy from */
		char *got = buf_avail(&b) ? strndup((const char *)buf_head(&b), buf_avail(&b))
		                          : strdup("");
		CHECK_MSG(strcmp(got, cases[i].out) == 0, "%s: got '%s', want '%s'", cases[i].name,
		          got, cases[i].out);
		free(got);
		buf_free(&b);
	}
	Buf b;
	buf_init(&b);
	dashboard_json_escape(&b, NULL);
	CHECK(buf_avail(&b) == 0);
	buf_free(&b);
	return unit_finish("dashboard");
}
