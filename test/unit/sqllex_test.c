/*
 * sqllex: token boundaries as PostgreSQL's scanner draws them, every guard
 * form and its look-alikes, the session/state flags, read routing (including
 * the cases other routers got wrong), and a micro-benchmark that only
 * prints. Every input is analyzed from an exact-size heap copy without a
 * terminating NUL, so valgrind reports any read past the end.
 */
#include "sqllex.h"
#include "unit.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TENANT_GUC "app.tenant_id"

/* A heap copy of the n bytes at p, exactly n long: reads past the end show under valgrind. */
static char *exact_bytes(const char *p, size_t n)
{
	char *copy = malloc(n ? n : 1);
	if (!copy)
		abort();
	memcpy(copy, p, n);
	return copy;
}

static char *exact_copy(const char *s, size_t *len)
{
	char *p;

	*len = strlen(s);
	p = malloc(*len ? *len : 1);
	if (!p)
		abort();
	memcpy(p, s, *len);
	return p;
}

static void analyze(const char *sql, const char *guc, const char *extra, SqlInfo *info)
{
	size_t len;
	char *copy = exact_copy(sql, &len);

	sql_analyze(copy, len, guc, extra, info);
	free(copy);
}

/* Tokens as "I:select N:1 ;" — a code per type, then the text where it matters. */
static void render_tokens(const char *sql, char *buf, size_t size)
{
	static const char *const code[] = {
	        [SQLTOK_EOF] = "EOF",  [SQLTOK_IDENT] = "I",  [SQLTOK_QIDENT] = "Q",
	        [SQLTOK_STRING] = "S", [SQLTOK_NUMBER] = "N", [SQLTOK_PARAM] = "P",
	        [SQLTOK_SEMI] = ";",   [SQLTOK_LPAREN] = "(", [SQLTOK_RPAREN] = ")",
	        [SQLTOK_COMMA] = ",",  [SQLTOK_DOT] = ".",    [SQLTOK_OP] = "O",
	        [SQLTOK_ERROR] = "X",
	};
	SqlLexer lx;
	SqlToken tok;
	size_t len, n = 0;
	char *copy = exact_copy(sql, &len);

	buf[0] = '\0';
	sqllex_init(&lx, copy, len);
	for (;;) {
		SqlTokType t = sqllex_next(&lx, &tok);
		const char *c;
		bool text;
		int w;
		if (t == SQLTOK_EOF)
			break;
		c = tok.escaped_string ? "E" : code[t];
		text = t == SQLTOK_IDENT || t == SQLTOK_QIDENT || t == SQLTOK_STRING ||
		       t == SQLTOK_NUMBER || t == SQLTOK_PARAM || t == SQLTOK_OP;
		w = snprintf(buf + n, size - n, "%s%s%s%.*s", n ? " " : "", c, text ? ":" : "",
		             text ? (int)tok.len : 0, tok.text);
		if (w < 0 || (size_t)w >= size - n)
			break;
		n += (size_t)w;
		if (t == SQLTOK_ERROR)
			break;
	}
	free(copy);
}

static const struct {
	const char *sql;
	const char *tokens;
} lex_cases[] = {
        {"SELECT 1", "I:SELECT N:1"},
        {"select\t\r\n\f\v1", "I:select N:1"},
        {"a.b, c;", "I:a . I:b , I:c ;"},
        {"'it''s'", "S:it''s"},
        {"''", "S:"},
        {"E'a\\'b'", "E:a\\'b"},
        {"e'\\\\' x", "E:\\\\ I:x"},
        {"E'x''y'", "E:x''y"},
        {"'a\\' b", "S:a\\ I:b"}, /* standard_conforming_strings: a backslash is a byte */
        {"U&'d\\0061t'", "S:d\\0061t"},
        {"U&\"a!0062\" UESCAPE '!' x", "Q:a!0062 I:x"},
        {"U&'a' /* c */ uescape '#', 1", "S:a , N:1"},
        {"U&'a' uescapes", "S:a I:uescapes"},
        {"u&\"d\\0061t\"", "Q:d\\0061t"},
        {"B'101' X'ff' n'x'", "S:101 S:ff S:x"},
        {"\"Quoted \"\"x\"\"\"", "Q:Quoted \"\"x\"\""},
        {"\"select\"", "Q:select"},
        {"$1 $23", "P:$1 P:$23"},
        {"$$a$b$$", "S:a$b"},
        {"$fn$ x $$ y $fn$", "S: x $$ y "},
        {"$a$x$b$y$a$", "S:x$b$y"},
        {"$_1$ q $_1$", "S: q "},
        {"x$$y", "I:x$$y"},
        {"$", "O:$"},
        {"$a b", "O:$ I:a I:b"},
        {"1.5e10 .5 1e 0x1F 1_000 3.", "N:1.5e10 N:.5 N:1 I:e N:0x1F N:1_000 N:3."},
        {"1..5", "N:1 . N:.5"}, /* as PostgreSQL: 1, '.', .5 */
        {"a::int", "I:a O::: I:int"},
        {"x<>y", "I:x O:<> I:y"},
        {"a*/*c*/b", "I:a O:* I:b"},
        {"a-- c\nb", "I:a I:b"},
        {"a/* x /* y */ z */b", "I:a I:b"},
        {"f(a, (b));", "I:f ( I:a , ( I:b ) ) ;"},
        {"date'2020-01-01'", "I:date S:2020-01-01"},
        {"caf\xc3\xa9 1", "I:caf\xc3\xa9 N:1"},
        {"arr[1:2]", "I:arr O:[ N:1 O:: N:2 O:]"},
        {"-- only a comment", ""},
        {"'unterminated", "X"},
        {"\"unterminated", "X"},
        {"/* unterminated /* */", "X"},
        {"$$ unterminated", "X"},
        {"$t$ unterminated $t", "X"},
        {"E'\\'", "X"},
        {"SELECT 1 'x", "I:SELECT N:1 X"},
};

static void test_lexer_draws_postgresql_token_boundaries(void)
{
	char buf[512];

	for (size_t i = 0; i < ARRAY_SIZE(lex_cases); i++) {
		render_tokens(lex_cases[i].sql, buf, sizeof(buf));
		CHECK_MSG(strcmp(buf, lex_cases[i].tokens) == 0,
		          "lex \"%s\": got \"%s\", want \"%s\"", lex_cases[i].sql, buf,
		          lex_cases[i].tokens);
	}
}

static void test_lexer_tracks_depth_offsets_and_sticky_errors(void)
{
	static const char sql[] = "((a)); b";
	static const int depth[] = {0, 1, 2, 2, 1, 0, 0};
	static const size_t offset[] = {0, 1, 2, 3, 4, 5, 7};
	SqlLexer lx;
	SqlToken tok;

	sqllex_init(&lx, sql, strlen(sql));
	for (size_t i = 0; i < ARRAY_SIZE(depth); i++) {
		sqllex_next(&lx, &tok);
		CHECK_MSG(tok.depth == depth[i] && tok.offset == offset[i],
		          "token %zu: depth %d offset %zu", i, tok.depth, tok.offset);
	}
	CHECK(sqllex_next(&lx, &tok) == SQLTOK_EOF);
	CHECK(sqllex_next(&lx, &tok) == SQLTOK_EOF);

	/* An unbalanced ')' does not take the depth below zero. */
	sqllex_init(&lx, ") (", 3);
	sqllex_next(&lx, &tok);
	sqllex_next(&lx, &tok);
	CHECK(tok.type == SQLTOK_LPAREN && tok.depth == 0);

	sqllex_init(&lx, "a 'b", 4);
	CHECK(sqllex_next(&lx, &tok) == SQLTOK_IDENT);
	CHECK(sqllex_next(&lx, &tok) == SQLTOK_ERROR && tok.offset == 2);
	CHECK(sqllex_next(&lx, &tok) == SQLTOK_ERROR);

	sqllex_init(&lx, NULL, 0);
	CHECK(sqllex_next(&lx, &tok) == SQLTOK_EOF);

	sqllex_init(&lx, "Select", 6);
	sqllex_next(&lx, &tok);
	CHECK(sqltok_is(&tok, "select"));
	CHECK(!sqltok_is(&tok, "sel"));
	sqllex_init(&lx, "\"select\"", 8);
	sqllex_next(&lx, &tok);
	CHECK(!sqltok_is(&tok, "select"));
}

#define ANY_OFFSET ((size_t)-1)

