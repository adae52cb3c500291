/*
 * Fuzz target: the SQL lexer and statement classifier with arbitrary text
 * (every Query and Parse a client sends goes through sql_analyze).
 *
 * Properties: tokenizing reaches EOF or ERROR in at most len+1 tokens;
 * every token lies inside the input, after the previous one; ERROR is
 * sticky; and sql_analyze never calls something read-only for certain that
 * it could not parse, that the guard refuses or that may change the tenant
 * state (SPEC §4, §5: anything unsure goes to the primary). The statement
 * normaliser (SHOW QUERIES) stays inside its buffer, always terminates it,
 * and gives the same text and hash alongside sql_analyze as on its own. The
 * screen (sql_screen, sql_analyze's fast path) agrees with the full analysis.
 */
#include "sqllex.h"

#include "fuzz.h"

static void fuzz_tokens(const char *s, size_t len)
{
	SqlLexer lx;
	SqlToken tok;
	size_t prev_end = 0, count = 0;
	SqlTokType t;

	sqllex_init(&lx, s, len);
	for (;;) {
		memset(&tok, 0xa5, sizeof(tok));
		t = sqllex_next(&lx, &tok);
		FUZZ_ASSERT(t == tok.type);
		FUZZ_ASSERT(++count <= len + 1);
		FUZZ_ASSERT(tok.offset <= len);
		FUZZ_ASSERT(tok.text >= s && tok.len <= len && tok.text + tok.len <= s + len);
		FUZZ_ASSERT(tok.depth >= 0);
		if (t == SQLTOK_EOF) {
			FUZZ_ASSERT(sqllex_next(&lx, &tok) == SQLTOK_EOF);
			break;
		}
		if (t == SQLTOK_ERROR) {
			FUZZ_ASSERT(lx.failed);
			FUZZ_ASSERT(sqllex_next(&lx, &tok) == SQLTOK_ERROR);
			break;
		}
		/* tokens advance and do not overlap; a token's text starts at or after its first
		 * byte */
		FUZZ_ASSERT(tok.offset >= prev_end && tok.offset < len);
		FUZZ_ASSERT(tok.text >= s + tok.offset);
		FUZZ_ASSERT(lx.pos > tok.offset && lx.pos <= len);
		FUZZ_ASSERT(tok.text + tok.len <= s + lx.pos);
		prev_end = lx.pos;
		if (t == SQLTOK_IDENT) {
			(void)sqltok_is(&tok, "set");
			(void)sqltok_is(&tok, "select");
		}
		FUZZ_ASSERT(t != SQLTOK_SEMI || (tok.len == 1 && tok.text[0] == ';'));
	}
}

static void fuzz_analyze(const char *s, size_t len, const char *extra_ro)
{
	SqlInfo info;

	memset(&info, 0xa5, sizeof(info));
	sql_analyze(s, len, "app.tenant_id", extra_ro, &info);
	FUZZ_ASSERT(info.n_statements >= 0);
	FUZZ_ASSERT(info.max_param >= 0);
	FUZZ_ASSERT(info.guard >= SQL_GUARD_OK && info.guard <= SQL_GUARD_AFTER_RESET);
	if (info.guard != SQL_GUARD_OK) {
		FUZZ_ASSERT(info.guard_offset < len);
		FUZZ_ASSERT(sql_guard_name(info.guard, "app.tenant_id") != NULL);
		FUZZ_ASSERT(!info.read_only);
	}
	if (info.flags & (SQLF_UNPARSED | SQLF_STATE_UNKNOWN | SQLF_SESSION_STATE))
		FUZZ_ASSERT(!info.read_only);

	/* the screen (sql_analyze's fast path) says what the full analysis says, or nothing */
	SqlInfo screened, full;
	SqlNorm n;
	memset(&screened, 0, sizeof(screened));
	memset(&full, 0, sizeof(full));
	sql_norm_init(&n, NULL, 0);
	sql_analyze_norm(s, len, "app.tenant_id", extra_ro, &full, &n); /* never screened */
	FUZZ_ASSERT(memcmp(&info, &full, sizeof(info)) == 0);
	if (sql_screen(s, len, &screened))
		FUZZ_ASSERT(memcmp(&screened, &full, sizeof(full)) == 0);
}

static void fuzz_normalize(const char *s, size_t len)
{
	char a[64 + 1], b[64 + 1];
	SqlNorm na, nb;
	SqlInfo info;

	a[64] = b[64] = 0x5a; /* a guard byte past the buffer handed out */
	sql_norm_init(&na, a, 64);
	sql_normalize(s, len, &na);
	FUZZ_ASSERT(na.len < 64 && memchr(a, 0, 64) != NULL && a[64] == 0x5a);
	sql_norm_init(&nb, b, 64);
	sql_analyze_norm(s, len, "app.tenant_id", NULL, &info, &nb);
	FUZZ_ASSERT(b[64] == 0x5a);
	FUZZ_ASSERT(na.hash == nb.hash && strcmp(a, b) == 0);
}

/*
 * The input up to its first '|' as a client's last plain SELECT, the rest as its next text:
 * when the shape kept from the first answers for the second, the full analysis agrees.
 */
static void fuzz_shape(const char *s, size_t len)
{
	const char *bar = memchr(s, '|', len);
	SqlShape sh;
	SqlInfo first, next, full;
	SqlNorm n;

	if (!bar)
		return;
	sh.len = 0;
	sql_analyze_shaped(s, (size_t)(bar - s), "app.tenant_id", NULL, &first, &sh);
	const char *t = bar + 1;
	size_t tl = len - (size_t)(t - s);
	SqlInfo answer;
	bool answered = sql_shape_answer(&sh, t, tl, "app.tenant_id", NULL, &answer);
	sql_norm_init(&n, NULL, 0);
	sql_analyze_norm(t, tl, "app.tenant_id", NULL, &full, &n);
	if (answered)
		FUZZ_ASSERT(sh.len > 0 && memcmp(&answer, &full, sizeof(full)) == 0);
	sql_analyze_shaped(t, tl, "app.tenant_id", NULL, &next, &sh);
	FUZZ_ASSERT(memcmp(&next, &full, sizeof(full)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* exact-size copy: the lexer takes (pointer, length) and must not look past the end */
	char *s = (char *)fuzz_dup(data, size);

	fuzz_tokens(s, size);
	fuzz_analyze(s, size, NULL);
	fuzz_analyze(s, size, "my_report, public.f2");
	fuzz_normalize(s, size);
	fuzz_shape(s, size);
	free(s);
	return 0;
}
