/*
 * sqllex: a small, exact SQL lexer and the statement classifier built on it.
 *
 * It understands what PostgreSQL's scanner does about boundaries: -- and
 * nested block comments, '' strings (standard_conforming_strings on),
 * E'' strings with backslash escapes, U&'' strings, "quoted" identifiers
 * (with "" inside), $tag$ dollar quotes, $n parameters, and top-level ';'.
 * Keywords are never searched for with patterns in raw text: a keyword
 * inside a comment, a string or a dollar-quoted body is not a keyword.
 *
 * sql_analyze() classifies a whole Query string or Parse text (all its
 * statements) for the tenant guard (SPEC §4), for session-state tracking
 * in transaction mode, and for read routing (SPEC §5).
 */
#ifndef PGTENANT_SQLLEX_H
#define PGTENANT_SQLLEX_H

#include "common.h"

typedef enum {
	SQLTOK_EOF = 0,
	SQLTOK_IDENT,  /* unquoted identifier or keyword; compare case-insensitively */
	SQLTOK_QIDENT, /* "quoted identifier"; text excludes the quotes, "" not yet unescaped */
	SQLTOK_STRING, /* '...', E'...', U&'...', $$...$$; text excludes the quotes */
	SQLTOK_NUMBER,
	SQLTOK_PARAM, /* $1 */
	SQLTOK_SEMI,  /* ; at any depth (the lexer reports depth) */
	SQLTOK_LPAREN,
	SQLTOK_RPAREN,
	SQLTOK_COMMA,
	SQLTOK_DOT,
	SQLTOK_OP,   /* any other operator or punctuation */
	SQLTOK_ERROR /* unterminated string, comment or quoted identifier */
} SqlTokType;

typedef struct SqlToken {
	SqlTokType type;
	const char *text; /* points into the input */
	size_t len;
	size_t offset;        /* of the token's first byte in the input */
	int depth;            /* parenthesis depth before this token */
	bool escaped_string;  /* E'' string: backslash escapes inside */
	bool backslash_quote; /* '' string with a backslash before a quote:
	                       * standard_conforming_strings off would end it elsewhere */
	char prefix;  /* of a quoted token, lower case: 'e', 'b', 'x', 'n', 'u' (U&), or 0 */
	char uescape; /* U& tokens: the escape character (UESCAPE clause, part of the token, or
	               * '\\'); 0 when the clause is malformed */
} SqlToken;

typedef struct SqlLexer {
	const char *s;
	size_t len;
	size_t pos;
	int depth;
	/* leading comment hints, e.g. / * pgtenant:replica * / before the first token */
	bool hint_replica;
	bool hint_primary;
	bool seen_token;
	bool failed; /* sticky: after SQLTOK_ERROR every call returns SQLTOK_ERROR again */
} SqlLexer;

void sqllex_init(SqlLexer *lx, const char *s, size_t len);
/* Next token; SQLTOK_EOF at the end, SQLTOK_ERROR when a quote or comment never ends. */
SqlTokType sqllex_next(SqlLexer *lx, SqlToken *tok);
/* sqllex_next() without its inline path for names, numbers and one-byte tokens: every
 * token drawn the general way (for the test that both draw the same). */
SqlTokType sqllex_next_general(SqlLexer *lx, SqlToken *tok);
/* Case-insensitive comparison of an IDENT token with a lower-case word. */
bool sqltok_is(const SqlToken *tok, const char *word);
/*
 * The value of a name or string token as PostgreSQL reads it: unquoted names
 * folded to lower case, "" and '' undoubled, E'' and U&"" / U&'' escapes
 * decoded (UTF-8). false when it cannot be sure or out (size bytes, NUL
 * added) is too small: an invalid escape, a B''/X'' string, or a '' string
 * with a backslash (its value depends on standard_conforming_strings).
 */
bool sqltok_value(const SqlToken *tok, char *out, size_t size, size_t *len);

/* What the tenant guard refuses (the first such statement wins). */
typedef enum {
	SQL_GUARD_OK = 0,
	SQL_GUARD_SEARCH_PATH,  /* SET/RESET search_path, SET SCHEMA, set_config('search_path', ...)
	                         */
	SQL_GUARD_TENANT_GUC,   /* SET/RESET <tenant_guc>, set_config('<tenant_guc>', ...) */
	SQL_GUARD_ROLE,         /* SET ROLE, RESET ROLE, set_config('role', ...) */
	SQL_GUARD_SESSION_AUTH, /* SET SESSION AUTHORIZATION, RESET SESSION AUTHORIZATION */
	SQL_GUARD_AFTER_RESET   /* a statement after RESET ALL / DISCARD ALL in the same Query */
} SqlGuard;

/* Flags of sql_analyze(). */
#define SQLF_STATE_UNKNOWN                                                                         \
	0x0001 /* may have changed the tenant state: DO, CALL, LOAD, set_config with a             \
	        * non-literal name, UPDATE of pg_settings, or a statement not classified */
#define SQLF_RESETS_STATE                                                                          \
	0x0002 /* DISCARD ALL or RESET ALL: allowed, tenant state must be re-applied */
#define SQLF_SESSION_STATE                                                                         \
	0x0004 /* leaves session state: CREATE TEMP ..., DECLARE ... WITH HOLD, SQL PREPARE,       \
	        * LISTEN, session advisory locks, SET (not LOCAL) of another GUC,                  \
	        * set_config(..., false) of another GUC */
#define SQLF_UNPARSED 0x0008 /* the lexer could not finish (unterminated quote or comment) */
#define SQLF_TX_CONTROL                                                                            \
	0x0010 /* BEGIN/START/COMMIT/END/ROLLBACK/ABORT/SAVEPOINT/RELEASE/PREPARE TRANSACTION */