static const struct {
	const char *sql;
	SqlGuard guard;
	size_t offset;
} guard_cases[] = {
        /* SET / RESET search_path, every spelling */
        {"SET search_path TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"set search_path to default", SQL_GUARD_SEARCH_PATH, 0},
        {"SET search_path = 'a', public", SQL_GUARD_SEARCH_PATH, 0},
        {"SET SESSION search_path TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET LOCAL search_path TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET \"search_path\" TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET SeArCh_PaTh = x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET \"Search_Path\" TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"  SET/**/search_path=x", SQL_GUARD_SEARCH_PATH, 2},
        {"RESET search_path", SQL_GUARD_SEARCH_PATH, 0},
        {"reset SEARCH_PATH", SQL_GUARD_SEARCH_PATH, 0},
        {"SET SCHEMA 'x'", SQL_GUARD_SEARCH_PATH, 0},
        {"SET LOCAL SCHEMA 'x'", SQL_GUARD_SEARCH_PATH, 0},
        /* the tenant GUC */
        {"SET app.tenant_id = 'x'", SQL_GUARD_TENANT_GUC, 0},
        {"SET \"app\".\"tenant_id\" = 'x'", SQL_GUARD_TENANT_GUC, 0},
        {"SET \"app.tenant_id\" TO 'x'", SQL_GUARD_TENANT_GUC, 0},
        {"SET APP.Tenant_ID TO 'x'", SQL_GUARD_TENANT_GUC, 0},
        {"SET app . tenant_id = 1", SQL_GUARD_TENANT_GUC, 0},
        {"SET LOCAL app.tenant_id = '1'", SQL_GUARD_TENANT_GUC, 0},
        {"SET SESSION app.tenant_id = '1'", SQL_GUARD_TENANT_GUC, 0},
        {"RESET app.tenant_id", SQL_GUARD_TENANT_GUC, 0},
        /* role and session authorization */
        {"SET ROLE admin", SQL_GUARD_ROLE, 0},
        {"SET LOCAL ROLE admin", SQL_GUARD_ROLE, 0},
        {"SET SESSION ROLE admin", SQL_GUARD_ROLE, 0},
        {"set role none", SQL_GUARD_ROLE, 0},
        {"SET \"role\" = 'x'", SQL_GUARD_ROLE, 0},
        {"RESET ROLE", SQL_GUARD_ROLE, 0},
        {"SET SESSION AUTHORIZATION bob", SQL_GUARD_SESSION_AUTH, 0},
        {"SET SESSION SESSION AUTHORIZATION bob", SQL_GUARD_SESSION_AUTH, 0},
        {"SET LOCAL SESSION AUTHORIZATION DEFAULT", SQL_GUARD_SESSION_AUTH, 0},
        {"RESET SESSION AUTHORIZATION", SQL_GUARD_SESSION_AUTH, 0},
        {"SET session_authorization = 'bob'", SQL_GUARD_SESSION_AUTH, 0},
        /* set_config anywhere */
        {"select set_config('search_path','x',false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT pg_catalog.set_config('APP.TENANT_ID', 'b', true)", SQL_GUARD_TENANT_GUC, 0},
        {"SELECT \"set_config\"('search_path', 'x', true)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT \"pg_catalog\".set_config('search_path', 'x', true)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT SET_CONFIG('role', 'x', false)", SQL_GUARD_ROLE, 0},
        {"SELECT set_config('session_authorization', 'x', false)", SQL_GUARD_SESSION_AUTH, 0},
        {"SELECT set_config('search_path'::text, 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config($$search_path$$, 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config(E'search_path', 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config /* c */ ('Search_Path', 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config((('search_path'::text))::pg_catalog.text, 'x', false)",
         SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT * FROM t, LATERAL set_config('search_path', t.s, false)", SQL_GUARD_SEARCH_PATH,
         0},
        {"WITH c AS (SELECT set_config('search_path', 'x', false)) SELECT * FROM c",
         SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT * FROM t WHERE a IN (SELECT set_config('app.tenant_id','2',false))",
         SQL_GUARD_TENANT_GUC, 0},
        {"SELECT 1, (SELECT lower(set_config('search_path', 'x', true)))", SQL_GUARD_SEARCH_PATH,
         0},
        {"COPY (SELECT set_config('search_path','x',false)) TO STDOUT", SQL_GUARD_SEARCH_PATH, 0},
        {"PREPARE p AS SELECT set_config('search_path', $1, false)", SQL_GUARD_SEARCH_PATH, 0},
        {"UPDATE t SET a = set_config('app.tenant_id', '9', false)", SQL_GUARD_TENANT_GUC, 0},
        /* Unicode-escaped names and strings (U&, UESCAPE) and E'' escapes decode first */
        {"SET U&\"search\\005fpath\" = 'x'", SQL_GUARD_SEARCH_PATH, 0},
        {"SET u&\"\\0073earch_path\" TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET U&\"search\\005Fpath\" TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET U&\"search\\+00005fpath\" TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET U&\"search_path\" TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET U&\"SEARCH\\005FPATH\" TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET U&\"search!005fpath\" UESCAPE '!' TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET U&\"search!005fpath\"/* c */uescape--x\n'!' TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET U&\"search!!005fpath\" UESCAPE '!' TO x", SQL_GUARD_OK, 0},
        {"SET U&\"search\\\\005fpath\" TO x", SQL_GUARD_OK, 0},
        {"SET U&\"search!005fpath\" UESCAPE E'\\041' TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"SET LOCAL U&\"search\\005fpath\" TO x", SQL_GUARD_SEARCH_PATH, 0},
        {"RESET U&\"search\\005fpath\"", SQL_GUARD_SEARCH_PATH, 0},
        {"SET app.U&\"tenant\\005fid\" = '1'", SQL_GUARD_TENANT_GUC, 0},
        {"SET U&\"app\".tenant_id = '1'", SQL_GUARD_TENANT_GUC, 0},
        {"SET U&\"app\\002etenant\\005fid\" = '1'", SQL_GUARD_TENANT_GUC, 0},
        {"SET U&\"\\0072\\006f\\006c\\0065\" = 'x'", SQL_GUARD_ROLE, 0},
        {"SET SESSION U&\"ro\\+00006Ce\" = 'x'", SQL_GUARD_ROLE, 0},
        {"SET U&\"session\\005fauthorization\" = 'bob'", SQL_GUARD_SESSION_AUTH, 0},
        {"RESET U&\"session#005fauthorization\" UESCAPE '#'", SQL_GUARD_SESSION_AUTH, 0},
        {"SELECT U&\"set\\005fconfig\"('search_path', 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT U&\"set!005fconfig\" UESCAPE '!' ('search_path', 'x', false)",
         SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT pg_catalog.U&\"set\\005fconfig\"('role', 'x', false)", SQL_GUARD_ROLE, 0},
        {"SELECT U&\"pg\\005fcatalog\".\"set_config\"('role', 'x', false)", SQL_GUARD_ROLE, 0},
        {"SELECT set_config(U&'search\\005fpath', 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config(u&'search!005fpath' UESCAPE '!', 'x', false)", SQL_GUARD_SEARCH_PATH,
         0},
        {"SELECT set_config(U&'search\\+00005fpath'::text, 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config(U&'app\\002etenant\\005fid', 'x', false)", SQL_GUARD_TENANT_GUC, 0},
        {"SELECT set_config(E'search\\137path', 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config(E'search\\x5fpath', 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config(E'\\u0073earch_path', 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config(E'\\U00000073earch_path', 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config(e'R\\157le', 'x', false)", SQL_GUARD_ROLE, 0},
        {"SELECT set_config(E'search\\_path', 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config(E'search''_path', 'x', false)", SQL_GUARD_OK, 0},
        {"SELECT set_config(N'search_path', 'x', false)", SQL_GUARD_SEARCH_PATH, 0},
        {"SELECT set_config($t$role$t$, 'x', false)", SQL_GUARD_ROLE, 0},
        {"SELECT U&\"\\D83D\\DE00\"(1)", SQL_GUARD_OK, 0},
        /* later statements of a batch, with the refused statement's offset */
        {"SELECT 1; SET search_path TO x", SQL_GUARD_SEARCH_PATH, 10},
        {"SELECT 1;\n  /* c */ SET ROLE r", SQL_GUARD_ROLE, 20},
        {"SET TIME ZONE 'UTC'; RESET ROLE; SET search_path TO x", SQL_GUARD_ROLE, 21},
        {"SELECT ';'; SELECT set_config('search_path', 'x', false)", SQL_GUARD_SEARCH_PATH, 12},
        {"BEGIN; SELECT 1; SET LOCAL app.tenant_id = 7; COMMIT", SQL_GUARD_TENANT_GUC, 17},
        /* look-alikes that are not refused */
        {"SELECT 'SET search_path TO x'", SQL_GUARD_OK, 0},
        {"-- SET search_path TO x\nSELECT 1", SQL_GUARD_OK, 0},
        {"/* SET search_path TO x */ SELECT 1", SQL_GUARD_OK, 0},
        {"/* nested /* SET search_path */ still comment; SET ROLE x */ SELECT 1", SQL_GUARD_OK, 0},
        {"SELECT $$ set search_path $$", SQL_GUARD_OK, 0},
        {"SELECT $fn$ SET ROLE admin; $fn$", SQL_GUARD_OK, 0},
        {"SELECT E'\\' ; SET search_path TO x'", SQL_GUARD_OK, 0},
        {"SELECT E'it\\'s; SET ROLE x'", SQL_GUARD_OK, 0},
        {"SELECT \"set search_path\" FROM t", SQL_GUARD_OK, 0},
        {"SELECT search_path FROM settings", SQL_GUARD_OK, 0},
        {"SELECT 'a' AS \"search_path\"", SQL_GUARD_OK, 0},
        {"SELECT 'set_config(''search_path'', ''x'', false)'", SQL_GUARD_OK, 0},
        {"SELECT set_config FROM t", SQL_GUARD_OK, 0},
        {"SET TIME ZONE 'UTC'", SQL_GUARD_OK, 0},
        {"SHOW search_path", SQL_GUARD_OK, 0},
        {"SELECT current_setting('search_path')", SQL_GUARD_OK, 0},
        {"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", SQL_GUARD_OK, 0},
        {"SET CONSTRAINTS ALL DEFERRED", SQL_GUARD_OK, 0},
        {"ALTER ROLE bob SET search_path = x", SQL_GUARD_OK, 0},
        {"ALTER DATABASE d SET search_path TO x", SQL_GUARD_OK, 0},
        {"CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = pg_catalog "
         "AS $$ SELECT 1 $$",
         SQL_GUARD_OK, 0},
        {"SELECT set_config('statement_timeout', '5s', true)", SQL_GUARD_OK, 0},
        {"SET app.other = 1", SQL_GUARD_OK, 0},
        {"SET app.tenant_idx = 1", SQL_GUARD_OK, 0},
        {"SET search_path_x.y = 1", SQL_GUARD_OK, 0},
        {"DISCARD ALL", SQL_GUARD_OK, 0},
        {"RESET ALL; select * from orders", SQL_GUARD_AFTER_RESET, 11},
        {"select 1; reset all", SQL_GUARD_OK, 0},
        {"reset all;;  ", SQL_GUARD_OK, 0},
        {"RESET ALL", SQL_GUARD_OK, 0},
        {"DO $$ BEGIN PERFORM set_config('search_path', 'x', false); END $$", SQL_GUARD_OK, 0},
};

static void test_guard_refuses_every_form_and_no_look_alike(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(guard_cases); i++) {
		SqlInfo info;
		analyze(guard_cases[i].sql, TENANT_GUC, NULL, &info);
		CHECK_MSG(info.guard == guard_cases[i].guard, "guard \"%s\": got %s, want %s",
		          guard_cases[i].sql, sql_guard_name(info.guard, TENANT_GUC),
		          sql_guard_name(guard_cases[i].guard, TENANT_GUC));
		if (guard_cases[i].guard != SQL_GUARD_OK && guard_cases[i].offset != ANY_OFFSET)
			CHECK_MSG(info.guard_offset == guard_cases[i].offset,
			          "guard offset \"%s\": got %zu, want %zu", guard_cases[i].sql,
			          info.guard_offset, guard_cases[i].offset);
		if (info.guard != SQL_GUARD_OK)
			CHECK_MSG(!info.read_only, "refused \"%s\" must not be read-only",
			          guard_cases[i].sql);
	}
}

static void test_guard_without_tenant_guc_and_names(void)
{
	SqlInfo info;

	analyze("SET app.tenant_id = 1", NULL, NULL, &info);
	CHECK(info.guard == SQL_GUARD_OK && (info.flags & SQLF_SESSION_STATE));
	analyze("SET app.tenant_id = 1", "", NULL, &info);
	CHECK(info.guard == SQL_GUARD_OK);
	analyze("SET myapp.tenant = 1", "MyApp.Tenant", NULL, &info);
	CHECK(info.guard == SQL_GUARD_TENANT_GUC);

	CHECK_STREQ(sql_guard_name(SQL_GUARD_SEARCH_PATH, TENANT_GUC), "search_path");
	CHECK_STREQ(sql_guard_name(SQL_GUARD_TENANT_GUC, TENANT_GUC), TENANT_GUC);
	CHECK_STREQ(sql_guard_name(SQL_GUARD_TENANT_GUC, NULL), "tenant_guc");
	CHECK_STREQ(sql_guard_name(SQL_GUARD_ROLE, NULL), "role");
	CHECK_STREQ(sql_guard_name(SQL_GUARD_SESSION_AUTH, NULL), "session_authorization");
}

static const struct {
	const char *sql;
	unsigned want; /* all of these */
	unsigned deny; /* none of these */
} flag_cases[] = {
        /* the state may have changed in ways the lexer cannot follow */
        {"DO $$ BEGIN PERFORM set_config('search_path','x',false); END $$", SQLF_STATE_UNKNOWN, 0},
        {"CALL p()", SQLF_STATE_UNKNOWN, 0},
        {"LOAD 'auto_explain'", SQLF_STATE_UNKNOWN, 0},
        {"SELECT set_config(name, 'x', false) FROM t", SQLF_STATE_UNKNOWN, 0},
        {"SELECT set_config($1, $2, false)", SQLF_STATE_UNKNOWN, 0},
        {"SELECT set_config('search_' || 'path', 'x', false)", SQLF_STATE_UNKNOWN, 0},
        {"SELECT set_config('search_'\n'path', 'x', false)", SQLF_STATE_UNKNOWN, 0},
        /* spellings whose value the lexer cannot be sure of */
        {"SET U&\"search\\zzzzpath\" = 'x'", SQLF_STATE_UNKNOWN, 0},
        {"SET U&\"search\\d800path\" = 'x'", SQLF_STATE_UNKNOWN, 0},
        {"SET U&\"search!005fpath\" UESCAPE 'ab' TO x", SQLF_STATE_UNKNOWN, 0},
        {"SET U&\"search+005fpath\" UESCAPE '+' TO x", SQLF_STATE_UNKNOWN, 0},
        {"SET U&\"search!005fpath\" UESCAPE x", SQLF_STATE_UNKNOWN, 0},
        {"RESET app.U&\"tenant\\id\"", SQLF_STATE_UNKNOWN, 0},
        {"SELECT U&\"set\\zconfig\"('search_path', 'x', false)", SQLF_STATE_UNKNOWN, 0},
        {"SELECT U&\"set!005fconfig\" UESCAPE '0' ('search_path', 'x', false)", SQLF_STATE_UNKNOWN,
         0},
        {"SELECT set_config(U&'search\\zzzzpath', 'x', false)", SQLF_STATE_UNKNOWN, 0},
        {"SELECT set_config(B'1', 'x', false)", SQLF_STATE_UNKNOWN, 0},
        /* standard_conforming_strings off would read these otherwise */
        {"SELECT set_config('search\\137path', 'x', false)", SQLF_STATE_UNKNOWN, 0},
        {"SELECT set_config(N'search\\137path', 'x', false)", SQLF_STATE_UNKNOWN, 0},
        {"SELECT 'a\\'', set_config('search_path', 'x', false) --'", SQLF_STATE_UNKNOWN, 0},
        {"SELECT 'C:\\'", SQLF_STATE_UNKNOWN, 0},
        {"SELECT 'a\\\\b', 'c:\\d'", 0, SQLF_STATE_UNKNOWN},
        {"SELECT E'a\\''", 0, SQLF_STATE_UNKNOWN},
        /* names spelled with escapes are still what they name */
        {"UPDATE U&\"pg\\005fsettings\" SET setting = 'x'", SQLF_STATE_UNKNOWN, 0},
        {"SELECT U&\"pg\\005fadvisory\\005flock\"(1)", SQLF_SESSION_STATE, 0},
        {"CREATE TABLE U&\"pg\\005ftemp\".t (a int)", SQLF_SESSION_STATE, 0},
        {"SELECT 1 INTO U&\"pg_temp\".t", SQLF_SESSION_STATE, 0},
        {"SET U&\"statement\\005ftimeout\" = 0", SQLF_SESSION_STATE, SQLF_STATE_UNKNOWN},
        {"SELECT set_config(U&'work\\005fmem', '1MB', U&'\\0074rue')", 0,
         SQLF_SESSION_STATE | SQLF_STATE_UNKNOWN},
        {"SELECT set_config((('search_path'), 'x'), 'y', false)", SQLF_STATE_UNKNOWN, 0},
        {"SELECT set_config(VARIADIC ARRAY['search_path', 'x', 'false'])", SQLF_STATE_UNKNOWN, 0},
        {"SELECT set_config(setting_name => 'search_path', new_value => 'x', is_local => false)",
         SQLF_STATE_UNKNOWN, 0},
        {"UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'", SQLF_STATE_UNKNOWN, 0},
        {"update pg_catalog.pg_settings set setting = 'x'", SQLF_STATE_UNKNOWN, 0},
        {"WITH u AS (UPDATE ONLY pg_settings SET setting = 'x' RETURNING 1) SELECT * FROM u",
         SQLF_STATE_UNKNOWN, 0},
        {"INSERT INTO pg_settings (name) VALUES ('x')", SQLF_STATE_UNKNOWN, 0},
        {"DELETE FROM \"pg_settings\"", SQLF_STATE_UNKNOWN, 0},
        {"UPDATE settings SET v = 1", 0, SQLF_STATE_UNKNOWN},
        {"SELECT * FROM pg_settings", 0, SQLF_STATE_UNKNOWN},
        {"VACCUM t", SQLF_STATE_UNKNOWN, 0},
        {"FOO BAR", SQLF_STATE_UNKNOWN, 0},
        {"1", SQLF_STATE_UNKNOWN, 0},
        {"\"SELECT\" 1", SQLF_STATE_UNKNOWN, 0},
        {"(UPDATE t SET a = 1)", SQLF_STATE_UNKNOWN, 0},
        {"SELECT 1", 0, SQLF_STATE_UNKNOWN | SQLF_SESSION_STATE | SQLF_TX_CONTROL | SQLF_SHOW},
        {"ALTER TABLE t ADD COLUMN c int", 0, SQLF_STATE_UNKNOWN | SQLF_SESSION_STATE},
        {"EXECUTE p(1)", 0, SQLF_STATE_UNKNOWN},
        /* resets */
        {"DISCARD ALL", SQLF_RESETS_STATE, SQLF_STATE_UNKNOWN},
        {"RESET ALL", SQLF_RESETS_STATE, SQLF_SESSION_STATE},
        {"discard plans", 0, SQLF_RESETS_STATE | SQLF_DEALLOCATE_ALL},
        {"DISCARD ALL", SQLF_DEALLOCATE_ALL, SQLF_DEALLOCATE},
        {"deallocate all", SQLF_DEALLOCATE_ALL, SQLF_DEALLOCATE},
        {"DEALLOCATE PREPARE ALL", SQLF_DEALLOCATE_ALL, 0},
        {"deallocate s1", SQLF_DEALLOCATE, SQLF_DEALLOCATE_ALL},
        {"select 1; deallocate prepare \"S1\"", SQLF_DEALLOCATE, SQLF_DEALLOCATE_ALL},
        {"select 'deallocate all'", 0, SQLF_DEALLOCATE | SQLF_DEALLOCATE_ALL},
        /* session state */
        {"CREATE TEMP TABLE t (a int)", SQLF_SESSION_STATE, 0},
        {"CREATE TEMPORARY TABLE t AS SELECT 1", SQLF_SESSION_STATE, 0},
        {"CREATE GLOBAL TEMPORARY TABLE t (a int)", SQLF_SESSION_STATE, 0},
        {"CREATE LOCAL TEMP VIEW v AS SELECT 1", SQLF_SESSION_STATE, 0},
        {"create temp sequence s", SQLF_SESSION_STATE, 0},
        {"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", SQLF_SESSION_STATE, 0},
        {"CREATE TABLE pg_temp.t (a int)", SQLF_SESSION_STATE, 0},
        {"CREATE TABLE t (temp int)", 0, SQLF_SESSION_STATE},
        {"CREATE TABLE temp (a int)", 0, SQLF_SESSION_STATE},
        {"SELECT * INTO TEMP t FROM x", SQLF_SESSION_STATE, 0},
        {"SELECT 1 INTO LOCAL TEMPORARY TABLE t", SQLF_SESSION_STATE, 0},
        {"SELECT 1 INTO t", 0, SQLF_SESSION_STATE},
        {"INSERT INTO temp VALUES (1)", 0, SQLF_SESSION_STATE},
        {"DECLARE c CURSOR WITH HOLD FOR SELECT 1", SQLF_SESSION_STATE, 0},
        {"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", 0, SQLF_SESSION_STATE},
        {"DECLARE c CURSOR FOR WITH x AS (SELECT 1) SELECT * FROM x", 0, SQLF_SESSION_STATE},
        {"PREPARE p AS SELECT 1", SQLF_SESSION_STATE, SQLF_TX_CONTROL},
        {"PREPARE p (int) AS SELECT $1", SQLF_SESSION_STATE, 0},
        {"PREPARE TRANSACTION 'x'", SQLF_TX_CONTROL, SQLF_SESSION_STATE},
        {"LISTEN ch", SQLF_SESSION_STATE, 0},
        {"UNLISTEN ch", 0, SQLF_SESSION_STATE},
        {"SELECT pg_advisory_lock(1)", SQLF_SESSION_STATE, 0},
        {"SELECT pg_try_advisory_lock(1)", SQLF_SESSION_STATE, 0},
        {"SELECT PG_ADVISORY_LOCK_SHARED(1)", SQLF_SESSION_STATE, 0},
        {"SELECT pg_catalog.pg_try_advisory_lock_shared(1, 2)", SQLF_SESSION_STATE, 0},
        {"SELECT x FROM t WHERE pg_try_advisory_lock(t.id)", SQLF_SESSION_STATE, 0},
        {"SELECT pg_advisory_xact_lock(1)", 0, SQLF_SESSION_STATE},
        {"SELECT pg_try_advisory_xact_lock_shared(1)", 0, SQLF_SESSION_STATE},
        {"SELECT pg_advisory_unlock(1)", 0, SQLF_SESSION_STATE},
        {"SET statement_timeout = 0", SQLF_SESSION_STATE, 0},
        {"SET SESSION statement_timeout = 0", SQLF_SESSION_STATE, 0},
        {"SET LOCAL statement_timeout = 0", 0, SQLF_SESSION_STATE},
        {"SET TIME ZONE 'UTC'", SQLF_SESSION_STATE, 0},
        {"SET LOCAL TIME ZONE 'UTC'", 0, SQLF_SESSION_STATE},
        {"SET NAMES 'UTF8'", SQLF_SESSION_STATE, 0},
        {"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", SQLF_SESSION_STATE,
         SQLF_READ_ONLY_TX},
        {"SELECT set_config('statement_timeout', '1s', false)", SQLF_SESSION_STATE, 0},
        {"SELECT set_config('statement_timeout', '1s', true)", 0, SQLF_SESSION_STATE},
        {"SELECT set_config('statement_timeout', '1s', 'on')", 0, SQLF_SESSION_STATE},
        {"SELECT set_config('statement_timeout', '1s', TRUE::bool)", 0, SQLF_SESSION_STATE},
        {"SELECT set_config('statement_timeout', '1s', $1)", SQLF_SESSION_STATE, 0},
        {"SELECT set_config('work_mem', format('%sMB', (1)), is_local) FROM t", SQLF_SESSION_STATE,
         0},
        {"RESET statement_timeout", SQLF_SESSION_STATE, 0},
        {"RESET TIME ZONE", SQLF_SESSION_STATE, 0},
        {"RESET TRANSACTION ISOLATION LEVEL", 0, SQLF_SESSION_STATE},
        /* the lexer could not finish */
        {"SELECT 'unterminated", SQLF_UNPARSED, 0},
        {"SELECT \"unterminated", SQLF_UNPARSED, 0},
        {"SELECT 1 /* unterminated", SQLF_UNPARSED, 0},
        {"SELECT $$ never", SQLF_UNPARSED, 0},
        {"SELECT E'\\'", SQLF_UNPARSED, 0},
        {"SELECT 1; SELECT 'x", SQLF_UNPARSED, 0},
        {"SELECT 'it''s'", 0, SQLF_UNPARSED},
        /* transaction control */
        {"BEGIN", SQLF_TX_CONTROL, SQLF_READ_ONLY_TX},
        {"begin work", SQLF_TX_CONTROL, 0},
        {"START TRANSACTION", SQLF_TX_CONTROL, SQLF_READ_ONLY_TX},
        {"COMMIT", SQLF_TX_CONTROL, 0},
        {"END", SQLF_TX_CONTROL, 0},
        {"ROLLBACK", SQLF_TX_CONTROL, 0},
        {"ABORT", SQLF_TX_CONTROL, 0},
        {"SAVEPOINT a", SQLF_TX_CONTROL, 0},
        {"RELEASE SAVEPOINT a", SQLF_TX_CONTROL, 0},
        {"ROLLBACK TO SAVEPOINT a", SQLF_TX_CONTROL, 0},
        {"COMMIT PREPARED 'x'", SQLF_TX_CONTROL, 0},
        {"ROLLBACK PREPARED 'x'", SQLF_TX_CONTROL, 0},
        {"BEGIN READ ONLY", SQLF_TX_CONTROL | SQLF_READ_ONLY_TX, SQLF_SERIALIZABLE},
        {"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", SQLF_READ_ONLY_TX, 0},
        {"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", SQLF_READ_ONLY_TX, 0},
        {"start transaction read only", SQLF_TX_CONTROL | SQLF_READ_ONLY_TX, 0},
        {"SET TRANSACTION READ ONLY", SQLF_READ_ONLY_TX, SQLF_TX_CONTROL | SQLF_SESSION_STATE},
        {"BEGIN READ WRITE", SQLF_TX_CONTROL, SQLF_READ_ONLY_TX},
        {"BEGIN ISOLATION LEVEL REPEATABLE READ", 0, SQLF_READ_ONLY_TX | SQLF_SERIALIZABLE},
        {"SELECT * FROM ONLY t", 0, SQLF_READ_ONLY_TX},
        {"BEGIN ISOLATION LEVEL SERIALIZABLE", SQLF_SERIALIZABLE | SQLF_TX_CONTROL, 0},
        {"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", SQLF_SERIALIZABLE, SQLF_SESSION_STATE},
        {"SET default_transaction_isolation = 'serializable'",
         SQLF_SERIALIZABLE | SQLF_SESSION_STATE, 0},
        {"SET default_transaction_isolation TO SERIALIZABLE", SQLF_SERIALIZABLE, 0},
        {"SET default_transaction_isolation = 'read committed'", 0, SQLF_SERIALIZABLE},
        {"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
         SQLF_SERIALIZABLE | SQLF_SESSION_STATE, 0},
        {"SELECT 'serializable'", 0, SQLF_SERIALIZABLE},
        {"SHOW search_path", SQLF_SHOW, 0},
        {"show all", SQLF_SHOW, 0},
        {"SELECT 'show'", 0, SQLF_SHOW},
        /* a SQL-standard function body: its ';' and END belong to CREATE */
        {"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
         "SELECT CASE WHEN true THEN 1 END; END; COMMIT",
         SQLF_TX_CONTROL, 0},
        {"CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END", 0,
         SQLF_TX_CONTROL},
};

static void test_flags_mark_state_session_and_transactions(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(flag_cases); i++) {
		SqlInfo info;
		analyze(flag_cases[i].sql, TENANT_GUC, NULL, &info);
		CHECK_MSG((info.flags & flag_cases[i].want) == flag_cases[i].want &&
		                  (info.flags & flag_cases[i].deny) == 0,
		          "flags \"%s\": got 0x%04x, want 0x%04x, deny 0x%04x", flag_cases[i].sql,
		          info.flags, flag_cases[i].want, flag_cases[i].deny);
		CHECK_MSG(info.guard == SQL_GUARD_OK, "no guard expected for \"%s\"",
		          flag_cases[i].sql);
	}
}

static const struct {
	const char *sql;
	const char *extra; /* read_only_functions */
	bool ro;
} route_cases[] = {
        /* read-only for certain */
        {"SELECT 1", NULL, true},
        {"select abalance from pgbench_accounts where aid = $1", NULL, true},
        {"SELECT * FROM t WHERE x = 'for update'", NULL, true},
        {"select \"for\" from t", NULL, true},
        {"SELECT \"update\", \"delete\" FROM t", NULL, true},
        {"SELECT a::numeric(10,2) FROM t", NULL, true},
        {"SELECT a::pg_catalog.numeric(10, 2), b::timestamptz(3) FROM t", NULL, true},
        {"SELECT CAST(a AS varchar(20)), x::character varying(10), y::bit varying(3) FROM t", NULL,
         true},
        {"SELECT timestamp(3) '2020-01-01', interval(2) '1 s', decimal(5) '1'", NULL, true},
        {"SELECT count(*), sum(x), avg(x), min(x), max(x) FROM t GROUP BY y", NULL, true},
        {"WITH c AS (SELECT 1) SELECT * FROM c", NULL, true},
        {"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
         "SELECT * FROM r",
         NULL, true},
        {"WITH a(x) AS (SELECT 1), \"B\"(y) AS NOT MATERIALIZED (SELECT 2) SELECT * FROM a, "
         "\"B\"",
         NULL, true},
        {"TABLE t", NULL, true},
        {"VALUES (1), (2)", NULL, true},
        {"EXPLAIN SELECT * FROM t", NULL, true},
        {"EXPLAIN VERBOSE SELECT 1", NULL, true},
        {"EXPLAIN (COSTS off, FORMAT json) SELECT 1", NULL, true},
        {"/* pgtenant:replica */ SELECT 1", NULL, true},
        {"SELECT now(), current_timestamp, lower(name), coalesce(a, b), nullif(a, 0) FROM t", NULL,
         true},
        {"SELECT * FROM generate_series(1, 10) AS g(i)", NULL, true},
        {"SELECT * FROM generate_series(1, 10) g(i)", NULL, true},
        {"SELECT * FROM (SELECT 1, 2) AS s(a, b)", NULL, true},
        {"SELECT * FROM t WHERE id IN (1, 2, 3) AND EXISTS (SELECT 1 FROM u)", NULL, true},
        {"SELECT x FROM t ORDER BY (x) LIMIT 10 OFFSET 5", NULL, true},
        {"SELECT 1; SELECT 2;", NULL, true},
        {"SELECT pg_catalog.lower('A')", NULL, true},
        {"SELECT myfunc(1)", "myfunc", true},
        {"SELECT MyFunc(1), other(2)", " other , myfunc ", true},
        {"SELECT app.myfunc(1)", "app.myfunc", true},
        {"SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", NULL, true},
        {"SELECT count(*) FILTER (WHERE a > 1) FROM t", NULL, true},
        {"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM t", NULL, true},
        {"SELECT $$ UPDATE t SET a = 1 $$", NULL, true},
        {"SELECT $f$ nextval('s') $f$, 'x' -- UPDATE t\n", NULL, true},
        {"SELECT /* nextval('s') FOR UPDATE */ 1", NULL, true},
        {"(SELECT 1) UNION (SELECT 2)", NULL, true},
        {"SELECT * FROM t WHERE a LIKE ('a%') OR a IS DISTINCT FROM (b)", NULL, true},
        {"SELECT date_trunc('day', ts), to_char(ts, 'YYYY'), extract(epoch FROM ts) FROM t", NULL,
         true},
        {"SELECT substring('abc' FROM 1 FOR 2), trim(both ' ' FROM x), position('a' IN x) "
         "FROM t",
         NULL, true},
        {"SELECT x FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (1)", NULL, true},
        {"SELECT ARRAY(SELECT 1), ROW(1, 2)", NULL, true},
        {"SELECT jsonb_build_object('a', 1) -> 'a', json_agg(t) FROM t", NULL, true},
        {"BEGIN READ ONLY", NULL, true},
        {"SELECT pg_sleep(0.1)", NULL, true},
        {"SELECT 1 FROM t WHERE a = ANY($1) AND b = ALL (ARRAY[1])", NULL, true},
        {"SELECT 1 FROM t1 LEFT JOIN t2 USING (id) JOIN (SELECT 1 AS id) s ON (s.id = t1.id)", NULL,
         true},
        {"WITH t AS MATERIALIZED (SELECT 1) SELECT * FROM t", NULL, true},
        {"SELECT * FROM unnest(ARRAY[1, 2]) WITH ORDINALITY AS u(x, n)", NULL, true},
        {"SELECT left('abc', 2), right('abc', 1)", NULL, true},
        {"SELECT share, \"key\" FROM t WHERE share > 1", NULL, true},
        {"SELECT * FROM t GROUP BY GROUPING SETS ((a), (b))", NULL, true},
        {"select 1 ; ; ", NULL, true},
        {"SELECT COUNT(*) FROM t WHERE created_at AT TIME ZONE 'UTC' > now() - interval '1 day'",
         NULL, true},
        {"SELECT * FROM t1 JOIN (SELECT 1 AS a) s USING (a)", NULL, true},
        {"SELECT * FROM t1 x CROSS JOIN (VALUES (1)) v(y)", NULL, true},
        {"SELECT * FROM t1 LEFT JOIN (t2 JOIN t3 ON true) ON true", NULL, true},
        {"SELECT * FROM \"T\" NATURAL JOIN (SELECT 1) s", NULL, true},
        {"SELECT interval '1 day 12:00' DAY TO SECOND(3)", NULL, true},
        {"SELECT 1 FROM t WHERE a LIKE ('a%') AND b NOT ILIKE ('b')", NULL, true},
        {"SELECT (1, 2) OVERLAPS (3, 4)", NULL, true},
        {"SELECT ts AT TIME ZONE ('UTC') FROM t", NULL, true},
        {"SELECT count(*) OVER (ORDER BY (a)) FROM t GROUP BY (b)", NULL, true},
        {"SELECT * FROM t ORDER BY a FETCH FIRST 10 ROWS ONLY", NULL, true},
        {"SELECT * FROM t FOR READ ONLY", NULL, true},
        /* not read-only: writes, locks, session-bound functions, unknowns */
        {"SELECT second(ts) FROM t", NULL, false},
        {"SELECT join(ARRAY['a'], ',')", NULL, false},
        {"SELECT 1 FROM t, join(1)", NULL, false},
        {"SELECT by(1), filter(2)", NULL, false},
        {"SELECT 1 FROM t WHERE a LIKE my_fn('x')", NULL, false},
        {"SELECT 1 FROM t WHERE NOT materialized(a)", NULL, false},
        {"WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u", NULL, false},
        {"WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d", NULL, false},
        {"WITH x AS (SELECT 1), i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM i",
         NULL, false},
        {"WITH m AS (MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE) SELECT 1", NULL, false},
        {"SELECT * FROM t FOR UPDATE", NULL, false},
        {"SELECT * FROM t FOR NO KEY UPDATE", NULL, false},
        {"SELECT * FROM t FOR SHARE", NULL, false},
        {"SELECT * FROM (SELECT * FROM t FOR KEY SHARE) s", NULL, false},
        {"SELECT * FROM t WHERE id = $1 FOR UPDATE SKIP LOCKED", NULL, false},
        {"SELECT * INTO new_t FROM t", NULL, false},
        {"WITH c AS (SELECT 1) SELECT * INTO new_t FROM c", NULL, false},
        {"COPY t TO STDOUT", NULL, false},
        {"COPY (SELECT 1) TO STDOUT", NULL, false},
        {"SELECT nextval('s')", NULL, false},
        {"SELECT setval('s', 1)", NULL, false},
        {"SELECT currval('s')", NULL, false},
        {"SELECT lastval()", NULL, false},
        {"SELECT pg_catalog.nextval('s')", NULL, false},
        {"SELECT \"nextval\"('s')", NULL, false},
        {"VALUES (nextval('s'))", NULL, false},
        {"SELECT pg_advisory_lock(1)", NULL, false},
        {"SELECT pg_advisory_xact_lock(1)", NULL, false},
        {"SELECT my_func(1)", NULL, false},
        {"SELECT my_func(1)", "other_func", false},
        {"SELECT app.myfunc(1)", "other.myfunc", false},
        {"SELECT public.lower('a')", NULL, false},
        {"SELECT \"Lower\"('a')", NULL, false},
        {"EXPLAIN ANALYZE SELECT 1", NULL, false},
        {"EXPLAIN ANALYSE VERBOSE SELECT 1", NULL, false},
        {"EXPLAIN (ANALYZE, BUFFERS) SELECT 1", NULL, false},
        {"EXPLAIN (FORMAT json, ANALYZE true) SELECT 1", NULL, false},
        {"EXPLAIN UPDATE t SET a = 1", NULL, false},
        {"EXPLAIN SELECT nextval('s')", NULL, false},
        {"SELECT 1; UPDATE t SET a=1", NULL, false},
        {"select 1; select 2 for update", NULL, false},
        {"TABLE t; DELETE FROM t", NULL, false},
        {"UPDATE t SET a = 1", NULL, false},
        {"INSERT INTO t VALUES (1)", NULL, false},
        {"DELETE FROM t", NULL, false},
        {"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", NULL, false},
        {"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", NULL, false},
        {"SELECT 'unterminated", NULL, false},
        {"SELECT 1; SELECT \"x", NULL, false},
        {"", NULL, false},
        {"   -- only a comment", NULL, false},
        {";", NULL, false},
        {"BEGIN", NULL, false},
        {"BEGIN; SELECT 1", NULL, false},
        {"BEGIN READ ONLY; SELECT 1; COMMIT", NULL, false},
        {"BEGIN READ ONLY, READ WRITE", NULL, false},
        {"BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", NULL, false},
        {"COMMIT", NULL, false},
        {"SET TRANSACTION READ ONLY", NULL, false},
        {"SHOW search_path", NULL, false},
        {"SELECT txid_current()", NULL, false},
        {"SELECT pg_current_xact_id()", NULL, false},
        {"SELECT pg_notify('c', 'x')", NULL, false},
        {"SELECT lo_import('/etc/passwd')", NULL, false},
        {"SELECT dblink('x', 'y')", NULL, false},
        {"SELECT setseed(0.5)", NULL, false},
        {"SELECT set_config('statement_timeout', '1s', true)", NULL, false},
        {"LISTEN ch", NULL, false},
        {"CREATE TEMP TABLE t AS SELECT 1", NULL, false},
        {"DO $$ BEGIN END $$", NULL, false},
        {"CALL p()", NULL, false},
        {"DECLARE c CURSOR FOR SELECT 1", NULL, false},
        {"FETCH 10 FROM c", NULL, false},
        {"SELECT * FROM t, nextval('s')", NULL, false},
        {"SELECT * FROM unnest(ARRAY[1]) WITH ORDINALITY, nextval('s')", NULL, false},
        {"SELECT 1 OPERATOR(pg_catalog.+) nextval('s')", NULL, false},
        {"SELECT a FROM t ORDER BY nextval('s')", NULL, false},
        {"SELECT x AT TIME ZONE 'UTC', nextval('s') FROM t", NULL, false},
        {"SELECT count(*) FROM t WHERE x = ANY (SELECT user_fn(y) FROM u)", NULL, false},
        {"WITH a AS (SELECT 1) SELECT 1, nextval('s') FROM a", NULL, false},
        {"WITH a AS (SELECT 1), b AS (SELECT my_fn()) SELECT * FROM a, b", NULL, false},
        {"SELECT * FROM t AS x(a), LATERAL my_fn(x.a)", NULL, false},
        {"SELECT $1::regclass, nextval($1)", NULL, false},
        {"/* pgtenant:replica */ UPDATE t SET a = 1", NULL, false},
        {"SELECT 1)", NULL, false},
        {"SELECT (1; 2)", NULL, false},
        {"SELECT * FROM t WHERE x = 1 FOR UPDATE OF t NOWAIT", NULL, false},
        {"CREATE TABLE t AS SELECT 1", NULL, false},
        {"VACUUM t", NULL, false},
        {"SELECT cube(1, 2)", NULL, false},
};