#define SQLF_READ_ONLY_TX                                                                          \
	0x0020 /* BEGIN READ ONLY / START TRANSACTION READ ONLY / SET TRANSACTION READ ONLY */
#define SQLF_SERIALIZABLE 0x0040 /* ISOLATION LEVEL SERIALIZABLE anywhere */
#define SQLF_SHOW         0x0080 /* SHOW statement */
#define SQLF_DEALLOCATE   0x0100 /* DEALLOCATE [PREPARE] name */
#define SQLF_DEALLOCATE_ALL                                                                        \
	0x0200 /* DEALLOCATE ALL or DISCARD ALL: every prepared statement of the session goes */

typedef struct SqlInfo {
	unsigned flags;
	SqlGuard guard;
	size_t guard_offset; /* byte offset of the refused statement's first token */
	int n_statements;    /* non-empty statements */
	int max_param;       /* highest $n */
	bool read_only;      /* every statement is read-only for certain (SPEC §5) */
	bool hint_replica;   /* leading comment / * pgtenant:replica * / */
	bool hint_primary;   /* leading comment / * pgtenant:primary * / */
} SqlInfo;

/*
 * Classifies sql (not NUL-terminated; len bytes). tenant_guc is the GUC
 * name pgtenant sets for shared tenants (e.g. "app.tenant_id"), compared
 * case-insensitively. extra_ro_functions is a comma list of function names
 * that may also run on a replica (read_only_functions), or NULL.
 */
void sql_analyze(const char *sql, size_t len, const char *tenant_guc,
                 const char *extra_ro_functions, SqlInfo *out);

/*
 * The normalised text of a statement, for statement statistics (SHOW QUERIES)
 * and the slow log, built from the same tokens sql_analyze() reads: every
 * literal and $n parameter becomes ?, a list of them (IN (1, 2, 3)) one ?,
 * unquoted names and keywords are folded to lower case, comments dropped and
 * tokens joined by single spaces. hash, the statement's fingerprint, is
 * computed from the tokens the text is written from, so it is the same with
 * buf NULL (no text written: the cheap pass of every statement) and with a
 * buf (the text, written once for a fingerprint seen first); it covers the
 * whole statement even when buf (cap bytes) holds only its head (then
 * truncated is set and buf ends in "..."). Nothing is allocated.
 */
typedef struct SqlNorm {
	char *buf; /* NULL: the fingerprint only */
	size_t cap;
	size_t len;
	uint64_t hash;   /* the fingerprint */
	const char *sql; /* the statement normalised (valid while it is) */
	size_t sql_len;
	bool truncated;
	bool empty;            /* no token yet */
	bool pending_semi;     /* a ';' between statements, written if a token follows */
	bool pending_comma;    /* a ',' after a literal: dropped if another literal follows */
	uint8_t prev;          /* SqlTokType of the last token written */
	const char *prev_text; /* that token's text (it points into the statement) */
	size_t prev_len;
} SqlNorm;

void sql_norm_init(SqlNorm *n, char *buf, size_t cap);
void sql_norm_token(SqlNorm *n, const SqlToken *tok);
/* Ends buf (NUL; "..." when truncated). */
void sql_norm_finish(SqlNorm *n);
/* Lexes sql and normalises it (init, tokens, finish): for statements sql_analyze() does not see. */
void sql_normalize(const char *sql, size_t len, SqlNorm *n);
/* sql_analyze() that also feeds every token to norm (already initialised; finished here). */
void sql_analyze_norm(const char *sql, size_t len, const char *tenant_guc,
                      const char *extra_ro_functions, SqlInfo *out, SqlNorm *norm);

/*
 * The fast path of sql_analyze() (and of sql_analyze_norm() without norm): true, with
 * out filled as sql_analyze() would fill it, when sql is a plain SELECT of the shape
 * src/sqllex.c describes; false (out untouched) for anything else.
 */
bool sql_screen(const char *sql, size_t len, SqlInfo *out);
/*
 * A plain SELECT the screen took, kept per client so the next text of the same shape is
 * known without the screen: sql_shape_answer() takes a text equal to it but for its
 * numbers (each a plain number again) as having its answer. A client repeating a statement
 * with other literals, as simple-protocol programs do, pays a comparison instead.
 */
#define SQL_SHAPE_MAX 64 /* texts shorter than this are kept */
typedef struct SqlShape {
	uint8_t len;   /* 0: none yet */
	uint64_t nums; /* bit i: a number starts at text[i] (digits after neither a name nor $) */
	uint64_t ends; /* bit i: a number ends just before text[i] */
	SqlInfo info;
	char text[SQL_SHAPE_MAX];
} SqlShape;

/* sql_analyze() that keeps sql as the client's shape when the screen takes it (the screen
 * runs once); ask sql_shape_answer() first. */
void sql_analyze_shaped(const char *sql, size_t len, const char *tenant_guc,
                        const char *extra_ro_functions, SqlInfo *out, SqlShape *shape);
/* Would shape answer for sql (for tests)? */
bool sql_shape_matches(const SqlShape *shape, const char *sql, size_t len);
/* When shape answers for sql, its answer in out (true); else false and out untouched. */
bool sql_shape_answer(const SqlShape *shape, const char *sql, size_t len, const char *tenant_guc,
                      const char *extra_ro_functions, SqlInfo *out);

/* The analyzer's i-th keyword (for tests), NULL past the last. */
const char *sql_keyword_name(size_t i);

/* A short description of a guard verdict for error messages ("search_path", "role", ...). */
const char *sql_guard_name(SqlGuard g, const char *tenant_guc);

#endif