static void test_read_routing_only_for_certain_reads(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(route_cases); i++) {
		SqlInfo info;
		analyze(route_cases[i].sql, TENANT_GUC, route_cases[i].extra, &info);
		CHECK_MSG(info.read_only == route_cases[i].ro, "read_only \"%s\": got %d, want %d",
		          route_cases[i].sql, info.read_only, route_cases[i].ro);
	}
}

static const struct {
	const char *sql;
	bool replica, primary;
} hint_cases[] = {
        {"/* pgtenant:replica */ SELECT 1", true, false},
        {"/*pgtenant:replica*/SELECT 1", true, false},
        {"/*  pgtenant : replica \n */ SELECT 1", true, false},
        {"/* PGTENANT:REPLICA */ SELECT 1", true, false},
        {"/*  pgtenant:primary  */ SELECT 1", false, true},
        {"-- x\n/* pgtenant:replica */ /* other */ SELECT 1", true, false},
        {"/* pgtenant:primary */ /* pgtenant:replica */ SELECT 1", true, true},
        {"SELECT /* pgtenant:replica */ 1", false, false},
        {"SELECT 1; /* pgtenant:replica */ SELECT 2", false, false},
        {"/* pgtenant:replicas */ SELECT 1", false, false},
        {"/* pgtenant:replica, please */ SELECT 1", false, false},
        {"/* x pgtenant:replica */ SELECT 1", false, false},
        {"-- pgtenant:replica\nSELECT 1", false, false},
        {"SELECT '/* pgtenant:replica */'", false, false},
};

static void test_leading_comment_hints(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(hint_cases); i++) {
		SqlInfo info;
		analyze(hint_cases[i].sql, TENANT_GUC, NULL, &info);
		CHECK_MSG(info.hint_replica == hint_cases[i].replica &&
		                  info.hint_primary == hint_cases[i].primary,
		          "hints \"%s\": got replica=%d primary=%d", hint_cases[i].sql,
		          info.hint_replica, info.hint_primary);
	}
}

static const struct {
	const char *sql;
	int n_statements;
	int max_param;
} count_cases[] = {
        {"", 0, 0},
        {";;", 0, 0},
        {"SELECT 1", 1, 0},
        {"SELECT 1; SELECT 2;", 2, 0},
        {"SELECT 1;;SELECT 2", 2, 0},
        {"SELECT ';'", 1, 0},
        {"SELECT $1, $12, $3", 1, 12},
        {"SELECT $2; SELECT $7", 2, 7},
        {"SELECT '$5', \"$6\", $$ $7 $$", 1, 0},
        {"SELECT $99999999999999", 1, 2147483647},
        {"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; "
         "SELECT 3",
         2, 0},
        {"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; SELECT 2 $$; SELECT 3", 2,
         0},
        {"SELECT 'x", 1, 0},
        {"'x", 1, 0},
};

static void test_statement_count_and_max_param(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(count_cases); i++) {
		SqlInfo info;
		analyze(count_cases[i].sql, TENANT_GUC, NULL, &info);
		CHECK_MSG(info.n_statements == count_cases[i].n_statements &&
		                  info.max_param == count_cases[i].max_param,
		          "counts \"%s\": got %d statements, $%d", count_cases[i].sql,
		          info.n_statements, info.max_param);
	}
}

/* Every prefix of every case: nothing may read past the end (valgrind) or crash. */
static void test_every_prefix_is_safe(void)
{
	const char *samples[] = {
	        "SELECT set_config('search_path', $q$x$q$, false); SET \"app\".\"tenant_id\" = 'x'",
	        "WITH RECURSIVE r(n) AS (SELECT 1) SELECT E'\\'', U&'\\0061', /* a /* b */ */ "
	        "1.5e3",
	        "CREATE FUNCTION f() BEGIN ATOMIC SELECT 1; END; EXPLAIN (ANALYZE) SELECT $1",
	};
	int runs = 0;

	for (size_t i = 0; i < ARRAY_SIZE(samples); i++) {
		size_t n = strlen(samples[i]);
		for (size_t k = 0; k <= n; k++) {
			char *copy = malloc(k ? k : 1);
			SqlInfo info;
			if (!copy)
				abort();
			memcpy(copy, samples[i], k);
			sql_analyze(copy, k, TENANT_GUC, "f", &info);
			free(copy);
			runs++;
		}
	}
	CHECK(runs > 100);
}

static void bench_pgbench_select(void)
{
	static const char sql[] = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
	static const char sql100[] = "SELECT a.id, a.name, b.total FROM accounts a JOIN balances b "
	                             "ON b.account_id = a.id WHERE a.id = $1";
	const int n = 100000;
	struct timespec t0, t1;
	unsigned sink = 0;
	SqlInfo info;
	double ns;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		sql_analyze(sql, sizeof(sql) - 1, TENANT_GUC, NULL, &info);
		sink += info.read_only;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / n;
	printf("sqllex bench: %.0f ns/call (%zu-byte pgbench SELECT)\n", ns, sizeof(sql) - 1);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		sql_analyze(sql100, sizeof(sql100) - 1, TENANT_GUC, NULL, &info);
		sink += info.read_only;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / n;
	printf("sqllex bench: %.0f ns/call (%zu-byte join)\n", ns, sizeof(sql100) - 1);
	CHECK(sink == 2u * (unsigned)n);
}

/*
 * sqllex_next() takes names, plain numbers, '=', ',' and ';' on an inline path and leaves
 * the rest to the general one: on random text made of the bytes and words where the two
 * could part (prefixes, quotes, comments, number forms, operators, the end of input),
 * every token, its marks and the lexer's state must be the same both ways.
 */
static void test_inline_path_draws_what_the_general_path_draws(void)
{
	static const char bytes[] = "aeEuUxXbBnN_$&'\"-/*;,.()=<>+!~ \n\t0123456789:\\";
	static const char *const words[] = {
	        "select ", "e'",  "u&'", "U&\"", "$$", "$a$", "--",  "/*", "*/", "1.5e3",
	        "0x1F",    "1_0", "12.", "1..2", "=>", "<=",  "a$1", "x'", "b'", "n'",
	};
	unsigned seed = 12345;
	char buf[160];
	int differ = 0;

	for (int it = 0; it < 200000; it++) {
		size_t len = 0;
		seed = seed * 1103515245u + 12345u;
		int k = (int)(seed >> 16) % 14 + 1;
		for (int j = 0; j < k && len < sizeof(buf) - 8; j++) {
			seed = seed * 1103515245u + 12345u;
			unsigned r = seed >> 16;
			if (r & 1) {
				buf[len++] = bytes[(r >> 1) % (sizeof(bytes) - 1)];
			} else {
				const char *w = words[(r >> 1) % ARRAY_SIZE(words)];
				memcpy(buf + len, w, strlen(w));
				len += strlen(w);
			}
		}
		char *copy = exact_bytes(buf, len);
		SqlLexer a, b;
		SqlToken ta, tb;
		sqllex_init(&a, copy, len);
		sqllex_init(&b, copy, len);
		for (;;) {
			SqlTokType x = sqllex_next(&a, &ta), y = sqllex_next_general(&b, &tb);
			bool same = x == y && ta.text == tb.text && ta.len == tb.len &&
			            ta.offset == tb.offset && ta.depth == tb.depth &&
			            ta.escaped_string == tb.escaped_string &&
			            ta.backslash_quote == tb.backslash_quote &&
			            ta.prefix == tb.prefix && ta.uescape == tb.uescape &&
			            a.pos == b.pos && a.depth == b.depth && a.failed == b.failed &&
			            a.hint_replica == b.hint_replica &&
			            a.hint_primary == b.hint_primary;
			if (!same) {
				if (differ++ < 3)
					CHECK_MSG(false, "[%.*s]: token at %zu differs", (int)len,
					          copy, tb.offset);
				break;
			}
			if (x == SQLTOK_EOF || x == SQLTOK_ERROR)
				break;
		}
		free(copy);
	}
	CHECK_MSG(differ == 0, "%d inputs drawn differently", differ);
}

/* The analysis without the screen: sql_analyze_norm() with a norm takes the full path. */
static void analyze_full(const char *sql, size_t len, SqlInfo *info)
{
	SqlNorm n;
	sql_norm_init(&n, NULL, 0);
	sql_analyze_norm(sql, len, TENANT_GUC, "my_ro", info, &n);
}

/* Screened and full analysis of sql (exact-size copy) agree; returns whether the screen took it.
 */
static bool screen_agrees(const char *sql, size_t len, int *differ)
{
	char *copy = exact_bytes(sql, len);
	SqlInfo a, b, c;
	bool took = sql_screen(copy, len, &c);
	sql_analyze(copy, len, TENANT_GUC, "my_ro", &a);
	analyze_full(copy, len, &b);
	bool same = memcmp(&a, &b, sizeof(a)) == 0 && (!took || memcmp(&c, &b, sizeof(c)) == 0);
	if (!same && (*differ)++ < 5)
		CHECK_MSG(false, "screen and analysis differ on [%.*s] (screened: %d)", (int)len,
		          copy, took);
	free(copy);
	return took;
}

/*
 * sql_screen() takes plain SELECTs and nothing it cannot vouch for: what it takes, the full
 * analysis says too, for hand-picked texts, every keyword in every position, and random
 * text made of the pieces where the two could part.
 */
static void test_screen_agrees_with_the_analysis(void)
{
	static const char *const taken[] = {
	        "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
	        "select * from t where a = $1 and b = 'x''y' and c <> $12",
	        "  SELECT a, b FROM t ORDER BY a DESC LIMIT 10;; \n",
	        "SELECT CASE WHEN a THEN 1 ELSE 2 END FROM t",
	        "SELECT 1 UNION SELECT 2",
	        "SELECT x::text, 'é' FROM only t",
	        "SELECT 1.5, -2, a/b, a-b FROM t",
	        "SeLeCt\t*FROM t",
	        "SELECT",
	};
	static const char *const refused[] = {
	        "SELECT 1 -- c",
	        "SELECT /* c */ 1",
	        "selectx FROM t",
	        "select1",
	        "SELECT 1into t",
	        "SELECT * INTO t FROM u",
	        "SELECT * FROM t FOR UPDATE",
	        "SELECT E'a'",
	        "SELECT U&'a'",
	        "SELECT \"a\"",
	        "SELECT $$a$$",
	        "SELECT a$b",
	        "SELECT f(1)",
	        "SELECT set_config('search_path', 'x', false)",
	        "SELECT 1; SELECT 2",
	        "SELECT 'a\\'",
	        "SELECT 'unterminated",
	        "WITH x AS (SELECT 1) SELECT 1",
	        "SELECT é",
	        "SELECT 1e5",
	        "SELECT $1a",
	        "SELECT $",
	        "SELECT 1 --'\n; SET search_path = x; --'",
	        "SELECT 1 /*'*/; SET search_path = x; --'",
	        "SELECT * FROM t WHERE a = 1 ISOLATION LEVEL SERIALIZABLE",
	        "SET search_path = x",
	        "SELECT a FROM t; SET search_path = x",
	        "INSERT INTO t VALUES (1)",
	        "SELECT * FROM t WHERE x = 1 & 2",
	};
	int differ = 0;

	for (size_t i = 0; i < ARRAY_SIZE(taken); i++)
		CHECK_MSG(screen_agrees(taken[i], strlen(taken[i]), &differ),
		          "the screen should take \"%s\"", taken[i]);
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++)
		CHECK_MSG(!screen_agrees(refused[i], strlen(refused[i]), &differ),
		          "the screen should leave \"%s\" to the analysis", refused[i]);

	/* every keyword, wherever a plain SELECT may hold it */
	static const char *const forms[] = {
	        "SELECT %s",       "SELECT a %s b",         "SELECT a, %s",
	        "SELECT 'x' %s 1", "SELECT a FROM t %s $1", "SELECT a %s;"};
	int kw_taken = 0;
	for (size_t i = 0; sql_keyword_name(i); i++) {
		for (size_t f = 0; f < ARRAY_SIZE(forms); f++) {
			char text[128];
			int n = snprintf(text, sizeof(text), forms[f], sql_keyword_name(i));
			kw_taken += screen_agrees(text, (size_t)n, &differ);
		}
	}
	CHECK_MSG(kw_taken > 100, "only %d keyword texts taken by the screen", kw_taken);

	/* random text */
	static const char *const pieces[] = {
	        "SELECT ", "select ", " ",           "\n",         "a",
	        "b1",      "_x",      "12",          "0",          "=",
	        "<>",      ",",       ".",           "::",         "*",
	        "-",       "/",       "+",           "'",          "''",
	        "'s'",     "\\",      "\"",          "$",          "$1",
	        "$a$",     "--",      "/*",          "*/",         "(",
	        ")",       ";",       "E'",          "U&'",        "&",
	        "é",       "1e5",     "into ",       "for ",       "with ",
	        "from ",   "where ",  "update",      "set ",       "case ",
	        "end ",    "only ",   "search_path", "set_config", "serializable",
	        "temp ",   "do ",
	};
	unsigned seed = 4242;
	char buf[200];
	int rnd_taken = 0, total = 300000;
	for (int it = 0; it < total; it++) {
		size_t len = 0;
		seed = seed * 1103515245u + 12345u;
		int k = (int)(seed >> 16) % 12 + 1;
		if (seed & 0x10000000u) {
			memcpy(buf, "SELECT ", 7);
			len = 7;
		}
		for (int j = 0; j < k && len < sizeof(buf) - 16; j++) {
			seed = seed * 1103515245u + 12345u;
			const char *w = pieces[(seed >> 16) % ARRAY_SIZE(pieces)];
			memcpy(buf + len, w, strlen(w));
			len += strlen(w);
		}
		rnd_taken += screen_agrees(buf, len, &differ);
	}
	/* long plain texts (the vector screen's blocks and tails), now and then one odd piece */
	static const char *const plain[] = {
	        "a",   "bc_1", "_x",   "12",   "0",       " ",   "\n",   "=",
	        "<>",  ",",    ".",    "::",   "*",       "+",   "from", "where",
	        "and", "end",  "case", "only", "selectx", " $1", "=$23"};
	static const char *const odd[] = {"into",         "for", "with", "1e5", "-", "--",
	                                  "'s'",          "$1",  "(",    ";",   "é", "a$",
	                                  "serializable", "$$",  "$a",   "$1$", "$", "1$2"};
	int long_taken = 0, long_total = 100000;
	for (int it = 0; it < long_total; it++) {
		size_t len = 7;
		memcpy(buf, "SELECT ", 7);
		seed = seed * 1103515245u + 12345u;
		size_t want = 8 + (seed >> 16) % 180;
		bool one_odd = (seed >> 8) & 1;
		while (len < want) {
			seed = seed * 1103515245u + 12345u;
			const char *w = plain[(seed >> 16) % ARRAY_SIZE(plain)];
			if (one_odd && (seed & 0x3f000) == 0) {
				w = odd[(seed >> 20) % ARRAY_SIZE(odd)];
				one_odd = false;
			}
			memcpy(buf + len, w, strlen(w));
			len += strlen(w);
		}
		if ((seed >> 24) & 1)
			buf[len++] = ';';
		long_taken += screen_agrees(buf, len, &differ);
	}
	CHECK_MSG(long_taken > long_total / 8, "the screen took only %d of %d long texts",
	          long_taken, long_total);

	CHECK_MSG(differ == 0, "%d texts analysed differently with the screen", differ);
	CHECK_MSG(rnd_taken > total / 50, "the screen took only %d of %d random texts", rnd_taken,
	          total);
	printf("sqllex screen: took %d of %d random texts, %d of %d long ones, %d keyword texts\n",
	       rnd_taken, total, long_taken, long_total, kw_taken);
}

/* A shape made from text (as sql_analyze_shaped keeps one); false when the screen refuses it. */
static bool shape_of(const char *text, SqlShape *sh)
{
	SqlInfo info;
	sh->len = 0;
	sql_analyze_shaped(text, strlen(text), TENANT_GUC, "my_ro", &info, sh);
	return sh->len > 0;
}

/*
 * A shape answers for a text that differs from its own only in numbers (each again plain
 * digits, not a $n), and for nothing else; what it answers is what the full analysis says.
 */
static void test_shapes_answer_only_for_other_numbers(void)
{
	static const struct {
		const char *shape, *text;
		bool match;
	} cases[] = {
	        {"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
	         "SELECT abalance FROM pgbench_accounts WHERE aid = 7;", true},
	        {"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
	         "SELECT abalance FROM pgbench_accounts WHERE aid = 123456789;", true},
	        {"select a from t where b = 1 and c = 22",
	         "select a from t where b = 333 and c = 4", true},
	        {"SELECT 1", "SELECT 12", true},
	        {"SELECT 12", "SELECT 1", true},
	        {"SELECT 1.5 FROM t", "SELECT 2.75 FROM t", true},
	        {"SELECT a FROM t1 WHERE b = 1", "SELECT a FROM t2 WHERE b = 1", false},
	        {"SELECT a FROM t WHERE b = $1", "SELECT a FROM t WHERE b = $2", false},
	        {"SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = 1e5", false},
	        {"SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = 1into", false},
	        {"SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = 1 into x", false},
	        {"SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = x", false},
	        {"SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = ", false},
	        {"SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = 1; SET search_path = x",
	         false},
	        {"SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = 1$", false},
	        {"SELECT a FROM t WHERE b = 1", " SELECT a FROM t WHERE b = 1", false},
	        {"SELECT 1", "SELECT 1 FOR UPDATE", false},
	        {"SELECT 1", "SELECT", false},
	        /* pieces longer than sixteen bytes, shorter, and a text longer than any shape */
	        {"SELECT a FROM t WHERE b = 1 AND c = 2 AND d = 3 OR f=5",
	         "SELECT a FROM t WHERE b = 10 AND c = 200 AND d = 3000 OR f=55", true},
	        {"SELECT a FROM t WHERE b = 1 AND c = 2 AND d = 3 OR f=5",
	         "SELECT a FROM t WHERE b = 10 AND c = 200 AND d = 3000 OR g=55", false},
	        {"SELECT a FROM t WHERE b = 1 AND c = 2 AND d = 3 OR f=5",
	         "SELECT a FROM t WHERE b = 10 AND c = 200 AND d = 3000 OR f=5x", false},
	        {"SELECT 1, 2, 3, 4, 5 FROM a_table_with_a_long_name WHERE x = 6",
	         "SELECT 1, 2, 3, 4, 5 FROM a_table_with_a_long_name WHERE x = "
	         "123456789012345678901234567890123456789",
	         true},
	        {"SELECT 1, 2, 3, 4, 5 FROM a_table_with_a_long_name WHERE x = 6",
	         "SELECT 1, 2, 3, 4, 5 FROM a_table_with_a_long_name WHERE x = "
	         "12345678901234567890123456789012345678a",
	         false},
	        {"SELECT 1, 2, 3, 4, 5 FROM a_table_with_a_long_name WHERE x = 6",
	         "SELECT 1, 2, 3, 4, 5 FROM a_table_with_a_long_name WHERE y = 6", false},
	        {"SELECT 7 FROM t", "SELECT 77777777777777777777 FROM t", true},
	        {"SELECT 7 FROM t", "SELECT 77777777777777777777 FROM u", false},
	        {"SELECT 7 FROM t", "SELECT 7 FROM tt", false},
	        {"SELECT 7", "SELECT 7 ", false},
	};
	int differ = 0;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		SqlShape sh;
		CHECK_MSG(shape_of(cases[i].shape, &sh), "no shape kept for \"%s\"",
		          cases[i].shape);
		bool m = sql_shape_matches(&sh, cases[i].text, strlen(cases[i].text));
		CHECK_MSG(m == cases[i].match, "shape \"%s\" %s \"%s\"", cases[i].shape,
		          m ? "answered for" : "did not answer for", cases[i].text);
	}
	SqlShape sh;
	/* every length of the pieces before and after a number, every byte of them changed:
	 * each of the comparisons' windows (whole sixteens, overlapping ones, short ones)
	 * looks at every byte */
	int window_errors = 0;
	for (size_t a = 0; a < 50; a++) {
		for (size_t b = 0; 7 + a + 2 + b < SQL_SHAPE_MAX && b < 12; b++) {
			char p[SQL_SHAPE_MAX], t[SQL_SHAPE_MAX + 8];
			size_t lp = (size_t)snprintf(
			        p, sizeof(p), "SELECT %.*s=1%s%.*s", (int)a,
			        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b ? " " : "",
			        b ? (int)b - 1 : 0, "bbbbbbbbbbbb");
			if (!shape_of(p, &sh))
				continue;
			size_t num = 7 + a + 1; /* where the number is */
			for (size_t d = 0; d <= lp; d++) {
				/* d == lp: nothing changed; the number "1" becomes "12345" */
				size_t lt = 0;
				memcpy(t, p, num);
				lt = num;
				memcpy(t + lt, "12345", 5);
				lt += 5;
				memcpy(t + lt, p + num + 1, lp - num - 1);
				lt += lp - num - 1;
				if (d == num)
					continue;
				if (d < lp)
					t[d < num ? d : d + 4] = 'c';
				char *copy = exact_bytes(t, lt);
				if (sql_shape_matches(&sh, copy, lt) != (d == lp) &&
				    window_errors++ < 5)
					CHECK_MSG(false, "shape [%s] %s [%.*s]", p,
					          d == lp ? "did not answer for" : "answered for",
					          (int)lt, copy);
				free(copy);
			}
		}
	}
	CHECK_MSG(window_errors == 0, "%d window errors", window_errors);
	CHECK(!shape_of("SELECT a FROM t WHERE b = 'x'", &sh)); /* quotes: no shape */
	CHECK(!shape_of("SELECT f(1)", &sh));                   /* the screen refuses it */

	/* random plain texts, then the same with numbers rewritten and now and then a piece
	 * changed: whenever the shape answers, the full analysis agrees, and it answers for
	 * every text with no piece changed */
	static const char *const plain[] = {"a",   "bc_1", "_x", " ",   "=",    "<>",    ",",
	                                    ".",   "::",   "*",  "+",   "from", "where", "and",
	                                    " 12", " 0",   "=7", " $1", "(",    "for",   "into"};
	static const char *const odd[] = {"x", "1e5", "'s'", "$", "$2", "into", "(",
	                                  ";", "--",  "é",   "a", "_",  "for"};
	unsigned seed = 777;
	int matched = 0, missed = 0, total = 200000;
	for (int it = 0; it < total; it++) {
		char p[SQL_SHAPE_MAX + 1], t[2 * SQL_SHAPE_MAX + 32];
		size_t lp = 7, lt = 0;
		memcpy(p, "SELECT ", 7);
		seed = seed * 1103515245u + 12345u;
		size_t want = 8 + (seed >> 16) % 50;
		while (lp < want) {
			seed = seed * 1103515245u + 12345u;
			const char *w = plain[(seed >> 16) % ARRAY_SIZE(plain)];
			if (lp + strlen(w) > SQL_SHAPE_MAX)
				break;
			memcpy(p + lp, w, strlen(w));
			lp += strlen(w);
		}
		p[lp] = '\0';
		if (!shape_of(p, &sh))
			continue;
		/* t: p with each number rewritten (sometimes not), now and then an odd piece */
		bool changed = false;
		for (size_t i = 0; i < lp;) {
			seed = seed * 1103515245u + 12345u;
			if (p[i] >= '0' && p[i] <= '9') {
				size_t e = i;
				while (e < lp && p[e] >= '0' && p[e] <= '9')
					e++;
				/* a name's digits (bc_1, $1) are rewritten too, now and then */
				bool number = !isalnum((unsigned char)p[i - 1]) &&
				              p[i - 1] != '_' && p[i - 1] != '$';
				int n = (int)((seed >> 16) % (number ? 4 : 8));
				if (!number && n > 0)
					changed = true;
				for (int d = 0; d < n; d++)
					t[lt++] = (char)('0' + (seed >> (20 + d)) % 10);
				if (n == 0)
					for (size_t k = i; k < e; k++)
						t[lt++] = p[k];
				i = e;
			} else {
				t[lt++] = p[i++];
			}
			if ((seed & 0x3f00) == 0) {
				const char *w = odd[(seed >> 24) % ARRAY_SIZE(odd)];
				memcpy(t + lt, w, strlen(w));
				lt += strlen(w);
				changed = true;
			}
		}
		char *copy = exact_bytes(t, lt);
		bool m = sql_shape_matches(&sh, copy, lt);
		if (!m && !changed && missed++ < 5)
			CHECK_MSG(false, "shape [%s] did not answer for [%.*s]", p, (int)lt, copy);
		if (m) {
			SqlInfo full;
			matched++;
			analyze_full(copy, lt, &full);
			if (memcmp(&full, &sh.info, sizeof(full)) != 0 && differ++ < 5)
				CHECK_MSG(false,
				          "shape [%s] answered for [%.*s], the analysis differs", p,
				          (int)lt, copy);
		}
		free(copy);
	}
	CHECK_MSG(differ == 0, "%d texts a shape answered for wrongly", differ);
	CHECK_MSG(missed == 0, "%d rewritten texts a shape did not answer for", missed);
	CHECK_MSG(matched > total / 10, "shapes answered for only %d of %d texts", matched, total);
	printf("sqllex shapes: answered for %d of %d rewritten texts\n", matched, total);
}

int main(int argc, char **argv)
{
	test_lexer_draws_postgresql_token_boundaries();
	test_lexer_tracks_depth_offsets_and_sticky_errors();
	test_guard_refuses_every_form_and_no_look_alike();
	test_guard_without_tenant_guc_and_names();
	test_flags_mark_state_session_and_transactions();
	test_read_routing_only_for_certain_reads();
	test_leading_comment_hints();
	test_statement_count_and_max_param();
	test_every_prefix_is_safe();
	test_inline_path_draws_what_the_general_path_draws();
	test_screen_agrees_with_the_analysis();
	test_shapes_answer_only_for_other_numbers();
	/* Under valgrind, pass "--no-bench" to skip the timing loop. */
	if (!(argc > 1 && strcmp(argv[1], "--no-bench") == 0))
		bench_pgbench_select();
	return unit_finish("sqllex");
}
