/*
 * sqllex: PostgreSQL's token boundaries, and a one-pass classifier of whole
 * query strings for the tenant guard (SPEC §4), session-state tracking in
 * transaction mode, and read routing (SPEC §5).
 *
 * Invariants:
 * - Nothing is matched in raw text: only tokens are compared, so a keyword
 *   inside a comment, a string or a dollar-quoted body is inert. The one
 *   exception, the screen (sql_screen) and the shapes built on it, reads bytes
 *   but takes only texts with no comment, quoted name or dollar quote, where
 *   its words are the lexer's names; it gives the full analysis's answer or
 *   none, which the sanitizer build asserts.
 * - Every doubt resolves to the safe side: a statement the classifier does
 *   not understand marks the tenant state unknown and is not read-only.
 * - sql_analyze() runs on every query: it allocates nothing and looks ahead
 *   by copying the small lexer state instead of buffering tokens.
 */
#include "sqllex.h"

#include <assert.h>
#include <ctype.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- lexer */

/* Character classes, one table lookup each: the lexer runs on every statement. */
enum {
	LEX_SPACE = 1,
	LEX_DIGIT = 2,
	LEX_IDSTART = 4, /* PostgreSQL's scanner takes every byte >= 0x80 as a letter */
	LEX_IDCONT = 8,  /* letters, digits, _ and $ */
	LEX_OP = 16,
	LEX_ALNUM = 32,
};

static const uint8_t lex_class[256] = {
        [' '] = LEX_SPACE,
        ['\t'] = LEX_SPACE,
        ['\n'] = LEX_SPACE,
        ['\r'] = LEX_SPACE,
        ['\f'] = LEX_SPACE,
        ['\v'] = LEX_SPACE,
        ['0' ... '9'] = LEX_DIGIT | LEX_IDCONT | LEX_ALNUM,
        ['a' ... 'z'] = LEX_IDSTART | LEX_IDCONT | LEX_ALNUM,
        ['A' ... 'Z'] = LEX_IDSTART | LEX_IDCONT | LEX_ALNUM,
        ['_'] = LEX_IDSTART | LEX_IDCONT,
        [0x80 ... 0xff] = LEX_IDSTART | LEX_IDCONT,
        ['$'] = LEX_IDCONT,
        ['+'] = LEX_OP,
        ['-'] = LEX_OP,
        ['*'] = LEX_OP,
        ['/'] = LEX_OP,
        ['<'] = LEX_OP,
        ['>'] = LEX_OP,
        ['='] = LEX_OP,
        ['~'] = LEX_OP,
        ['!'] = LEX_OP,
        ['@'] = LEX_OP,
        ['#'] = LEX_OP,
        ['%'] = LEX_OP,
        ['^'] = LEX_OP,
        ['&'] = LEX_OP,
        ['|'] = LEX_OP,
        ['`'] = LEX_OP,
        ['?'] = LEX_OP,
};

static inline bool lex_is_space(unsigned char c)
{
	return lex_class[c] & LEX_SPACE;
}

static inline bool lex_is_digit(unsigned char c)
{
	return lex_class[c] & LEX_DIGIT;
}

static inline bool lex_is_ident_start(unsigned char c)
{
	return lex_class[c] & LEX_IDSTART;
}

static inline bool lex_is_ident_cont(unsigned char c)
{
	return lex_class[c] & LEX_IDCONT;
}

static inline bool lex_is_alnum(unsigned char c)
{
	return lex_class[c] & LEX_ALNUM;
}

static inline bool lex_is_op_char(unsigned char c)
{
	return lex_class[c] & LEX_OP;
}

void sqllex_init(SqlLexer *lx, const char *s, size_t len)
{
	memset(lx, 0, sizeof(*lx));
	/* An empty Query may arrive as NULL; pointer arithmetic on NULL is undefined. */
	lx->s = s ? s : "";
	lx->len = s ? len : 0;
}

/*
 * Index of the quote that closes a '...' or "..." body starting at i, or
 * SIZE_MAX. A doubled quote stays inside; in E'' strings so does any
 * backslash-escaped byte.
 */
static size_t lex_find_close(const char *s, size_t n, size_t i, char q, bool backslash)
{
	while (i < n) {
		if (!backslash) {
			const char *hit = memchr(s + i, q, n - i);
			if (!hit)
				return SIZE_MAX;
			i = (size_t)(hit - s);
		} else if (s[i] == '\\') {
			i += 2;
			continue;
		} else if (s[i] != q) {
			i++;
			continue;
		}
		if (i + 1 < n && s[i + 1] == q) {
			i += 2;
			continue;
		}
		return i;
	}
	return SIZE_MAX;
}

/*
 * Does a '' body (closing quote included) hold a backslash right before a
 * quote? With standard_conforming_strings off that quote would not end the
 * string, and PostgreSQL would see other tokens than this lexer.
 */
static bool lex_backslash_quote(const char *b, size_t n)
{
	for (const char *hit = memchr(b, '\\', n); hit;
	     hit = memchr(hit + 1, '\\', n - (size_t)(hit + 1 - b)))
		if ((size_t)(hit + 1 - b) < n && hit[1] == '\'')
			return true;
	return false;
}

/* One past the end of the (nested, as PostgreSQL nests them) block comment at i, or SIZE_MAX. */
static size_t lex_block_comment_end(const char *s, size_t n, size_t i)
{
	size_t nest = 0;

	while (i + 1 < n) {
		if (s[i] == '/' && s[i + 1] == '*') {
			nest++;
			i += 2;
		} else if (s[i] == '*' && s[i + 1] == '/') {
			i += 2;
			if (--nest == 0)
				return i;
		} else {
			i++;
		}
	}
	return SIZE_MAX;
}

/* End of a number at i: decimal with fraction and exponent, 0x/0o/0b, '_' separators. */
static size_t lex_number_end(const char *s, size_t n, size_t i)
{
	char radix = i + 2 < n ? (char)(s[i + 1] | 0x20) : 0;

	if (s[i] == '0' && (radix == 'x' || radix == 'o' || radix == 'b') &&
	    lex_is_alnum(s[i + 2])) {
		i += 2;
		while (i < n && (lex_is_alnum(s[i]) || s[i] == '_'))
			i++;
		return i;
	}
	while (i < n && (lex_is_digit(s[i]) || s[i] == '_'))
		i++;
	/* "1..5" is 1, '..', 5 in PostgreSQL; only a single dot starts a fraction. */
	if (i < n && s[i] == '.' && !(i + 1 < n && s[i + 1] == '.')) {
		i++;
		while (i < n && (lex_is_digit(s[i]) || s[i] == '_'))
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		size_t j = i + 1;
		if (j < n && (s[j] == '+' || s[j] == '-'))
			j++;
		if (j < n && lex_is_digit(s[j])) {
			i = j;
			while (i < n && lex_is_digit(s[i]))
				i++;
		}
	}
	return i;
}

static size_t lex_skip_space(const char *b, size_t n, size_t i)
{
	while (i < n && lex_is_space(b[i]))
		i++;
	return i;
}

/* A leading comment "pgtenant:replica" or "pgtenant:primary" (any spacing, any case) is a hint. */
static void lex_hint(SqlLexer *lx, const char *b, size_t n)
{
	size_t i = lex_skip_space(b, n, 0);
	bool replica;

	if (n - i < 8 || strncasecmp(b + i, "pgtenant", 8) != 0)
		return;
	i = lex_skip_space(b, n, i + 8);
	if (i >= n || b[i] != ':')
		return;
	i = lex_skip_space(b, n, i + 1);
	if (n - i >= 7 && strncasecmp(b + i, "replica", 7) == 0)
		replica = true;
	else if (n - i >= 7 && strncasecmp(b + i, "primary", 7) == 0)
		replica = false;
	else
		return;
	if (lex_skip_space(b, n, i + 7) != n)
		return;
	if (replica)
		lx->hint_replica = true;
	else
		lx->hint_primary = true;
}

static SqlTokType lex_fail(SqlLexer *lx, SqlToken *tok, size_t at)
{
	tok->type = SQLTOK_ERROR;
	tok->text = lx->s + at;
	tok->len = lx->len - at;
	tok->offset = at;
	tok->depth = lx->depth;
	tok->escaped_string = false;
	lx->pos = lx->len;
	lx->failed = true;
	return SQLTOK_ERROR;
}

/* Past whitespace and comments from p; SIZE_MAX inside an unterminated comment. */
static size_t lex_skip_blanks(const char *s, size_t n, size_t p)
{
	for (;;) {
		while (p < n && lex_is_space(s[p]))
			p++;
		if (p + 1 < n && s[p] == '-' && s[p + 1] == '-') {
			while (p < n && s[p] != '\n' && s[p] != '\r')
				p++;
		} else if (p + 1 < n && s[p] == '/' && s[p + 1] == '*') {
			p = lex_block_comment_end(s, n, p);
			if (p == SIZE_MAX)
				return p;
		} else {
			return p;
		}
	}
}

static bool lex_decode(const char *s, size_t len, char kind, char quote, char uesc, char *out,
                       size_t size, size_t *outlen);

/*
 * A U& token may be followed by UESCAPE 'c' naming its escape character;
 * PostgreSQL's grammar reads the clause as part of the literal, so it is
 * folded into the token here (without recursion: the clause is scanned by
 * hand). Returns where the token ends; tok->uescape is 0 if the clause is
 * there but malformed, so nothing decodes the token with a wrong escape.
 */
static size_t lex_uescape(const char *s, size_t n, size_t end, SqlToken *tok)
{
	size_t p = lex_skip_blanks(s, n, end), close, vlen;
	char kind = 0, c;
	char val[8];

	tok->uescape = '\\';
	if (p == SIZE_MAX || n - p < 7 || strncasecmp(s + p, "uescape", 7) != 0 ||
	    (p + 7 < n && lex_is_ident_cont(s[p + 7])))
		return end;
	tok->uescape = 0;
	p = lex_skip_blanks(s, n, p + 7);
	if (p == SIZE_MAX || p >= n)
		return n;
	if ((s[p] == 'e' || s[p] == 'E') && p + 1 < n && s[p + 1] == '\'') {
		kind = 'e';
		p++;
	}
	if (s[p] != '\'')
		return p;
	close = lex_find_close(s, n, p + 1, '\'', kind == 'e');
	if (close == SIZE_MAX)
		return n;
	if (lex_decode(s + p + 1, close - p - 1, kind, '\'', 0, val, sizeof(val), &vlen) &&
	    vlen == 1) {
		c = val[0];
		/* as PostgreSQL's check_uescapechar */
		if (!isxdigit((unsigned char)c) && c != '+' && c != '\'' && c != '"' &&
		    !lex_is_space(c) && (unsigned char)c < 0x80)
			tok->uescape = c;
	}
	return close + 1;
}

/* A token starts at p: where, at which depth, and none of a quoted token's marks yet. */
static inline void lex_token_start(const SqlLexer *lx, SqlToken *tok, size_t p)
{
	tok->offset = p;
	tok->depth = lx->depth;
	tok->escaped_string = false;
	tok->backslash_quote = false;
	tok->prefix = 0;
	tok->uescape = 0;
}

/* Every token but the few sqllex_next() takes itself: comments, quotes, numbers, operators. */
static SqlTokType lex_general(SqlLexer *lx, SqlToken *tok)
{
	const char *s = lx->s;
	size_t n = lx->len, p = lx->pos, ts, te, end;
	SqlTokType type;
	unsigned char c;

	for (;;) {
		while (p < n && lex_is_space(s[p]))
			p++;
		if (p + 1 < n && s[p] == '-' && s[p + 1] == '-') {
			p += 2;
			while (p < n && s[p] != '\n' && s[p] != '\r')
				p++;
			continue;
		}
		if (p + 1 < n && s[p] == '/' && s[p + 1] == '*') {
			end = lex_block_comment_end(s, n, p);
			if (end == SIZE_MAX)
				return lex_fail(lx, tok, p);
			if (!lx->seen_token)
				lex_hint(lx, s + p + 2, end - p - 4);
			p = end;
			continue;
		}
		break;
	}

	lex_token_start(lx, tok, p);
	if (p >= n) {
		lx->pos = n;
		tok->type = SQLTOK_EOF;
		tok->text = s + n;
		tok->len = 0;
		return SQLTOK_EOF;
	}
	lx->seen_token = true;

	c = (unsigned char)s[p];
	ts = p;
	te = end = p + 1;
	type = SQLTOK_OP;
	switch (c) {
	case '\'':
		te = lex_find_close(s, n, p + 1, '\'', false);
		if (te == SIZE_MAX)
			return lex_fail(lx, tok, p);
		ts = p + 1;
		end = te + 1;
		type = SQLTOK_STRING;
		tok->backslash_quote = lex_backslash_quote(s + ts, te + 1 - ts);
		break;
	case '"':
		te = lex_find_close(s, n, p + 1, '"', false);
		if (te == SIZE_MAX)
			return lex_fail(lx, tok, p);
		ts = p + 1;
		end = te + 1;
		type = SQLTOK_QIDENT;
		break;
	case '$':
		if (p + 1 < n && lex_is_digit(s[p + 1])) {
			end = p + 1;
			while (end < n && lex_is_digit(s[end]))
				end++;
			te = end;
			type = SQLTOK_PARAM;
			break;
		}
		/* $tag$ ... $tag$: the tag follows identifier rules minus '$'. */
		te = p + 1;
		if (te < n && lex_is_ident_start(s[te])) {
			while (te < n && (lex_is_ident_start(s[te]) || lex_is_digit(s[te])))
				te++;
		}
		if (te < n && s[te] == '$') {
			size_t taglen = te - p + 1, i = te + 1;
			for (;;) {
				const char *hit = i < n ? memchr(s + i, '$', n - i) : NULL;
				if (!hit)
					return lex_fail(lx, tok, p);
				i = (size_t)(hit - s);
				if (n - i >= taglen && memcmp(s + i, s + p, taglen) == 0)
					break;
				i++;
			}
			ts = p + taglen;
			te = i;
			end = i + taglen;
			type = SQLTOK_STRING;
		} else {
			te = end = p + 1;
		}
		break;
	case '(':
		type = SQLTOK_LPAREN;
		if (lx->depth < INT_MAX)
			lx->depth++;
		break;
	case ')':
		type = SQLTOK_RPAREN;
		/* Unbalanced: a syntax error; clamping keeps later ';' splitting. */
		if (lx->depth > 0)
			lx->depth--;
		break;
	case ';':
		type = SQLTOK_SEMI;
		break;
	case ',':
		type = SQLTOK_COMMA;
		break;
	case '.':
		if (p + 1 < n && lex_is_digit(s[p + 1])) {
			te = end = lex_number_end(s, n, p);
			type = SQLTOK_NUMBER;
		} else {
			type = SQLTOK_DOT;
		}
		break;
	case ':':
		if (p + 1 < n && (s[p + 1] == ':' || s[p + 1] == '='))
			te = end = p + 2;
		break;
	default:
		if (lex_is_digit(c)) {
			te = end = lex_number_end(s, n, p);
			type = SQLTOK_NUMBER;
		} else if (lex_is_op_char(c)) {
			/* An operator ends where a comment starts, as in PostgreSQL. */
			while (end < n && lex_is_op_char(s[end]) &&
			       !(end + 1 < n && ((s[end] == '-' && s[end + 1] == '-') ||
			                         (s[end] == '/' && s[end + 1] == '*'))))
				end++;
			te = end;
		} else if (lex_class[c] & LEX_IDSTART) {
			size_t q = 0; /* offset of a string prefix's quote, if this is one */
			bool escaped = false;
			if (p + 1 < n && s[p + 1] == '\'' && strchr("eEbBxXnN", c)) {
				q = p + 1;
				escaped = c == 'e' || c == 'E';
			} else if ((c | 0x20) == 'u' && p + 2 < n && s[p + 1] == '&' &&
			           (s[p + 2] == '\'' || s[p + 2] == '"')) {
				q = p + 2;
			}
			if (q) {
				te = lex_find_close(s, n, q + 1, s[q], escaped);
				if (te == SIZE_MAX)
					return lex_fail(lx, tok, p);
				ts = q + 1;
				end = te + 1;
				type = s[q] == '"' ? SQLTOK_QIDENT : SQLTOK_STRING;
				tok->escaped_string = escaped;
				tok->prefix = (char)(c | 0x20);
				if (tok->prefix == 'u')
					end = lex_uescape(s, n, end, tok);
				else if (tok->prefix == 'n')
					tok->backslash_quote =
					        lex_backslash_quote(s + ts, te + 1 - ts);
			} else {
				while (end < n && lex_is_ident_cont(s[end]))
					end++;
				te = end;
				type = SQLTOK_IDENT;
			}
		}
		break;
	}
	lx->pos = end;
	tok->type = type;
	tok->text = s + ts;
	tok->len = te - ts;
	return type;
}

/* A token of one byte, or an unquoted name: filled in without the general path. */
static inline SqlTokType lex_simple(SqlLexer *lx, SqlToken *tok, SqlTokType type, size_t p,
                                    size_t end)
{
	lex_token_start(lx, tok, p);
	tok->type = type;
	tok->text = lx->s + p;
	tok->len = end - p;
	lx->pos = end;
	lx->seen_token = true;
	return type;
}

/*
 * Most tokens of most statements are names, and the bytes between them a space, a comma
 * or ';': those are taken here with the few tests they need. Anything that could start a
 * comment, a quote, a prefixed string (E'', U&''), a number, an operator or a
 * parenthesis goes the general way, which draws every token the same.
 */
SqlTokType sqllex_next(SqlLexer *lx, SqlToken *tok)
{
	const char *s = lx->s;
	size_t n = lx->len, p = lx->pos;

	if (lx->failed)
		return lex_fail(lx, tok, n);
	while (p < n && lex_is_space(s[p]))
		p++;
	lx->pos = p;
	if (p + 1 >= n)
		return lex_general(lx, tok); /* the end, or the last byte */
	unsigned char c = (unsigned char)s[p];
	if ((lex_class[c] & LEX_IDSTART) && s[p + 1] != '\'' && s[p + 1] != '&') {
		size_t end = p + 1;
		while (end < n && lex_is_ident_cont(s[end]))
			end++;
		return lex_simple(lx, tok, SQLTOK_IDENT, p, end);
	}
	if (c == ',')
		return lex_simple(lx, tok, SQLTOK_COMMA, p, p + 1);
	if (c == ';')
		return lex_simple(lx, tok, SQLTOK_SEMI, p, p + 1);
	if (c == '=' && !lex_is_op_char(s[p + 1]))
		return lex_simple(lx, tok, SQLTOK_OP, p, p + 1);
	if (lex_is_digit(c)) {
		/* digits up to a byte that can continue no number (., e, _, x, a name) */
		size_t end = p + 1;
		while (end < n && lex_is_digit(s[end]))
			end++;
		if (end == n || !(lex_is_ident_cont(s[end]) || s[end] == '.'))
			return lex_simple(lx, tok, SQLTOK_NUMBER, p, end);
	}
	return lex_general(lx, tok);
}

SqlTokType sqllex_next_general(SqlLexer *lx, SqlToken *tok)
{
	if (lx->failed)
		return lex_fail(lx, tok, lx->len);
	return lex_general(lx, tok);
}

bool sqltok_is(const SqlToken *tok, const char *word)
{
	size_t n = strlen(word);
	return tok->type == SQLTOK_IDENT && tok->len == n && strncasecmp(tok->text, word, n) == 0;
}

static int lex_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* n hex digits at s[*i] (all of them must be there when exact, else up to n); -1 if none. */
static long lex_hex_n(const char *s, size_t len, size_t *i, int n, bool exact)
{
	long v = 0;
	int k = 0;

	while (k < n && *i < len && lex_hex(s[*i]) >= 0) {
		v = v * 16 + lex_hex(s[*i]);
		(*i)++;
		k++;
	}
	return k == 0 || (exact && k < n) ? -1 : v;
}

static bool lex_put(char *out, size_t size, size_t *n, const char *b, size_t blen)
{
	if (*n + blen >= size)
		return false;
	memcpy(out + *n, b, blen);
	*n += blen;
	return true;
}

/* Code point cp as UTF-8 (PostgreSQL refuses 0, surrogates and anything past U+10FFFF). */
static bool lex_put_utf8(char *out, size_t size, size_t *n, long cp)
{
	char b[4];
	size_t k;

	if (cp <= 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return false;
	if (cp < 0x80) {
		b[0] = (char)cp;
		k = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xC0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3F));
		k = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xE0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char)(0x80 | (cp & 0x3F));
		k = 3;
	} else {
		b[0] = (char)(0xF0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[3] = (char)(0x80 | (cp & 0x3F));
		k = 4;
	}
	return lex_put(out, size, n, b, k);
}

/* A U& escape after uesc at s[*i]: XXXX or +XXXXXX, surrogate pairs joined; -1 if invalid. */
static long lex_uescape_cp(const char *s, size_t len, size_t *i, char uesc)
{
	long cp, lo;

	if (*i < len && s[*i] == '+') {
		(*i)++;
		return lex_hex_n(s, len, i, 6, true);
	}
	cp = lex_hex_n(s, len, i, 4, true);
	if (cp < 0xD800 || cp > 0xDBFF)
		return cp;
	if (*i + 1 >= len || s[*i] != uesc)
		return -1;
	(*i)++;
	lo = s[*i] == '+' ? ((*i)++, lex_hex_n(s, len, i, 6, true)) : lex_hex_n(s, len, i, 4, true);
	if (lo < 0xDC00 || lo > 0xDFFF)
		return -1;
	return 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
}

/* An E'' escape after the backslash at s[*i]; false if PostgreSQL would refuse it. */
static bool lex_e_escape(const char *s, size_t len, size_t *i, char *out, size_t size, size_t *n)
{
	static const char simple[] = "b\bf\fn\nr\rt\t";
	char c = s[(*i)++];
	const char *m;
	long v;

	if (c >= '0' && c <= '7') {
		v = c - '0';
		for (int k = 0; k < 2 && *i < len && s[*i] >= '0' && s[*i] <= '7'; k++)
			v = v * 8 + (s[(*i)++] - '0');
		c = (char)(v & 0xFF);
		return c != 0 && lex_put(out, size, n, &c, 1);
	}
	if (c == 'x' && *i < len && lex_hex(s[*i]) >= 0) {
		c = (char)lex_hex_n(s, len, i, 2, false);
		return c != 0 && lex_put(out, size, n, &c, 1);
	}
	if (c == 'u' || c == 'U') {
		long lo;
		v = lex_hex_n(s, len, i, c == 'u' ? 4 : 8, true);
		if (v >= 0xD800 && v <= 0xDBFF) {
			if (*i + 1 >= len || s[*i] != '\\' ||
			    (s[*i + 1] != 'u' && s[*i + 1] != 'U'))
				return false;
			*i += 2;
			lo = lex_hex_n(s, len, i, s[*i - 1] == 'u' ? 4 : 8, true);
			if (lo < 0xDC00 || lo > 0xDFFF)
				return false;
			v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
		}
		return lex_put_utf8(out, size, n, v);
	}
	for (m = simple; *m; m += 2)
		if (m[0] == c)
			return lex_put(out, size, n, &m[1], 1);
	return lex_put(out, size, n, &c, 1);
}

/*
 * Decodes a quoted body: quote doubled for itself, then by kind: 'e'
 * backslash escapes, 'u' Unicode escapes introduced by uesc; anything else
 * taken as it stands. false on an invalid escape or when out is too small.
 */
static bool lex_decode(const char *s, size_t len, char kind, char quote, char uesc, char *out,
                       size_t size, size_t *outlen)
{
	size_t i = 0, n = 0;

	if (kind == 'u' && !uesc)
		return false;
	while (i < len) {
		char c = s[i++];
		if (c == quote && quote && i < len && s[i] == quote) {
			i++;
		} else if (kind == 'e' && c == '\\' && i < len) {
			if (!lex_e_escape(s, len, &i, out, size, &n))
				return false;
			continue;
		} else if (kind == 'u' && c == uesc) {
			if (i < len && s[i] == uesc) {
				i++;
			} else {
				if (!lex_put_utf8(out, size, &n, lex_uescape_cp(s, len, &i, uesc)))
					return false;
				continue;
			}
		}
		if (!lex_put(out, size, &n, &c, 1))
			return false;
	}
	out[n] = '\0';
	*outlen = n;
	return true;
}

bool sqltok_value(const SqlToken *tok, char *out, size_t size, size_t *len)
{
	if (size == 0)
		return false;
	switch (tok->type) {
	case SQLTOK_IDENT:
		if (tok->len >= size)
			return false;
		for (size_t i = 0; i < tok->len; i++) {
			char c = tok->text[i];
			out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
		}
		out[tok->len] = '\0';
		*len = tok->len;
		return true;
	case SQLTOK_QIDENT:
		return lex_decode(tok->text, tok->len, tok->prefix, '"', tok->uescape, out, size,
		                  len);
	case SQLTOK_STRING:
		if (tok->text[-1] == '$') /* dollar-quoted: the body is the value */
			return lex_decode(tok->text, tok->len, 0, 0, 0, out, size, len);
		if (tok->prefix == 'b' || tok->prefix == 'x')
			return false;
		/* a backslash in '' (or N'') means what standard_conforming_strings says: unsure */
		if ((tok->prefix == 0 || tok->prefix == 'n') && memchr(tok->text, '\\', tok->len))
			return false;
		return lex_decode(tok->text, tok->len, tok->prefix, '\'', tok->uescape, out, size,
		                  len);
	default:
		return false;
	}
}

/* ------------------------------------------------------------- keywords */

/*
 * Only the words the classifier acts on have an id; KW_OTHER words matter
 * for their flags alone.
 * KWF_STMT: a statement PostgreSQL knows may start with the word.
 * KWF_NOFUNC: "word (" is syntax, never a call: PostgreSQL's reserved and
 *   column-name keywords cannot name a function unquoted.
 * KWF_CLAUSE: "word (" is syntax only after certain words (ORDER BY (,
 *   AT TIME ZONE (, x JOIN (); elsewhere the word may name a user function.
 * KWF_JOINTYPE: may stand right before JOIN.
 */
#define KWF_STMT     0x01
#define KWF_NOFUNC   0x02
#define KWF_CLAUSE   0x04
#define KWF_JOINTYPE 0x08

enum {
	KW_NONE = 0,
	KW_OTHER,
	KW_ABORT,
	KW_ALL,
	KW_ANALYZE,
	KW_AS,
	KW_ATOMIC,
	KW_AUTHORIZATION,
	KW_BEGIN,
	KW_BIT,
	KW_BY,
	KW_CALL,
	KW_CASE,
	KW_CHAR,
	KW_CHARACTER,
	KW_CHARACTERISTICS,
	KW_COMMIT,
	KW_CONSTRAINTS,
	KW_CREATE,
	KW_DEALLOCATE,
	KW_DECLARE,
	KW_DELETE,
	KW_DISCARD,
	KW_DO,
	KW_END,
	KW_EXPLAIN,
	KW_FOR,
	KW_FROM,
	KW_FUNCTION,
	KW_GLOBAL,
	KW_GROUP,
	KW_GROUPING,
	KW_HOLD,
	KW_INSERT,
	KW_INTO,
	KW_JOIN,
	KW_KEY,
	KW_LISTEN,
	KW_LOAD,
	KW_LOCAL,
	KW_MATERIALIZED,
	KW_MERGE,
	KW_NCHAR,
	KW_NO,
	KW_NOT,
	KW_ONLY,
	KW_OPERATOR,
	KW_OR,
	KW_ORDER,
	KW_ORDINALITY,
	KW_PARTITION,
	KW_PREPARE,
	KW_PROCEDURE,
	KW_READ,
	KW_RECURSIVE,
	KW_RELEASE,
	KW_REPLACE,
	KW_RESET,
	KW_ROLE,
	KW_ROLLBACK,
	KW_SAVEPOINT,
	KW_SCHEMA,
	KW_SECOND,
	KW_SELECT,
	KW_SERIALIZABLE,
	KW_SESSION,
	KW_SET,
	KW_SETS,
	KW_SHARE,
	KW_SHOW,
	KW_START,
	KW_TABLE,
	KW_TABLESAMPLE,
	KW_TEMP,
	KW_TEMPORARY,
	KW_TIME,
	KW_TO,
	KW_TRANSACTION,
	KW_TRUE,
	KW_UPDATE,
	KW_VALUES,
	KW_VARYING,
	KW_VERBOSE,
	KW_WITH,
	KW_WRITE,
	KW_ZONE,
	KW_COUNT
};

typedef struct SqlKeyword {
	const char *name;
	uint8_t id;
	uint8_t flags;
} SqlKeyword;

#define KW_MAXLEN 17

/* In alphabetical order for the reader; lookups go through kw_slots. */
static const SqlKeyword sql_keywords[] = {
        {"abort", KW_ABORT, KWF_STMT},
        {"all", KW_ALL, KWF_NOFUNC},
        {"alter", KW_OTHER, KWF_STMT},
        {"analyse", KW_ANALYZE, KWF_STMT | KWF_NOFUNC},
        {"analyze", KW_ANALYZE, KWF_STMT | KWF_NOFUNC},
        {"and", KW_OTHER, KWF_NOFUNC},
        {"any", KW_OTHER, KWF_NOFUNC},
        {"array", KW_OTHER, KWF_NOFUNC},
        {"as", KW_AS, KWF_NOFUNC},
        {"asc", KW_OTHER, KWF_NOFUNC},
        {"asymmetric", KW_OTHER, KWF_NOFUNC},
        {"atomic", KW_ATOMIC, 0},
        {"authorization", KW_AUTHORIZATION, 0},
        {"begin", KW_BEGIN, KWF_STMT},
        {"between", KW_OTHER, KWF_NOFUNC},
        {"bigint", KW_OTHER, KWF_NOFUNC},
        {"binary", KW_OTHER, 0},
        {"bit", KW_BIT, KWF_NOFUNC},
        {"boolean", KW_OTHER, KWF_NOFUNC},
        {"both", KW_OTHER, KWF_NOFUNC},
        {"by", KW_BY, KWF_CLAUSE},
        {"call", KW_CALL, KWF_STMT},
        {"case", KW_CASE, KWF_NOFUNC},
        {"cast", KW_OTHER, KWF_NOFUNC},
        {"char", KW_CHAR, KWF_NOFUNC},
        {"character", KW_CHARACTER, KWF_NOFUNC},
        {"characteristics", KW_CHARACTERISTICS, 0},
        {"check", KW_OTHER, KWF_NOFUNC},
        {"checkpoint", KW_OTHER, KWF_STMT},
        {"close", KW_OTHER, KWF_STMT},
        {"cluster", KW_OTHER, KWF_STMT},
        {"coalesce", KW_OTHER, KWF_NOFUNC},
        {"collate", KW_OTHER, KWF_NOFUNC},
        {"collation", KW_OTHER, 0},
        {"column", KW_OTHER, KWF_NOFUNC},
        {"comment", KW_OTHER, KWF_STMT},
        {"commit", KW_COMMIT, KWF_STMT},
        {"constraint", KW_OTHER, KWF_NOFUNC},
        {"constraints", KW_CONSTRAINTS, 0},
        {"copy", KW_OTHER, KWF_STMT},
        {"create", KW_CREATE, KWF_STMT | KWF_NOFUNC},
        {"cross", KW_OTHER, KWF_JOINTYPE},
        {"current_catalog", KW_OTHER, KWF_NOFUNC},
        {"current_date", KW_OTHER, KWF_NOFUNC},
        {"current_role", KW_OTHER, KWF_NOFUNC},
        {"current_time", KW_OTHER, KWF_NOFUNC},
        {"current_timestamp", KW_OTHER, KWF_NOFUNC},
        {"current_user", KW_OTHER, KWF_NOFUNC},
        {"deallocate", KW_DEALLOCATE, KWF_STMT},
        {"dec", KW_OTHER, KWF_NOFUNC},
        {"decimal", KW_OTHER, KWF_NOFUNC},
        {"declare", KW_DECLARE, KWF_STMT},
        {"default", KW_OTHER, KWF_NOFUNC},
        {"deferrable", KW_OTHER, KWF_NOFUNC},
        {"delete", KW_DELETE, KWF_STMT},
        {"desc", KW_OTHER, KWF_NOFUNC},
        {"discard", KW_DISCARD, KWF_STMT},
        {"distinct", KW_OTHER, KWF_NOFUNC},
        {"do", KW_DO, KWF_STMT | KWF_NOFUNC},
        {"drop", KW_OTHER, KWF_STMT},
        {"else", KW_OTHER, KWF_NOFUNC},
        {"end", KW_END, KWF_STMT | KWF_NOFUNC},
        {"except", KW_OTHER, KWF_NOFUNC},
        {"execute", KW_OTHER, KWF_STMT},
        {"exists", KW_OTHER, KWF_NOFUNC},
        {"explain", KW_EXPLAIN, KWF_STMT},
        {"extract", KW_OTHER, KWF_NOFUNC},
        {"false", KW_OTHER, KWF_NOFUNC},
        {"fetch", KW_OTHER, KWF_STMT | KWF_NOFUNC},
        {"float", KW_OTHER, KWF_NOFUNC},
        {"for", KW_FOR, KWF_NOFUNC},
        {"foreign", KW_OTHER, KWF_NOFUNC},
        {"from", KW_FROM, KWF_NOFUNC},
        {"full", KW_OTHER, KWF_JOINTYPE},
        {"function", KW_FUNCTION, 0},
        {"global", KW_GLOBAL, 0},
        {"grant", KW_OTHER, KWF_STMT | KWF_NOFUNC},
        {"greatest", KW_OTHER, KWF_NOFUNC},
        {"group", KW_GROUP, KWF_NOFUNC},
        {"grouping", KW_GROUPING, KWF_NOFUNC},
        {"having", KW_OTHER, KWF_NOFUNC},
        {"hold", KW_HOLD, 0},
        {"import", KW_OTHER, KWF_STMT},
        {"in", KW_OTHER, KWF_NOFUNC},
        {"initially", KW_OTHER, KWF_NOFUNC},
        {"inner", KW_OTHER, KWF_JOINTYPE},
        {"inout", KW_OTHER, KWF_NOFUNC},
        {"insert", KW_INSERT, KWF_STMT},
        {"int", KW_OTHER, KWF_NOFUNC},
        {"integer", KW_OTHER, KWF_NOFUNC},
        {"intersect", KW_OTHER, KWF_NOFUNC},
        {"interval", KW_OTHER, KWF_NOFUNC},
        {"into", KW_INTO, KWF_NOFUNC},
        {"join", KW_JOIN, KWF_CLAUSE},
        {"json", KW_OTHER, KWF_NOFUNC},
        {"json_array", KW_OTHER, KWF_NOFUNC},
        {"json_arrayagg", KW_OTHER, KWF_NOFUNC},
        {"json_exists", KW_OTHER, KWF_NOFUNC},
        {"json_object", KW_OTHER, KWF_NOFUNC},
        {"json_objectagg", KW_OTHER, KWF_NOFUNC},
        {"json_query", KW_OTHER, KWF_NOFUNC},
        {"json_scalar", KW_OTHER, KWF_NOFUNC},
        {"json_serialize", KW_OTHER, KWF_NOFUNC},
        {"json_table", KW_OTHER, KWF_NOFUNC},
        {"json_value", KW_OTHER, KWF_NOFUNC},
        {"key", KW_KEY, 0},
        {"lateral", KW_OTHER, KWF_NOFUNC},
        {"leading", KW_OTHER, KWF_NOFUNC},
        {"least", KW_OTHER, KWF_NOFUNC},
        {"limit", KW_OTHER, KWF_NOFUNC},
        {"listen", KW_LISTEN, KWF_STMT},
        {"load", KW_LOAD, KWF_STMT},
        {"local", KW_LOCAL, 0},
        {"localtime", KW_OTHER, KWF_NOFUNC},
        {"localtimestamp", KW_OTHER, KWF_NOFUNC},
        {"lock", KW_OTHER, KWF_STMT},
        {"materialized", KW_MATERIALIZED, KWF_CLAUSE},
        {"merge", KW_MERGE, KWF_STMT},
        {"merge_action", KW_OTHER, KWF_NOFUNC},
        {"move", KW_OTHER, KWF_STMT},
        {"national", KW_OTHER, KWF_NOFUNC},
        {"natural", KW_OTHER, KWF_JOINTYPE},
        {"nchar", KW_NCHAR, KWF_NOFUNC},
        {"no", KW_NO, 0},
        {"none", KW_OTHER, KWF_NOFUNC},
        {"normalize", KW_OTHER, KWF_NOFUNC},
        {"not", KW_NOT, KWF_NOFUNC},
        {"notify", KW_OTHER, KWF_STMT},
        {"null", KW_OTHER, KWF_NOFUNC},
        {"nullif", KW_OTHER, KWF_NOFUNC},
        {"numeric", KW_OTHER, KWF_NOFUNC},
        {"offset", KW_OTHER, KWF_NOFUNC},
        {"on", KW_OTHER, KWF_NOFUNC},
        {"only", KW_ONLY, KWF_NOFUNC},
        {"operator", KW_OPERATOR, KWF_NOFUNC},
        {"or", KW_OR, KWF_NOFUNC},
        {"order", KW_ORDER, KWF_NOFUNC},
        {"ordinality", KW_ORDINALITY, 0},
        {"out", KW_OTHER, KWF_NOFUNC},
        {"outer", KW_OTHER, KWF_JOINTYPE},
        {"overlay", KW_OTHER, KWF_NOFUNC},
        {"partition", KW_PARTITION, 0},
        {"placing", KW_OTHER, KWF_NOFUNC},
        {"position", KW_OTHER, KWF_NOFUNC},
        {"precision", KW_OTHER, KWF_NOFUNC},
        {"prepare", KW_PREPARE, KWF_STMT},
        {"primary", KW_OTHER, KWF_NOFUNC},
        {"procedure", KW_PROCEDURE, 0},
        {"read", KW_READ, 0},
        {"real", KW_OTHER, KWF_NOFUNC},
        {"reassign", KW_OTHER, KWF_STMT},
        {"recursive", KW_RECURSIVE, 0},
        {"references", KW_OTHER, KWF_NOFUNC},
        {"refresh", KW_OTHER, KWF_STMT},
        {"reindex", KW_OTHER, KWF_STMT},
        {"release", KW_RELEASE, KWF_STMT},
        {"replace", KW_REPLACE, 0},
        {"reset", KW_RESET, KWF_STMT},
        {"returning", KW_OTHER, KWF_NOFUNC},
        {"revoke", KW_OTHER, KWF_STMT},
        {"role", KW_ROLE, 0},
        {"rollback", KW_ROLLBACK, KWF_STMT},
        {"row", KW_OTHER, KWF_NOFUNC},
        {"savepoint", KW_SAVEPOINT, KWF_STMT},
        {"schema", KW_SCHEMA, 0},
        {"second", KW_SECOND, KWF_CLAUSE},
        {"security", KW_OTHER, KWF_STMT},
        {"select", KW_SELECT, KWF_STMT | KWF_NOFUNC},
        {"serializable", KW_SERIALIZABLE, 0},
        {"session", KW_SESSION, 0},
        {"session_user", KW_OTHER, KWF_NOFUNC},
        {"set", KW_SET, KWF_STMT | KWF_NOFUNC},
        {"setof", KW_OTHER, KWF_NOFUNC},
        {"sets", KW_SETS, KWF_CLAUSE},
        {"share", KW_SHARE, 0},
        {"show", KW_SHOW, KWF_STMT},
        {"smallint", KW_OTHER, KWF_NOFUNC},
        {"some", KW_OTHER, KWF_NOFUNC},
        {"start", KW_START, KWF_STMT},
        {"substring", KW_OTHER, KWF_NOFUNC},
        {"symmetric", KW_OTHER, KWF_NOFUNC},
        {"system_user", KW_OTHER, KWF_NOFUNC},
        {"table", KW_TABLE, KWF_STMT | KWF_NOFUNC},
        {"tablesample", KW_TABLESAMPLE, 0},
        {"temp", KW_TEMP, 0},
        {"temporary", KW_TEMPORARY, 0},
        {"then", KW_OTHER, KWF_NOFUNC},
        {"time", KW_TIME, KWF_NOFUNC},
        {"timestamp", KW_OTHER, KWF_NOFUNC},
        {"to", KW_TO, KWF_NOFUNC},
        {"trailing", KW_OTHER, KWF_NOFUNC},
        {"transaction", KW_TRANSACTION, 0},
        {"treat", KW_OTHER, KWF_NOFUNC},
        {"trim", KW_OTHER, KWF_NOFUNC},
        {"true", KW_TRUE, KWF_NOFUNC},
        {"truncate", KW_OTHER, KWF_STMT},
        {"union", KW_OTHER, KWF_NOFUNC},
        {"unique", KW_OTHER, KWF_NOFUNC},
        {"unlisten", KW_OTHER, KWF_STMT},
        {"update", KW_UPDATE, KWF_STMT},
        {"user", KW_OTHER, KWF_NOFUNC},
        {"using", KW_OTHER, KWF_NOFUNC},
        {"vacuum", KW_OTHER, KWF_STMT},
        {"values", KW_VALUES, KWF_STMT | KWF_NOFUNC},
        {"varchar", KW_OTHER, KWF_NOFUNC},
        {"variadic", KW_OTHER, KWF_NOFUNC},
        {"varying", KW_VARYING, KWF_CLAUSE},
        {"verbose", KW_VERBOSE, 0},
        {"when", KW_OTHER, KWF_NOFUNC},
        {"where", KW_OTHER, KWF_NOFUNC},
        {"window", KW_OTHER, KWF_NOFUNC},
        {"with", KW_WITH, KWF_STMT | KWF_NOFUNC},
        {"write", KW_WRITE, 0},
        {"xmlattributes", KW_OTHER, KWF_NOFUNC},
        {"xmlconcat", KW_OTHER, KWF_NOFUNC},
        {"xmlelement", KW_OTHER, KWF_NOFUNC},
        {"xmlexists", KW_OTHER, KWF_NOFUNC},
        {"xmlforest", KW_OTHER, KWF_NOFUNC},
        {"xmlnamespaces", KW_OTHER, KWF_NOFUNC},
        {"xmlparse", KW_OTHER, KWF_NOFUNC},
        {"xmlpi", KW_OTHER, KWF_NOFUNC},
        {"xmlroot", KW_OTHER, KWF_NOFUNC},
        {"xmlserialize", KW_OTHER, KWF_NOFUNC},
        {"xmltable", KW_OTHER, KWF_NOFUNC},
        {"zone", KW_ZONE, KWF_CLAUSE},
};

/* Folds ASCII letters of an unquoted name to lower case into buf (size > len). */
static void name_fold(const char *s, size_t len, char *buf)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
	}
	buf[len] = '\0';
}

static uint32_t name_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

/*
 * Every identifier of every query is looked up, so the constant name tables
 * are indexed by open-addressing hash sets (slot = table index + 1, 0 =
 * empty) instead of being searched. They are filled once before main()
 * runs, which keeps an "initialized yet?" test and any race off the hot
 * path.
 */
#define NAMESET_SLOTS 1024 /* a power of two, kept under half full */

static uint16_t kw_slots[NAMESET_SLOTS];
static uint16_t fn_slots[NAMESET_SLOTS];

#define NAMESET_NEXT(i) (((i) + 1) & (NAMESET_SLOTS - 1))

static void nameset_add(uint16_t *slots, const char *name, size_t idx)
{
	uint32_t i = name_hash(name, strlen(name)) & (NAMESET_SLOTS - 1);

	while (slots[i])
		i = NAMESET_NEXT(i);
	slots[i] = (uint16_t)(idx + 1);
}

/*
 * Keywords are compared as three 64-bit words: a name of at most KW_MAXLEN bytes,
 * zero-padded and folded to lower case a word at a time, then one hash of the
 * words and at most a few word compares. Every identifier of every statement
 * goes through here, so it avoids a byte loop and a string compare.
 */
#define KW_WORDS 3
_Static_assert(KW_MAXLEN <= KW_WORDS * 8, "a keyword fits the packed words");

static uint64_t kw_packed[ARRAY_SIZE(sql_keywords)][KW_WORDS];

/* Adds 0x20 to each byte 'A'..'Z' of x; every other byte (>= 0x80 too) stays. */
static inline uint64_t fold_word(uint64_t x)
{
	const uint64_t high = 0x8080808080808080ULL;
	uint64_t low7 = x & ~high;
	uint64_t ge_a = low7 + 0x3f3f3f3f3f3f3f3fULL; /* high bit set where the byte >= 'A' */
	uint64_t gt_z = low7 + 0x2525252525252525ULL; /* ... where it is > 'Z' */

	return x | ((ge_a & ~gt_z & ~x & high) >> 2);
}

/*
 * w = the len bytes at s, zero-padded and folded. When room bytes can be read at s (the
 * rest of the query text), whole words are loaded and masked instead of copied.
 */
static inline void kw_pack(const char *s, size_t len, size_t room, uint64_t w[KW_WORDS])
{
	if (room >= KW_WORDS * 8) {
		for (size_t i = 0; i < KW_WORDS; i++) {
			size_t have = len > 8 * i ? len - 8 * i : 0;
			uint64_t x;
			memcpy(&x, s + 8 * i, 8);
			if (have < 8)
				x &= have ? (1ULL << (8 * have)) - 1 : 0;
			w[i] = x;
		}
	} else {
		char buf[KW_WORDS * 8] = {0};
		memcpy(buf, s, len);
		memcpy(w, buf, sizeof(buf));
	}
	for (size_t i = 0; i < KW_WORDS && 8 * i < len; i++)
		w[i] = fold_word(w[i]);
}

static inline uint32_t kw_hash(const uint64_t w[KW_WORDS])
{
	uint64_t h = (w[0] * 0x9e3779b97f4a7c15ULL) ^ (w[1] * 0xc2b2ae3d27d4eb4fULL) ^
	             (w[2] * 0x165667b19e3779f9ULL);

	return (uint32_t)(h >> 40) & (NAMESET_SLOTS - 1);
}

/* The keyword that the len bytes at s spell (room: bytes readable at s), or NULL. */
static const SqlKeyword *kw_lookup(const char *s, size_t len, size_t room)
{
	uint64_t w[KW_WORDS];

	if (len == 0 || len > KW_MAXLEN)
		return NULL;
	kw_pack(s, len, room, w);
	for (uint32_t i = kw_hash(w); kw_slots[i]; i = NAMESET_NEXT(i)) {
		const uint64_t *k = kw_packed[kw_slots[i] - 1];
		if (k[0] == w[0] && k[1] == w[1] && k[2] == w[2])
			return &sql_keywords[kw_slots[i] - 1];
	}
	return NULL;
}

/* ---------------------------------------------- read-only built-in functions */

/*
 * Built-in functions that neither write nor leave session state, so a
 * query calling only these may run on a replica. Deliberately absent:
 * nextval, setval, currval, lastval (sequences: writes or session-bound),
 * set_config, setseed, pg_advisory_* (session state), txid_current and
 * pg_current_xact_id (assign an xid), pg_notify, lo_*, dblink*, and every
 * function not named here. Alphabetical; lookups go through fn_slots.
 */
/* clang-format off */
static const char *const sql_ro_functions[] = {
	"abbrev", "abs", "acos", "acosd", "acosh", "age", "any_value", "array_agg",
	"array_append", "array_cat", "array_dims", "array_fill", "array_length", "array_lower",
	"array_ndims", "array_position", "array_positions", "array_prepend", "array_remove",
	"array_replace", "array_to_json", "array_to_string", "array_upper", "ascii", "asin",
	"asind", "asinh", "atan", "atan2", "atan2d", "atand", "atanh", "avg", "bit_and",
	"bit_length", "bit_or", "bit_xor", "bool", "bool_and", "bool_or", "bpchar", "broadcast",
	"btrim", "cardinality", "cbrt", "ceil", "ceiling", "char_length", "character_length",
	"chr", "clock_timestamp", "col_description", "concat", "concat_ws", "convert",
	"convert_from", "convert_to", "corr", "cos", "cosd", "cosh", "cot", "count", "covar_pop",
	"covar_samp", "cume_dist", "current_database", "current_schema", "current_schemas",
	"current_setting", "date", "date_add", "date_bin", "date_part", "date_subtract",
	"date_trunc", "daterange", "decode", "degrees", "dense_rank", "div", "encode", "erf",
	"erfc", "every", "exp", "factorial", "family", "first_value", "float4", "float8", "floor",
	"format", "format_type", "gcd", "gen_random_uuid", "generate_series",
	"generate_subscripts", "has_column_privilege", "has_database_privilege",
	"has_function_privilege", "has_schema_privilege", "has_sequence_privilege",
	"has_table_privilege", "hashtext", "host", "ilike", "inet_client_addr",
	"inet_client_port", "inet_server_addr", "inet_server_port", "initcap", "int2", "int4",
	"int4range", "int8", "int8range", "isempty", "isfinite", "json_agg",
	"json_array_elements", "json_array_elements_text", "json_array_length",
	"json_build_array", "json_build_object", "json_each", "json_each_text",
	"json_extract_path", "json_extract_path_text", "json_object", "json_object_agg",
	"json_object_keys", "json_populate_record", "json_populate_recordset", "json_strip_nulls",
	"json_to_record", "json_to_recordset", "json_typeof", "jsonb_agg", "jsonb_array_elements",
	"jsonb_array_elements_text", "jsonb_array_length", "jsonb_build_array",
	"jsonb_build_object", "jsonb_each", "jsonb_each_text", "jsonb_extract_path",
	"jsonb_extract_path_text", "jsonb_insert", "jsonb_object", "jsonb_object_agg",
	"jsonb_object_keys", "jsonb_path_exists", "jsonb_path_match", "jsonb_path_query",
	"jsonb_path_query_array", "jsonb_path_query_first", "jsonb_populate_record",
	"jsonb_populate_recordset", "jsonb_pretty", "jsonb_set", "jsonb_set_lax",
	"jsonb_strip_nulls", "jsonb_to_record", "jsonb_to_recordset", "jsonb_typeof",
	"justify_days", "justify_hours", "justify_interval", "lag", "last_value", "lcm", "lead",
	"left", "length", "like", "like_escape", "ln", "log", "log10", "lower", "lower_inc",
	"lower_inf", "lpad", "ltrim", "make_date", "make_interval", "make_time", "make_timestamp",
	"make_timestamptz", "masklen", "max", "md5", "min", "min_scale", "mod", "mode", "name",
	"netmask", "network", "notilike", "notlike", "now", "nth_value", "ntile", "num_nonnulls",
	"num_nulls", "numnode", "numrange", "obj_description", "octet_length", "oid", "overlaps",
	"overlay", "percent_rank", "percentile_cont", "percentile_disc", "pg_backend_pid",
	"pg_client_encoding", "pg_column_size", "pg_conf_load_time", "pg_database_size",
	"pg_encoding_to_char", "pg_function_is_visible", "pg_get_constraintdef", "pg_get_expr",
	"pg_get_function_arguments", "pg_get_function_result", "pg_get_functiondef",
	"pg_get_indexdef", "pg_get_triggerdef", "pg_get_userbyid", "pg_get_viewdef",
	"pg_has_role", "pg_indexes_size", "pg_is_in_recovery", "pg_is_wal_replay_paused", "pg_last_wal_receive_lsn", "pg_last_wal_replay_lsn", "pg_last_xact_replay_timestamp", "pg_postmaster_start_time", "pg_relation_size",
	"pg_size_pretty", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_table_is_visible",
	"pg_table_size", "pg_total_relation_size", "pg_type_is_visible", "pg_typeof",
	"phraseto_tsquery", "pi", "plainto_tsquery", "position", "pow", "power", "querytree",
	"quote_ident", "quote_literal", "quote_nullable", "radians", "random", "random_normal",
	"range_agg", "range_intersect_agg", "range_merge", "rank", "regclass", "regexp_count",
	"regexp_instr", "regexp_like", "regexp_match", "regexp_matches", "regexp_replace",
	"regexp_split_to_array", "regexp_split_to_table", "regexp_substr", "regr_avgx",
	"regr_avgy", "regr_count", "regr_intercept", "regr_r2", "regr_slope", "regr_sxx",
	"regr_sxy", "regr_syy", "repeat", "replace", "reverse", "right", "round", "row_number",
	"row_to_json", "rpad", "rtrim", "scale", "setweight", "sha224", "sha256", "sha384",
	"sha512", "shobj_description", "sign", "similar_to_escape", "sin", "sind", "sinh",
	"split_part", "sqrt", "starts_with", "statement_timestamp", "stddev", "stddev_pop",
	"stddev_samp", "string_agg", "string_to_array", "string_to_table", "strip", "strpos",
	"substr", "substring", "sum", "tan", "tand", "tanh", "text", "timeofday", "to_ascii",
	"to_bin", "to_char", "to_date", "to_hex", "to_json", "to_jsonb", "to_number", "to_oct",
	"to_regclass", "to_regnamespace", "to_regproc", "to_regprocedure", "to_regrole",
	"to_regtype", "to_timestamp", "to_tsquery", "to_tsvector", "transaction_timestamp",
	"translate", "trim_array", "trim_scale", "trunc", "ts_headline", "ts_rank", "ts_rank_cd",
	"tsrange", "tstzrange", "unistr", "unnest", "upper", "upper_inc", "upper_inf", "var_pop",
	"var_samp", "variance", "version", "websearch_to_tsquery", "width_bucket", "xmlagg"
};
/* clang-format on */

#define FN_MAXLEN 40

_Static_assert(ARRAY_SIZE(sql_keywords) < NAMESET_SLOTS / 2, "keyword hash set too full");
_Static_assert(ARRAY_SIZE(sql_ro_functions) < NAMESET_SLOTS / 2, "function hash set too full");

__attribute__((constructor)) static void sqllex_build_name_sets(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(sql_keywords); i++) {
		uint32_t slot;
		kw_pack(sql_keywords[i].name, strlen(sql_keywords[i].name), 0, kw_packed[i]);
		for (slot = kw_hash(kw_packed[i]); kw_slots[slot]; slot = NAMESET_NEXT(slot))
			;
		kw_slots[slot] = (uint16_t)(i + 1);
	}
	for (size_t i = 0; i < ARRAY_SIZE(sql_ro_functions); i++)
		nameset_add(fn_slots, sql_ro_functions[i], i);
}

/* ------------------------------------------------------------- analyzer */

/* Deeper nesting than this is tracked for splitting but loses CTE/alias context (so: not
 * read-only). */
#define SQL_MAX_DEPTH 64
#define SQL_RING      4

/* What opened a parenthesis, remembered until it closes. */
enum { PK_OTHER = 0, PK_OPERATOR, PK_UNKNOWN };

enum { TXN_NONE = 0, TXN_BEGIN, TXN_SET };

/* Flags that keep a batch off the replicas whatever its statements are. */
#define SQLF_NOT_READ_ONLY                                                                         \
	(SQLF_STATE_UNKNOWN | SQLF_SESSION_STATE | SQLF_UNPARSED | SQLF_SERIALIZABLE | SQLF_SHOW)

typedef struct Tok {
	SqlToken t;
	uint8_t kw;  /* keyword id of an IDENT, KW_NONE otherwise */
	uint8_t kwf; /* its KWF_* flags */
} Tok;

typedef struct Stmt {
	size_t offset; /* of the statement's first token */
	unsigned flags;
	SqlGuard guard;
	int lead;     /* keyword that decides what the statement is */
	int txn;      /* TXN_*: where READ ONLY / READ WRITE count */
	int atomic;   /* BEGIN ATOMIC ... END nesting: its ';' do not end the statement */
	bool ro;      /* still read-only for certain */
	bool query;   /* SELECT/WITH/TABLE/VALUES (or EXPLAIN of one): INTO creates a table */
	bool routine; /* CREATE FUNCTION/PROCEDURE */
	bool ro_tx;   /* READ ONLY seen */
	bool rw;      /* READ WRITE seen */
	uint8_t last_closed;
	unsigned head; /* ring index of the newest token */
	Tok prev[SQL_RING];
	uint8_t pkind[SQL_MAX_DEPTH]; /* PK_* of the paren opened at each depth */
	bool cte[SQL_MAX_DEPTH];      /* a WITH list is open at this depth */
} Stmt;

typedef struct Analyzer {
	SqlLexer lx;
	const char *tenant_guc;
	const char *extra_ro;
	SqlInfo *out;
} Analyzer;

static SqlTokType tok_next(SqlLexer *lx, Tok *t)
{
	SqlTokType type = sqllex_next(lx, &t->t);

	t->kw = KW_NONE;
	t->kwf = 0;
	if (type == SQLTOK_IDENT) {
		const SqlKeyword *k =
		        kw_lookup(t->t.text, t->t.len, (size_t)(lx->s + lx->len - t->t.text));
		if (k) {
			t->kw = k->id;
			t->kwf = k->flags;
		}
	}
	return type;
}

/* Does the name token t say w (lower case), folding case as PostgreSQL does (unquoted only)? */
static bool tok_names_n(const Tok *t, const char *w, size_t wlen)
{
	char buf[64];
	size_t n;

	if (t->t.type == SQLTOK_IDENT)
		return t->t.len == wlen && strncasecmp(t->t.text, w, wlen) == 0;
	if (t->t.type != SQLTOK_QIDENT)
		return false;
	if (t->t.prefix != 'u' &&
	    !memchr(t->t.text, '"', t->t.len)) /* the common case: as written */
		return t->t.len == wlen && memcmp(t->t.text, w, wlen) == 0;
	return sqltok_value(&t->t, buf, sizeof(buf), &n) && n == wlen && memcmp(buf, w, wlen) == 0;
}

/* A U& name whose escapes do not decode: what it names cannot be known. */
static bool tok_undecodable(const Tok *t)
{
	char buf[256];
	size_t n;

	return t->t.type == SQLTOK_QIDENT && t->t.prefix == 'u' &&
	       !sqltok_value(&t->t, buf, sizeof(buf), &n);
}

/* Does the name token t start with the lower-case prefix w (pg_temp, pg_temp_3)? */
static bool tok_name_starts(const Tok *t, const char *w)
{
	char buf[64];
	size_t n, wlen = strlen(w);

	return (t->t.type == SQLTOK_IDENT || t->t.type == SQLTOK_QIDENT) &&
	       sqltok_value(&t->t, buf, sizeof(buf), &n) && n >= wlen &&
	       strncasecmp(buf, w, wlen) == 0;
}

#define tok_names(t, lit) tok_names_n((t), (lit), sizeof(lit) - 1)

static bool tok_is_name(const Tok *t)
{
	return t->t.type == SQLTOK_IDENT || t->t.type == SQLTOK_QIDENT;
}

static bool tok_is_op(const Tok *t, const char *op)
{
	size_t n = strlen(op);
	return t->t.type == SQLTOK_OP && t->t.len == n && memcmp(t->t.text, op, n) == 0;
}

static bool str_eq_ci(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && strncasecmp(a, b, alen) == 0;
}

/* GUC names compare case-insensitively in PostgreSQL, quoted or not. */
static SqlGuard guard_for_guc(const Analyzer *an, const char *name, size_t len)
{
	if (str_eq_ci(name, len, "search_path", 11))
		return SQL_GUARD_SEARCH_PATH;
	if (an->tenant_guc && str_eq_ci(name, len, an->tenant_guc, strlen(an->tenant_guc)))
		return SQL_GUARD_TENANT_GUC;
	if (str_eq_ci(name, len, "role", 4))
		return SQL_GUARD_ROLE;
	if (str_eq_ci(name, len, "session_authorization", 21))
		return SQL_GUARD_SESSION_AUTH;
	return SQL_GUARD_OK;
}

static void stmt_guard(Stmt *st, SqlGuard g)
{
	if (st->guard == SQL_GUARD_OK)
		st->guard = g;
}

static const Tok *stmt_prev(const Stmt *st, unsigned k)
{
	return &st->prev[(st->head - k) % SQL_RING];
}

/*
 * Reads a GUC name starting at *t — parts joined by '.', each part's value
 * as PostgreSQL reads it (sqltok_value: folded, undoubled, U& escapes
 * decoded) — into buf, leaving *t on the token after it. Returns the number
 * of parts (0: not a name); *len is SIZE_MAX when a part did not decode or
 * the name did not fit, so the name cannot be known.
 */
static int guc_name(SqlLexer *p, Tok *t, char *buf, size_t size, size_t *len)
{
	size_t n = 0, part;
	int parts = 0;
	bool known = true;

	while (tok_is_name(t)) {
		if (parts && known) {
			if (n + 1 < size)
				buf[n++] = '.';
			else
				known = false;
		}
		if (known && sqltok_value(&t->t, buf + n, size - n, &part))
			n += part;
		else
			known = false;
		parts++;
		tok_next(p, t);
		if (t->t.type != SQLTOK_DOT)
			break;
		tok_next(p, t);
	}
	*len = known ? n : SIZE_MAX;
	return parts;
}

/* SET [SESSION | LOCAL] ... */
static void stmt_head_set(Analyzer *an, Stmt *st, SqlLexer *p)
{
	Tok t, first;
	char name[256];
	size_t len;
	bool local = false;
	int parts;
	SqlGuard g;

	tok_next(p, &t);
	if (t.kw == KW_SESSION || t.kw == KW_LOCAL) {
		SqlLexer q = *p;
		Tok u;
		tok_next(&q, &u);
		if (t.kw == KW_SESSION && u.kw == KW_CHARACTERISTICS) {
			/* Changes the defaults of every later transaction of the session. */
			st->flags |= SQLF_SESSION_STATE;
			return;
		}
		if (t.kw == KW_SESSION && u.kw == KW_AUTHORIZATION) {
			stmt_guard(st, SQL_GUARD_SESSION_AUTH);
			return;
		}
		local = t.kw == KW_LOCAL;
		*p = q;
		t = u;
	}
	first = t;
	parts = guc_name(p, &t, name, sizeof(name), &len);
	if (parts == 0) {
		st->flags |= SQLF_STATE_UNKNOWN;
		return;
	}
	if (parts == 1 && first.t.type == SQLTOK_IDENT) {
		switch (first.kw) {
		case KW_SCHEMA:
			stmt_guard(st, SQL_GUARD_SEARCH_PATH);
			return;
		case KW_TRANSACTION:
			st->txn = TXN_SET;
			return;
		case KW_CONSTRAINTS:
			return;
		case KW_SESSION:
			if (t.kw == KW_AUTHORIZATION) {
				stmt_guard(st, SQL_GUARD_SESSION_AUTH);
				return;
			}
			break;
		default:
			break;
		}
	}
	if (len == SIZE_MAX) {
		st->flags |= SQLF_STATE_UNKNOWN;
		return;
	}
	g = guard_for_guc(an, name, len);
	if (g != SQL_GUARD_OK) {
		stmt_guard(st, g);
		return;
	}
	if ((str_eq_ci(name, len, "default_transaction_isolation", 29) ||
	     str_eq_ci(name, len, "transaction_isolation", 21))) {
		/* The value may be a string; an unquoted SERIALIZABLE is caught as a keyword. */
		if (t.kw != KW_NONE || tok_is_op(&t, "="))
			tok_next(p, &t);
		if (t.t.type == SQLTOK_STRING && str_eq_ci(t.t.text, t.t.len, "serializable", 12))
			st->flags |= SQLF_SERIALIZABLE;
	}
	if (!local)
		st->flags |= SQLF_SESSION_STATE;
}

/* RESET ... */
static void stmt_head_reset(Analyzer *an, Stmt *st, SqlLexer *p)
{
	Tok t, first;
	char name[256];
	size_t len;
	int parts;
	SqlGuard g;

	tok_next(p, &t);
	first = t;
	parts = guc_name(p, &t, name, sizeof(name), &len);
	if (parts == 0) {
		st->flags |= SQLF_STATE_UNKNOWN;
		return;
	}
	if (parts == 1 && first.t.type == SQLTOK_IDENT) {
		switch (first.kw) {
		case KW_ALL:
			st->flags |= SQLF_RESETS_STATE;
			return;
		case KW_SESSION:
			if (t.kw == KW_AUTHORIZATION) {
				stmt_guard(st, SQL_GUARD_SESSION_AUTH);
				return;
			}
			break;
		case KW_TRANSACTION: /* RESET TRANSACTION ISOLATION LEVEL: this transaction only */
			return;
		default:
			break;
		}
	}
	if (len == SIZE_MAX) {
		st->flags |= SQLF_STATE_UNKNOWN;
		return;
	}
	g = guard_for_guc(an, name, len);
	if (g != SQL_GUARD_OK)
		stmt_guard(st, g);
	else
		st->flags |= SQLF_SESSION_STATE;
}

/* CREATE [OR REPLACE] [GLOBAL | LOCAL] [TEMP | TEMPORARY] ... */
static void stmt_head_create(Stmt *st, SqlLexer *p)
{
	Tok t;

	tok_next(p, &t);
	if (t.kw == KW_OR) {
		tok_next(p, &t);
		if (t.kw == KW_REPLACE)
			tok_next(p, &t);
	}
	while (t.kw == KW_GLOBAL || t.kw == KW_LOCAL)
		tok_next(p, &t);
	if (t.kw == KW_TEMP || t.kw == KW_TEMPORARY)
		st->flags |= SQLF_SESSION_STATE;
	else if (t.kw == KW_FUNCTION || t.kw == KW_PROCEDURE)
		st->routine = true;
}

static bool kw_starts_query(int kw)
{
	return kw == KW_SELECT || kw == KW_WITH || kw == KW_TABLE || kw == KW_VALUES;
}

/* EXPLAIN [ANALYZE] [VERBOSE] stmt | EXPLAIN ( option, ... ) stmt */
static void stmt_head_explain(Stmt *st, SqlLexer *p)
{
	Tok t;
	bool analyze = false;

	tok_next(p, &t);
	if (t.t.type == SQLTOK_LPAREN) {
		int open = 1;
		while (open > 0) {
			switch (tok_next(p, &t)) {
			case SQLTOK_LPAREN:
				open++;
				break;
			case SQLTOK_RPAREN:
				open--;
				break;
			case SQLTOK_IDENT:
				/* Even ANALYZE false: not worth the risk of misreading. */
				if (t.kw == KW_ANALYZE)
					analyze = true;
				break;
			case SQLTOK_EOF:
			case SQLTOK_ERROR:
			case SQLTOK_SEMI:
				return;
			default:
				break;
			}
		}
		tok_next(p, &t);
	} else {
		while (t.kw == KW_ANALYZE || t.kw == KW_VERBOSE) {
			if (t.kw == KW_ANALYZE)
				analyze = true;
			tok_next(p, &t);
		}
	}
	while (t.t.type == SQLTOK_LPAREN)
		tok_next(p, &t);
	if (t.t.type == SQLTOK_IDENT && kw_starts_query(t.kw)) {
		st->query = true;
		st->ro = !analyze;
	}
}

static void stmt_begin(Analyzer *an, Stmt *st, const Tok *first)
{
	SqlLexer p = an->lx;
	Tok t = *first;

	st->offset = first->t.offset;
	st->flags = 0;
	st->guard = SQL_GUARD_OK;
	st->lead = KW_NONE;
	st->txn = TXN_NONE;
	st->atomic = 0;
	st->ro = st->query = st->routine = st->ro_tx = st->rw = false;
	st->last_closed = PK_UNKNOWN;
	st->head = 0;
	memset(st->prev, 0, sizeof(st->prev));
	st->cte[0] = false;

	while (t.t.type == SQLTOK_LPAREN)
		tok_next(&p, &t);
	if (t.t.type != SQLTOK_IDENT || !(t.kwf & KWF_STMT) ||
	    (first->t.type == SQLTOK_LPAREN && !kw_starts_query(t.kw))) {
		/* Not a statement we know: it could do anything to the session. */
		st->flags |= SQLF_STATE_UNKNOWN;
		return;
	}
	st->lead = t.kw;
	switch (t.kw) {
	case KW_SELECT:
	case KW_WITH:
	case KW_TABLE:
	case KW_VALUES:
		st->query = st->ro = true;
		break;
	case KW_EXPLAIN:
		stmt_head_explain(st, &p);
		break;
	case KW_SET:
		stmt_head_set(an, st, &p);
		break;
	case KW_RESET:
		stmt_head_reset(an, st, &p);
		break;
	case KW_SHOW:
		st->flags |= SQLF_SHOW;
		break;
	case KW_BEGIN:
	case KW_START:
		/* Read-only for certain only as BEGIN READ ONLY; decided at the end. */
		st->flags |= SQLF_TX_CONTROL;
		st->txn = TXN_BEGIN;
		st->ro = true;
		break;
	case KW_COMMIT:
	case KW_END:
	case KW_ROLLBACK:
	case KW_ABORT:
	case KW_SAVEPOINT:
	case KW_RELEASE:
		st->flags |= SQLF_TX_CONTROL;
		break;
	case KW_PREPARE:
		tok_next(&p, &t);
		st->flags |= t.kw == KW_TRANSACTION ? SQLF_TX_CONTROL : SQLF_SESSION_STATE;
		break;
	case KW_LISTEN:
		st->flags |= SQLF_SESSION_STATE;
		break;
	case KW_DO:
	case KW_CALL:
	case KW_LOAD:
		st->flags |= SQLF_STATE_UNKNOWN;
		break;
	case KW_DISCARD:
		tok_next(&p, &t);
		if (t.kw == KW_ALL)
			st->flags |= SQLF_RESETS_STATE | SQLF_DEALLOCATE_ALL;
		break;
	case KW_DEALLOCATE:
		/* DEALLOCATE [PREPARE] name | ALL: the session's prepared statements are pgtenant's
		 * too */
		tok_next(&p, &t);
		if (t.kw == KW_PREPARE)
			tok_next(&p, &t);
		st->flags |= t.kw == KW_ALL ? SQLF_DEALLOCATE_ALL : SQLF_DEALLOCATE;
		break;
	case KW_CREATE:
		stmt_head_create(st, &p);
		break;
	default:
		break;
	}
}

/* The value of a string literal (any spelling), when the lexer can be sure of it. */
static bool lit_value(const Tok *t, char *buf, size_t size, size_t *len)
{
	return t->t.type == SQLTOK_STRING && sqltok_value(&t->t, buf, size, len);
}

/* A literal boolean true as PostgreSQL's boolin reads it. */
static bool lit_true(const Tok *t)
{
	static const char *const yes[] = {"t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"};
	char v[8];
	size_t n;

	if (t->t.type == SQLTOK_IDENT)
		return t->kw == KW_TRUE;
	if (!lit_value(t, v, sizeof(v), &n))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		if (str_eq_ci(v, n, yes[i], strlen(yes[i])))
			return true;
	return false;
}

/* Skips "::type" casts (qualified names, no modifiers) after a literal; *t ends past them. */
static void skip_casts(SqlLexer *p, Tok *t)
{
	while (tok_is_op(t, "::")) {
		do {
			if (tok_next(p, t) != SQLTOK_IDENT && t->t.type != SQLTOK_QIDENT)
				return;
			tok_next(p, t);
		} while (t->t.type == SQLTOK_DOT);
	}
}

/*
 * set_config(name, value, is_local): a literal name is guarded like SET; a
 * computed one could be anything; a session-wide change of another GUC
 * leaves state. lp is the call's '('; the lexer stands just after it.
 */
static void stmt_set_config(Analyzer *an, Stmt *st, const Tok *lp)
{
	SqlLexer p = an->lx;
	int d = lp->t.depth + 1, wrap = 0;
	Tok name, t;
	SqlGuard g;
	char value[256];
	size_t vlen;

	tok_next(&p, &name);
	while (name.t.type == SQLTOK_LPAREN) {
		wrap++;
		tok_next(&p, &name);
	}
	if (!lit_value(&name, value, sizeof(value), &vlen)) {
		st->flags |= SQLF_STATE_UNKNOWN;
		return;
	}
	tok_next(&p, &t);
	for (;;) {
		skip_casts(&p, &t);
		if (wrap == 0 || t.t.type != SQLTOK_RPAREN)
			break;
		wrap--;
		tok_next(&p, &t);
	}
	if (wrap || (t.t.type != SQLTOK_COMMA && t.t.type != SQLTOK_RPAREN)) {
		/* 'search_' || 'path' and the like */
		st->flags |= SQLF_STATE_UNKNOWN;
		return;
	}
	g = guard_for_guc(an, value, vlen);
	if (g != SQL_GUARD_OK) {
		stmt_guard(st, g);
		return;
	}
	if (t.t.type == SQLTOK_RPAREN)
		return; /* one argument: PostgreSQL rejects the call */
	/* Skip the value, whatever its nesting, to the comma before is_local. */
	do {
		tok_next(&p, &t);
	} while (!((t.t.type == SQLTOK_COMMA || t.t.type == SQLTOK_RPAREN) && t.t.depth == d) &&
	         t.t.type != SQLTOK_EOF && t.t.type != SQLTOK_ERROR);
	if (t.t.type == SQLTOK_COMMA) {
		Tok is_local;
		tok_next(&p, &is_local);
		tok_next(&p, &t);
		skip_casts(&p, &t);
		if (t.t.type == SQLTOK_RPAREN && lit_true(&is_local))
			return;
	}
	st->flags |= SQLF_SESSION_STATE;
}

static bool fn_builtin_ro(const Tok *name)
{
	char buf[FN_MAXLEN + 1];
	size_t len = name->t.len;

	if (len == 0 || len > FN_MAXLEN)
		return false;
	/* "Lower"() is not lower(): only unquoted names fold. */
	if (name->t.type == SQLTOK_IDENT) {
		name_fold(name->t.text, len, buf);
	} else {
		memcpy(buf, name->t.text, len);
		buf[len] = '\0';
	}
	for (uint32_t i = name_hash(buf, len) & (NAMESET_SLOTS - 1); fn_slots[i];
	     i = NAMESET_NEXT(i)) {
		const char *f = sql_ro_functions[fn_slots[i] - 1];
		if (strncmp(f, buf, len) == 0 && f[len] == '\0')
			return true;
	}
	return false;
}

/* Is name, or schema.name, in the read_only_functions comma list? */
static bool fn_extra_ro(const char *list, const Tok *name, const Tok *schema)
{
	const char *p = list;

	if (!p)
		return false;
	while (*p) {
		const char *item, *end;
		size_t n;
		while (*p == ',' || lex_is_space((unsigned char)*p))
			p++;
		item = p;
		while (*p && *p != ',')
			p++;
		end = p;
		while (end > item && lex_is_space((unsigned char)end[-1]))
			end--;
		n = (size_t)(end - item);
		if (n == 0)
			continue;
		if (str_eq_ci(item, n, name->t.text, name->t.len))
			return true;
		if (schema && n == schema->t.len + 1 + name->t.len &&
		    str_eq_ci(item, schema->t.len, schema->t.text, schema->t.len) &&
		    item[schema->t.len] == '.' &&
		    str_eq_ci(item + schema->t.len + 1, name->t.len, name->t.text, name->t.len))
			return true;
	}
	return false;
}

static bool fn_session_lock(const Tok *name)
{
	return tok_names(name, "pg_advisory_lock") || tok_names(name, "pg_advisory_lock_shared") ||
	       tok_names(name, "pg_try_advisory_lock") ||
	       tok_names(name, "pg_try_advisory_lock_shared");
}

/* Is "name (" a clause of the grammar here, given the two tokens before the name? */
static bool kw_clause_paren(const Tok *name, const Tok *before, const Tok *before2)
{
	switch (name->kw) {
	case KW_BY:
		return before->kw == KW_ORDER || before->kw == KW_GROUP ||
		       before->kw == KW_PARTITION;
	case KW_SETS:
		return before->kw == KW_GROUPING;
	case KW_ZONE:
		return before->kw == KW_TIME;
	case KW_VARYING:
		return before->kw == KW_CHARACTER || before->kw == KW_CHAR ||
		       before->kw == KW_BIT || before->kw == KW_NCHAR;
	case KW_SECOND: /* INTERVAL '1' SECOND(3), DAY TO SECOND(3) */
		return before->kw == KW_TO || before->t.type == SQLTOK_STRING;
	case KW_MATERIALIZED: /* c AS [NOT] MATERIALIZED ( */
		return before->kw == KW_AS || (before->kw == KW_NOT && before2->kw == KW_AS);
	/* After a table, an alias, a subquery or LEFT/CROSS/...; a call stands elsewhere. */
	case KW_JOIN:
		return before->t.type == SQLTOK_QIDENT || before->t.type == SQLTOK_RPAREN ||
		       (before->t.type == SQLTOK_IDENT &&
		        (before->kw == KW_NONE || (before->kwf & KWF_JOINTYPE)));
	default:
		return false;
	}
}

/*
 * A name followed by '(' (lp): a function call, unless the grammar makes it
 * something else — a keyword construct, a type modifier (::numeric(10,2),
 * AS varchar(3)), an alias column list (AS t(a, b), f() t(a)), a
 * TABLESAMPLE method, or a CTE column list (WITH c(a) AS ...).
 */
static void stmt_call(Analyzer *an, Stmt *st, const Tok *lp)
{
	const Tok *name = stmt_prev(st, 0), *schema = NULL, *before = stmt_prev(st, 1);
	int d = lp->t.depth;
	bool builtin;

	if (before->t.type == SQLTOK_DOT) {
		schema = stmt_prev(st, 2);
		before = stmt_prev(st, 3);
	}
	/* A statement never starts with a call: EXPLAIN (...), VACUUM (...), COPY (...) */
	if (before->t.type == SQLTOK_EOF)
		return;
	if (!schema &&
	    ((name->kwf & KWF_NOFUNC) ||
	     ((name->kwf & KWF_CLAUSE) && kw_clause_paren(name, before, stmt_prev(st, 2)))))
		return;
	if (tok_is_op(before, "::") || before->kw == KW_AS || before->kw == KW_TABLESAMPLE)
		return;
	if (before->t.type == SQLTOK_RPAREN && st->last_closed == PK_OTHER)
		return;
	if (d < SQL_MAX_DEPTH && st->cte[d] &&
	    (before->kw == KW_WITH || before->kw == KW_RECURSIVE || before->t.type == SQLTOK_COMMA))
		return;

	if (tok_undecodable(name)) {
		st->flags |=
		        SQLF_STATE_UNKNOWN; /* U&"..." with a bad escape: it could be set_config */
		st->ro = false;
		return;
	}
	if (tok_names(name, "set_config")) {
		/* Any schema: a look-alike in another schema is no safer. */
		stmt_set_config(an, st, lp);
		st->ro = false;
		return;
	}
	builtin = !schema || tok_names(schema, "pg_catalog");
	if (builtin && fn_session_lock(name))
		st->flags |= SQLF_SESSION_STATE;
	if (st->ro && !(builtin && fn_builtin_ro(name)) && !fn_extra_ro(an->extra_ro, name, schema))
		st->ro = false;
}

static void stmt_lparen(Analyzer *an, Stmt *st, const Tok *t)
{
	const Tok *p0 = stmt_prev(st, 0);
	int d = t->t.depth;

	if (tok_is_name(p0))
		stmt_call(an, st, t);
	if (d < SQL_MAX_DEPTH)
		st->pkind[d] = p0->kw == KW_OPERATOR ? PK_OPERATOR : PK_OTHER;
	if (d + 1 < SQL_MAX_DEPTH)
		st->cte[d + 1] = false;
}

/* After INSERT/UPDATE/DELETE/MERGE: is the target pg_settings (a SET in disguise)? */
static bool stmt_targets_pg_settings(const Analyzer *an)
{
	SqlLexer p = an->lx;
	Tok t;

	tok_next(&p, &t);
	while (t.kw == KW_INTO || t.kw == KW_FROM || t.kw == KW_ONLY)
		tok_next(&p, &t);
	if (tok_names(&t, "pg_catalog")) {
		if (tok_next(&p, &t) != SQLTOK_DOT)
			return false;
		tok_next(&p, &t);
	}
	return tok_names(&t, "pg_settings");
}

/* After SELECT ... INTO: does it create a temporary table? */
static bool stmt_into_temp(const Analyzer *an)
{
	SqlLexer p = an->lx;
	Tok t;

	tok_next(&p, &t);
	while (t.kw == KW_GLOBAL || t.kw == KW_LOCAL)
		tok_next(&p, &t);
	if (t.kw == KW_TEMP || t.kw == KW_TEMPORARY)
		return true;
	if (tok_name_starts(&t, "pg_temp"))
		return tok_next(&p, &t) == SQLTOK_DOT;
	return false;
}

/* WITH at depth d: a CTE list (names may take column lists), or DECLARE's WITH HOLD. */
static void stmt_with(Analyzer *an, Stmt *st, int d)
{
	SqlLexer p = an->lx;
	Tok u, v;

	tok_next(&p, &u);
	if (st->lead == KW_DECLARE && u.kw == KW_HOLD) {
		st->flags |= SQLF_SESSION_STATE;
		return;
	}
	if (d >= SQL_MAX_DEPTH)
		return;
	if (u.kw == KW_RECURSIVE) {
		st->cte[d] = true;
		return;
	}
	/* WITH ORDINALITY AS t(...) is not a CTE: its AS is an alias. */
	if ((u.t.type == SQLTOK_IDENT && u.kw != KW_ORDINALITY) || u.t.type == SQLTOK_QIDENT) {
		tok_next(&p, &v);
		if (v.t.type == SQLTOK_LPAREN || v.kw == KW_AS)
			st->cte[d] = true;
	}
}

/*
 * The keywords stmt_keyword() acts on wherever they stand; every other keyword is
 * looked at only as a statement's lead, beside a '(' or by an acting keyword's
 * look-around. stmt_token() calls stmt_keyword() for these alone, so a case added
 * there without its entry here never runs (and its test fails); sql_screen() relies
 * on the others doing nothing.
 */
static const bool kw_acts[KW_COUNT] = {
        [KW_INSERT] = true, [KW_UPDATE] = true,       [KW_DELETE] = true, [KW_MERGE] = true,
        [KW_SELECT] = true, [KW_VALUES] = true,       [KW_TABLE] = true,  [KW_INTO] = true,
        [KW_FOR] = true,    [KW_SERIALIZABLE] = true, [KW_ONLY] = true,   [KW_WRITE] = true,
        [KW_WITH] = true,   [KW_BEGIN] = true,        [KW_CASE] = true,   [KW_END] = true,
};

/* What an acting keyword (kw_acts) does to the statement it stands in. */
static void stmt_keyword(Analyzer *an, Stmt *st, const Tok *t)
{
	const Tok *p0 = stmt_prev(st, 0);
	int d = t->t.depth;
	SqlLexer p;
	Tok u;

	switch (t->kw) {
	case KW_INSERT:
	case KW_UPDATE:
	case KW_DELETE:
	case KW_MERGE:
		/* Also FOR [NO KEY] UPDATE, and data-modifying CTEs at any depth. */
		st->ro = false;
		if (d < SQL_MAX_DEPTH)
			st->cte[d] = false;
		if (stmt_targets_pg_settings(an))
			st->flags |= SQLF_STATE_UNKNOWN;
		break;
	case KW_SELECT:
	case KW_VALUES:
	case KW_TABLE:
		if (d < SQL_MAX_DEPTH)
			st->cte[d] = false;
		break;
	case KW_INTO:
		st->ro = false;
		if (st->query && p0->kw != KW_INSERT && p0->kw != KW_MERGE && stmt_into_temp(an))
			st->flags |= SQLF_SESSION_STATE;
		break;
	case KW_FOR:
		if (st->ro) {
			p = an->lx;
			tok_next(&p, &u);
			/* FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE */
			if (u.kw == KW_UPDATE || u.kw == KW_SHARE || u.kw == KW_NO ||
			    u.kw == KW_KEY)
				st->ro = false;
		}
		break;
	case KW_SERIALIZABLE:
		st->flags |= SQLF_SERIALIZABLE;
		break;
	case KW_ONLY:
		if (p0->kw == KW_READ)
			st->ro_tx = true;
		break;
	case KW_WRITE:
		if (p0->kw == KW_READ)
			st->rw = true;
		break;
	case KW_WITH:
		stmt_with(an, st, d);
		break;
	case KW_BEGIN:
		if (st->routine) {
			p = an->lx;
			tok_next(&p, &u);
			if (u.kw == KW_ATOMIC)
				st->atomic++;
		}
		break;
	case KW_CASE:
		if (st->atomic)
			st->atomic++;
		break;
	case KW_END:
		if (st->atomic)
			st->atomic--;
		break;
	default:
		assert(!"kw_acts names a keyword stmt_keyword has no case for");
		break;
	}
}

static void stmt_token(Analyzer *an, Stmt *st, const Tok *t)
{
	int d = t->t.depth;

	switch (t->t.type) {
	case SQLTOK_IDENT:
		if (kw_acts[t->kw])
			stmt_keyword(an, st, t);
		break;
	case SQLTOK_STRING:
		/* standard_conforming_strings off would draw other tokens: what runs is not known
		 */
		if (t->t.backslash_quote)
			st->flags |= SQLF_STATE_UNKNOWN;
		break;
	case SQLTOK_LPAREN:
		stmt_lparen(an, st, t);
		break;
	case SQLTOK_RPAREN:
		if (d == 0)
			st->ro = false; /* unbalanced: PostgreSQL will reject it */
		else
			st->last_closed = d - 1 < SQL_MAX_DEPTH ? st->pkind[d - 1] : PK_UNKNOWN;
		break;
	case SQLTOK_DOT: {
		/* CREATE TABLE pg_temp.t / CREATE FUNCTION pg_temp.f: temporary objects too. */
		const Tok *p0 = stmt_prev(st, 0);
		if (st->lead == KW_CREATE && tok_name_starts(p0, "pg_temp"))
			st->flags |= SQLF_SESSION_STATE;
		break;
	}
	case SQLTOK_PARAM: {
		int v = 0;
		for (size_t i = 1; i < t->t.len; i++) {
			if (v > (INT_MAX - 9) / 10) {
				v = INT_MAX;
				break;
			}
			v = v * 10 + (t->t.text[i] - '0');
		}
		if (v > an->out->max_param)
			an->out->max_param = v;
		break;
	}
	case SQLTOK_SEMI:
		/* ';' inside parentheses (outside BEGIN ATOMIC) never parses: keep it off replicas.
		 */
		if (d != 0)
			st->ro = false;
		break;
	default:
		break;
	}
	st->head = (st->head + 1) % SQL_RING;
	st->prev[st->head] = *t;
}

static void stmt_finish(Analyzer *an, Stmt *st, bool *all_ro)
{
	SqlInfo *out = an->out;

	if (st->txn == TXN_BEGIN)
		st->ro = st->ro && st->ro_tx && !st->rw;
	if (st->txn != TXN_NONE && st->ro_tx && !st->rw)
		st->flags |= SQLF_READ_ONLY_TX;
	/* a statement after RESET ALL (or DISCARD ALL) in the same Query would run with the
	 * tenant state reset to the session defaults: refused, so the Query aborts and the
	 * reset rolls back with it */
	if (out->flags & SQLF_RESETS_STATE)
		stmt_guard(st, SQL_GUARD_AFTER_RESET);
	if (st->atomic || (st->flags & SQLF_NOT_READ_ONLY) || st->guard != SQL_GUARD_OK)
		st->ro = false;
	out->flags |= st->flags;
	if (st->guard != SQL_GUARD_OK && out->guard == SQL_GUARD_OK) {
		out->guard = st->guard;
		out->guard_offset = st->offset;
	}
	out->n_statements++;
	if (!st->ro)
		*all_ro = false;
}

const char *sql_keyword_name(size_t i)
{
	return i < ARRAY_SIZE(sql_keywords) ? sql_keywords[i].name : NULL;
}

/* ---------------------------------------------------------------- screen */

/*
 * Most traffic is a plain SELECT: "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;".
 * sql_screen() recognises that shape without drawing tokens: a leading SELECT, then only
 * names, digits, whitespace, $n, simple '' strings and the operators of sc_class; no
 * parenthesis, comment, quoted name, dollar quote, backslash, byte >= 0x80 outside a string,
 * and no ';' but trailing ones. For every such text sql_analyze() gives the same answer
 * whatever the names are, provided none is a keyword the screen refuses (sc_refuses): one
 * read-only statement, no flags, no guard, the highest $n. Why:
 *  - no '(' means no call (set_config, advisory locks, non-read-only functions) and no
 *    depth, so stmt_lparen/stmt_call never run;
 *  - keywords outside kw_acts do nothing in stmt_token (by construction) and are read
 *    otherwise only as the lead, beside a '(' or by an acting keyword's look-around;
 *  - of the acting ones, ONLY and WRITE need a transaction statement, BEGIN, CASE and END
 *    a routine body, and SELECT/VALUES/TABLE clear a CTE mark that only a '(' reads: with
 *    SELECT as the lead they do nothing. The rest (INSERT, UPDATE, DELETE, MERGE, INTO,
 *    FOR, SERIALIZABLE, WITH) are refused, and DOT acts only under CREATE;
 *  - no quote but '' strings without backslashes, and no comment, so the screen's words
 *    are the lexer's names: nothing hides a keyword from it, and no '' string hides text
 *    the lexer would read (a quote inside a comment would, but comments are refused).
 * Anything else returns false and sql_analyze() runs as before. Builds with
 * PGTENANT_VERIFY_FAST (the sanitizer build) check every text it takes against the full
 * analysis; the unit and fuzz tests compare the two on random text.
 */
enum {
	SC_BAD = 0, /* anything the screen does not take: the full analysis decides */
	SC_SPACE,
	SC_OP, /* an operator byte that can start neither a comment nor a quote */
	SC_MINUS,
	SC_SLASH,
	SC_WORD = 8, /* SC_WORD and SC_DIGIT differ in the lowest bit only */
	SC_DIGIT = 9,
	SC_QUOTE,
	SC_DOLLAR,
	SC_SEMI,
};

static const uint8_t sc_class[256] = {
        [' '] = SC_SPACE,        ['\t'] = SC_SPACE,
        ['\n'] = SC_SPACE,       ['\r'] = SC_SPACE,
        ['\f'] = SC_SPACE,       ['\v'] = SC_SPACE,
        ['a' ... 'z'] = SC_WORD, ['A' ... 'Z'] = SC_WORD,
        ['_'] = SC_WORD,         ['0' ... '9'] = SC_DIGIT,
        ['\''] = SC_QUOTE,       ['$'] = SC_DOLLAR,
        [';'] = SC_SEMI,         ['-'] = SC_MINUS,
        ['/'] = SC_SLASH,        ['='] = SC_OP,
        ['<'] = SC_OP,           ['>'] = SC_OP,
        ['+'] = SC_OP,           ['*'] = SC_OP,
        [','] = SC_OP,           ['.'] = SC_OP,
        [':'] = SC_OP,           ['%'] = SC_OP,
        ['['] = SC_OP,           [']'] = SC_OP,
        ['|'] = SC_OP,           ['~'] = SC_OP,
        ['!'] = SC_OP,           ['@'] = SC_OP,
        ['^'] = SC_OP,           ['#'] = SC_OP,
};

/* Names and plain numbers continue with these; anything else after them is a new token. */
static inline bool sc_word_byte(unsigned char c)
{
	return (sc_class[c] & ~1u) == SC_WORD;
}

/* A byte that continues the lexer's name or number beyond what the screen reads as one. */
static inline bool sc_joins(const unsigned char *p, const unsigned char *e)
{
	return p < e && (sc_word_byte(*p) || *p == '$' || *p >= 0x80);
}

/*
 * The keywords the screen refuses (see above), as the first eight bytes folded and the
 * length; sc_refuse_lens has bit n set when one is n bytes long, so most names cost one
 * test. Filled from sql_keywords and kw_acts before main().
 */
#define SC_REFUSE_LEN 32 /* names this long or longer are no refused keyword */
#define SC_REFUSE_PER 4  /* refused keywords of one length, at most */
static uint64_t sc_refuse_head[SC_REFUSE_LEN][SC_REFUSE_PER];
static uint8_t sc_refuse_n[SC_REFUSE_LEN];
static uint32_t sc_refuse_lens;

/* The first letters of the keywords the screen refuses: the vector screen looks at names
 * starting with these only (sql_screen_build checks the keywords). */
#define SC_FIRST_LETTERS "dfimsuw"

static bool sc_inert(int kw)
{
	return kw == KW_SELECT || kw == KW_VALUES || kw == KW_TABLE || kw == KW_ONLY ||
	       kw == KW_WRITE || kw == KW_BEGIN || kw == KW_CASE || kw == KW_END;
}

__attribute__((constructor)) static void sql_screen_build(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(sql_keywords); i++) {
		uint64_t w[KW_WORDS];
		size_t len = strlen(sql_keywords[i].name);
		if (!kw_acts[sql_keywords[i].id] || sc_inert(sql_keywords[i].id))
			continue;
		assert(len < SC_REFUSE_LEN && sc_refuse_n[len] < SC_REFUSE_PER);
		kw_pack(sql_keywords[i].name, len, 0, w);
#ifdef __SSE2__
		assert(strchr(SC_FIRST_LETTERS, sql_keywords[i].name[0]) != NULL);
#endif
		sc_refuse_head[len][sc_refuse_n[len]++] = w[0];
		sc_refuse_lens |= 1u << len;
	}
}

/* Is the name of len (< SC_REFUSE_LEN) bytes loaded into x (not yet masked or folded) one
 * the screen refuses? */
static inline bool sc_refuses_word(uint64_t x, size_t len)
{
	if (len < 8)
		x &= (1ULL << (8 * len)) - 1;
	x = fold_word(x);
	for (unsigned i = 0; i < sc_refuse_n[len]; i++)
		if (sc_refuse_head[len][i] == x)
			return true;
	return false;
}

/*
 * Is the name of len bytes at w (room bytes readable) one the screen refuses? A longer name
 * that shares a refused keyword's length and first eight bytes is refused too: the full
 * analysis then decides.
 */
static inline bool sc_refuses(const unsigned char *w, size_t len, size_t room)
{
	uint64_t x = 0;

	if (len >= SC_REFUSE_LEN || !(sc_refuse_lens & (1u << len)))
		return false;
	if (room >= 8)
		memcpy(&x, w, 8);
	else
		memcpy(&x, w, len);
	return sc_refuses_word(x, len);
}

/* The screen byte by byte, from p (just after the lead SELECT) to e; *max_param as it goes. */
static bool sc_scalar(const unsigned char *p, const unsigned char *e, int *max_param)
{
	while (p < e) {
		const unsigned char *w = p;
		switch (sc_class[*p]) {
		case SC_SPACE:
		case SC_OP:
			p++;
			break;
		case SC_MINUS: /* not "--" */
		case SC_SLASH: /* not a block comment */
			if (p + 1 < e && p[1] == (*p == '-' ? '-' : '*'))
				return false;
			p++;
			break;
		case SC_WORD:
			do
				p++;
			while (p < e && sc_word_byte(*p));
			/* "name$" and non-ASCII names: the lexer's name goes on */
			if (sc_joins(p, e) || sc_refuses(w, (size_t)(p - w), (size_t)(e - w)))
				return false;
			break;
		case SC_DIGIT:
			do
				p++;
			while (p < e && sc_class[*p] == SC_DIGIT);
			/* 1e5, 0x1f, 1_000, "1into": the lexer's own number rules */
			if (sc_joins(p, e))
				return false;
			break;
		case SC_QUOTE:
			/* E'', B'', X'', N'' and U&'' have a name or & right before */
			if (sc_word_byte(p[-1]))
				return false;
			for (p++;; p++) {
				const unsigned char *q = memchr(p, '\'', (size_t)(e - p));
				if (!q || memchr(p, '\\', (size_t)(q - p)))
					return false;
				p = q + 1;
				if (p == e || *p != '\'')
					break;
			}
			break;
		case SC_DOLLAR: {
			/* $n: a parameter; anything else is a dollar quote or part of a name */
			int v = 0;
			if (sc_word_byte(p[-1]))
				return false;
			for (p++; p < e && sc_class[*p] == SC_DIGIT; p++)
				v = v > (INT_MAX - 9) / 10 ? INT_MAX : v * 10 + (*p - '0');
			if (p == w + 1 || sc_joins(p, e))
				return false;
			if (v > *max_param)
				*max_param = v;
			break;
		}
		case SC_SEMI:
			/* the statement ends; only more ';' and whitespace may follow */
			for (; p < e; p++)
				if (*p != ';' && sc_class[*p] != SC_SPACE)
					return false;
			break;
		default:
			return false;
		}
	}
	return true;
}

#ifdef __SSE2__
#include <emmintrin.h>

#define SC_VEC_MAX 64 /* bytes the vector screen takes; longer texts go byte by byte */

/* 0xff in each byte of x within [lo, hi]: x - lo, unsigned, is at most hi - lo. */
static inline __m128i sc_range(__m128i x, char lo, char hi)
{
	__m128i d = _mm_sub_epi8(x, _mm_set1_epi8(lo));
	return _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8((char)(hi - lo))), d);
}

typedef struct ScMasks {
	uint64_t word;   /* names and numbers: [A-Za-z0-9_] */
	uint64_t digit;  /* [0-9] */
	uint64_t first;  /* letters of SC_FIRST_LETTERS, either case */
	uint64_t dollar; /* '$' */
	bool odd;        /* a byte that is none of those, whitespace nor = < > * + , . : */
} ScMasks;

/* Classifies the sixteen bytes at q into m, their bits from bit `at` on. */
__attribute__((always_inline)) static inline void sc_chunk(const unsigned char *q, unsigned at,
                                                           ScMasks *m)
{
	__m128i x = _mm_loadu_si128((const __m128i *)q);
	__m128i lower = _mm_or_si128(x, _mm_set1_epi8(0x20));
	__m128i dig = sc_range(x, '0', '9');
	__m128i wrd = _mm_or_si128(_mm_or_si128(sc_range(lower, 'a', 'z'), dig),
	                           _mm_cmpeq_epi8(x, _mm_set1_epi8('_')));
	__m128i plain = _mm_or_si128(
	        _mm_or_si128(wrd, _mm_cmpeq_epi8(x, _mm_set1_epi8(' '))),
	        _mm_or_si128(_mm_or_si128(sc_range(x, '\t', '\r'), sc_range(x, '<', '>')),
	                     _mm_or_si128(sc_range(x, '*', '.'),
	                                  _mm_cmpeq_epi8(x, _mm_set1_epi8(':')))));
	/* '-' (0x2d) lies among the operators taken; it starts comments */
	plain = _mm_andnot_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('-')), plain);
	__m128i dol = _mm_cmpeq_epi8(x, _mm_set1_epi8('$'));
	plain = _mm_or_si128(plain, dol);
	__m128i fl =
	        _mm_or_si128(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(lower, _mm_set1_epi8('d')),
	                                               _mm_cmpeq_epi8(lower, _mm_set1_epi8('f'))),
	                                  _mm_or_si128(_mm_cmpeq_epi8(lower, _mm_set1_epi8('i')),
	                                               _mm_cmpeq_epi8(lower, _mm_set1_epi8('m')))),
	                     _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(lower, _mm_set1_epi8('s')),
	                                               _mm_cmpeq_epi8(lower, _mm_set1_epi8('u'))),
	                                  _mm_cmpeq_epi8(lower, _mm_set1_epi8('w'))));
	m->odd |= (unsigned)_mm_movemask_epi8(plain) != 0xffff;
	m->word |= (uint64_t)(unsigned)_mm_movemask_epi8(wrd) << at;
	m->digit |= (uint64_t)(unsigned)_mm_movemask_epi8(dig) << at;
	m->first |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_and_si128(fl, wrd)) << at;
	m->dollar |= (uint64_t)(unsigned)_mm_movemask_epi8(dol) << at;
}

/* The name of len bytes at p + at (p holds n bytes) in one word, as sc_refuses wants it. */
static inline bool sc_refuses_in(const unsigned char *p, size_t n, size_t at, size_t len)
{
	uint64_t x;

	if (len >= SC_REFUSE_LEN || !(sc_refuse_lens & (1u << len)))
		return false;
	if (n - at >= 8 || n < 8)
		return sc_refuses(p + at, len, n - at);
	/* near the end: the text's last eight bytes, shifted down to the name */
	memcpy(&x, p + n - 8, 8);
	x >>= 8 * (at - (n - 8));
	return sc_refuses_word(x, len);
}

/*
 * The vector screen of p..p+n (the text after the lead SELECT, trailing ';' and whitespace
 * taken off, at most SC_VEC_MAX bytes): 1 taken, 0 refused, -1 not its kind of text (the
 * byte-by-byte screen decides). Only the runs of name bytes that could matter are looked
 * at: numbers (digits only), names that begin with the first letter of a refused keyword,
 * and the digits of each $n (*max_param).
 */
static int sc_vector(const unsigned char *p, size_t n, int *max_param)
{
	ScMasks m = {0, 0, 0, 0, false};
	size_t i = 0;

	for (; i + 16 <= n; i += 16)
		sc_chunk(p + i, (unsigned)i, &m);
	if (i < n && n >= 16) {
		sc_chunk(p + n - 16, (unsigned)(n - 16), &m); /* overlaps: the same bits again */
	} else if (i < n) {
		unsigned char tail[16];
		memset(tail, ' ', sizeof(tail)); /* padding: plain, no name */
		memcpy(tail, p, n);
		sc_chunk(tail, 0, &m);
		m.word &= (1ULL << n) - 1;
	}
	if (m.odd)
		return -1;
	uint64_t starts = m.word & ~(m.word << 1);
	if (m.dollar) {
		/* $n only: a '$' after a name (p[-1] is the lead's 't'), one not followed by a
		 * number or followed by '$' after it is a name's or a dollar quote's */
		uint64_t after = m.dollar << 1;
		if ((m.dollar & 1) || (m.dollar & (m.word << 1)) || (after & ~(m.digit & starts)) ||
		    (m.dollar >> 63))
			return 0;
		for (uint64_t d = after; d; d &= d - 1) {
			unsigned at = (unsigned)__builtin_ctzll(d);
			int v = 0;
			for (size_t j = at; j < n && p[j] >= '0' && p[j] <= '9'; j++)
				v = v > (INT_MAX - 9) / 10 ? INT_MAX : v * 10 + (p[j] - '0');
			if (v > *max_param)
				*max_param = v;
		}
	}
	for (uint64_t c = starts & (m.digit | m.first); c; c &= c - 1) {
		unsigned at = (unsigned)__builtin_ctzll(c);
		uint64_t rest = ~(m.word >> at);
		unsigned len = rest ? (unsigned)__builtin_ctzll(rest) : 64 - at;
		if (m.digit >> at & 1) {
			uint64_t run = (len == 64 ? ~0ULL : (1ULL << len) - 1) << at;
			if ((m.digit & run) != run)
				return 0; /* a number: digits only (1e5, 1into) */
		} else if (sc_refuses_in(p, n, at, len)) {
			return 0;
		}
	}
	return 1;
}
#endif

bool sql_screen(const char *sql, size_t len, SqlInfo *out)
{
	const unsigned char *s, *e, *p;
	int max_param = 0;

	if (!sql)
		return false;
	s = (const unsigned char *)sql;
	e = s + len;
	while (s < e && sc_class[*s] == SC_SPACE)
		s++;
	if (e - s < 6)
		return false;
	uint32_t lead4;
	uint16_t lead2;
	memcpy(&lead4, s, 4);
	memcpy(&lead2, s + 4, 2);
	/* | 0x20 folds a letter and maps no other byte onto one */
	if ((lead4 | 0x20202020u) != ('s' | 'e' << 8 | 'l' << 16 | (uint32_t)'e' << 24) ||
	    (lead2 | 0x2020u) != ('c' | 't' << 8))
		return false;
	p = s + 6;
	if (sc_joins(p, e))
		return false; /* "selectx": another name */
#ifdef __SSE2__
	const unsigned char *end = e;
	while (end > p && (end[-1] == ';' || sc_class[end[-1]] == SC_SPACE))
		end--;
	int v = end - p <= SC_VEC_MAX ? sc_vector(p, (size_t)(end - p), &max_param) : -1;
	if (v == 0)
		return false;
	if (v < 0 && !sc_scalar(p, e, &max_param))
		return false;
#else
	if (!sc_scalar(p, e, &max_param))
		return false;
#endif
	memset(out, 0, sizeof(*out));
	out->n_statements = 1;
	out->max_param = max_param;
	out->read_only = true;
	return true;
}

/* ---------------------------------------------------------------- shapes */

#ifdef __SSE2__
/* Bits of the sixteen bytes at a and at b that are alike. */
static inline unsigned sh_alike16(const unsigned char *a, const unsigned char *b)
{
	return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)a),
	                                                  _mm_loadu_si128((const __m128i *)b)));
}

/* Bits of the sixteen bytes at p that are digits. */
static inline unsigned sh_digits16(const unsigned char *p)
{
	return (unsigned)_mm_movemask_epi8(sc_range(_mm_loadu_si128((const __m128i *)p), '0', '9'));
}
#endif

/*
 * Are the n bytes at a + i and b + j alike (a holding na bytes, b nb; i + n <= na and
 * j + n <= nb; n < SQL_SHAPE_MAX, a piece of the shape)? Sixteen bytes at a time, the last
 * sixteen overlapping the ones before; a piece shorter than sixteen is compared inside
 * sixteen that end where it ends, or else begin where it begins, when both texts hold
 * them: no byte outside either text is read.
 */
static inline bool sh_alike(const unsigned char *a, size_t i, size_t na, const unsigned char *b,
                            size_t j, size_t nb, size_t n)
{
#ifdef __SSE2__
	assert(n < SQL_SHAPE_MAX && SQL_SHAPE_MAX <= 64);
	if (n >= 16) {
		unsigned m = sh_alike16(a + i + n - 16, b + j + n - 16);
		if (n > 16)
			m &= sh_alike16(a + i, b + j);
		if (n > 32)
			m &= sh_alike16(a + i + 16, b + j + 16);
		if (n > 48)
			m &= sh_alike16(a + i + 32, b + j + 32);
		return m == 0xffff;
	}
	unsigned want = (1u << n) - 1;
	if (i + n >= 16 && j + n >= 16)
		return sh_alike16(a + i + n - 16, b + j + n - 16) >> (16 - n) == want;
	if (i + 16 <= na && j + 16 <= nb)
		return (sh_alike16(a + i, b + j) & want) == want;
#else
	(void)na, (void)nb;
#endif
	return memcmp(a + i, b + j, n) == 0;
}

static inline bool sh_digit(unsigned char c)
{
	return sc_class[c] == SC_DIGIT;
}

/* Where the run of digits at t + j (t holding n bytes) ends, read as sh_alike reads. */
static inline size_t sh_digits_end(const unsigned char *t, size_t j, size_t n)
{
#ifdef __SSE2__
	for (; j + 16 <= n; j += 16) {
		unsigned d = sh_digits16(t + j);
		if (d != 0xffff)
			return j + (size_t)__builtin_ctz(~d);
	}
	if (j < n && n >= 16)
		return j + (size_t)__builtin_ctz(~(sh_digits16(t + n - 16) >> (16 - (n - j))));
#endif
	while (j < n && sh_digit(t[j]))
		j++;
	return j;
}

/*
 * Is t (lt bytes) the shape's text with some of its numbers (sh->nums) written otherwise,
 * each again a run of digits only? Then the screen would take t as it took the shape's
 * text, with the same answer: every byte class it looks at is the same (a digit for a
 * digit, and the byte after a number is the shape's, neither a name's nor '$'), and no
 * number is a $n (nums leaves those out), so max_param is the same too. Neither t nor the
 * shape's text holds a NUL byte then (the screen takes none).
 */
static inline bool sh_matches(const SqlShape *sh, const char *sql, size_t lt)
{
	const unsigned char *pt = (const unsigned char *)sh->text, *t = (const unsigned char *)sql;
	size_t lp = sh->len, i = 0, j = 0; /* i: where the shape goes on, j: where t does */

	if (!lp || !sql)
		return false;
	for (uint64_t q = sh->nums; q; q &= q - 1) {
		/* the shape's next number is at s..e; what comes before it must be alike */
		size_t s = (size_t)__builtin_ctzll(q),
		       e = s + (size_t)__builtin_ctzll(sh->ends >> s);
		if (s - i > lt - j || !sh_alike(pt, i, lp, t, j, lt, s - i))
			return false;
		j += s - i;
		size_t et = sh_digits_end(t, j, lt);
		if (et == j)
			return false; /* no digits there in t */
		i = e;
		j = et; /* the byte after it, in both, begins the next piece (neither is a digit) */
	}
	return lp - i == lt - j && sh_alike(pt, i, lp, t, j, lt, lp - i);
}

bool sql_shape_matches(const SqlShape *sh, const char *sql, size_t lt)
{
	return sh_matches(sh, sql, lt);
}

/* Keeps a text the screen took as the client's shape: short ones without quotes. */
static void sh_keep(SqlShape *sh, const char *sql, size_t len, const SqlInfo *info)
{
	const unsigned char *t = (const unsigned char *)sql;

	sh->len = 0;
	if (len >= SQL_SHAPE_MAX || memchr(sql, '\'', len))
		return;
	sh->nums = sh->ends = 0;
	for (size_t i = 0; i < len; i++) {
		if (sh_digit(t[i]) && (i == 0 || (!sc_word_byte(t[i - 1]) && t[i - 1] != '$'))) {
			size_t e = sh_digits_end(t, i, len);
			sh->nums |= 1ULL << i;
			sh->ends |= 1ULL << e;
			i = e;
		}
	}
	memcpy(sh->text, sql, len);
	sh->info = *info;
	sh->len = (uint8_t)len;
}

static void analyze_tokens(const char *sql, size_t len, const char *tenant_guc,
                           const char *extra_ro_functions, SqlInfo *out, SqlNorm *norm);

/* Builds with PGTENANT_VERIFY_FAST (check-asan) assert that a fast answer is the full one. */
static inline void sc_verify(const char *sql, size_t len, const char *tenant_guc,
                             const char *extra_ro_functions, const SqlInfo *out)
{
#ifdef PGTENANT_VERIFY_FAST
	SqlInfo full;
	analyze_tokens(sql, len, tenant_guc, extra_ro_functions, &full, NULL);
	assert(memcmp(&full, out, sizeof(full)) == 0);
#else
	(void)sql, (void)len, (void)tenant_guc, (void)extra_ro_functions, (void)out;
#endif
}

bool sql_shape_answer(const SqlShape *shape, const char *sql, size_t len, const char *tenant_guc,
                      const char *extra_ro_functions, SqlInfo *out)
{
	if (!sh_matches(shape, sql, len))
		return false;
	*out = shape->info;
	sc_verify(sql, len, tenant_guc, extra_ro_functions, out);
	return true;
}

void sql_analyze_shaped(const char *sql, size_t len, const char *tenant_guc,
                        const char *extra_ro_functions, SqlInfo *out, SqlShape *shape)
{
	if (sql_screen(sql, len, out)) {
		sc_verify(sql, len, tenant_guc, extra_ro_functions, out);
		sh_keep(shape, sql, len, out);
		return;
	}
	analyze_tokens(sql, len, tenant_guc, extra_ro_functions, out, NULL);
}

void sql_analyze(const char *sql, size_t len, const char *tenant_guc,
                 const char *extra_ro_functions, SqlInfo *out)
{
	sql_analyze_norm(sql, len, tenant_guc, extra_ro_functions, out, NULL);
}

void sql_analyze_norm(const char *sql, size_t len, const char *tenant_guc,
                      const char *extra_ro_functions, SqlInfo *out, SqlNorm *norm)
{
	if (!norm && sql_screen(sql, len, out)) {
		sc_verify(sql, len, tenant_guc, extra_ro_functions, out);
		return;
	}
	analyze_tokens(sql, len, tenant_guc, extra_ro_functions, out, norm);
}

/* The analysis proper: every token drawn (norm, when given, fed each one). */
static void analyze_tokens(const char *sql, size_t len, const char *tenant_guc,
                           const char *extra_ro_functions, SqlInfo *out, SqlNorm *norm)
{
	Analyzer an;
	Stmt st;
	Tok t;
	bool in_stmt = false, all_ro = true;

	memset(out, 0, sizeof(*out));
	if (norm) {
		norm->sql = sql;
		norm->sql_len = len;
	}
	sqllex_init(&an.lx, sql, len);
	an.tenant_guc = tenant_guc && *tenant_guc ? tenant_guc : NULL;
	an.extra_ro = extra_ro_functions;
	an.out = out;

	for (;;) {
		SqlTokType type = tok_next(&an.lx, &t);
		if (type == SQLTOK_ERROR) {
			out->flags |= SQLF_UNPARSED;
			if (!in_stmt)
				out->n_statements++;
			all_ro = false;
			break;
		}
		if (type == SQLTOK_EOF)
			break;
		if (norm)
			sql_norm_token(norm, &t.t);
		if (type == SQLTOK_SEMI && (!in_stmt || (t.t.depth == 0 && st.atomic == 0))) {
			if (in_stmt)
				stmt_finish(&an, &st, &all_ro);
			in_stmt = false;
			continue;
		}
		if (!in_stmt) {
			stmt_begin(&an, &st, &t);
			in_stmt = true;
		}
		stmt_token(&an, &st, &t);
	}
	if (in_stmt)
		stmt_finish(&an, &st, &all_ro);
	if (norm)
		sql_norm_finish(norm);
	out->hint_replica = an.lx.hint_replica;
	out->hint_primary = an.lx.hint_primary;
	out->read_only = all_ro && out->n_statements > 0 && !(out->flags & SQLF_NOT_READ_ONLY) &&
	                 out->guard == SQL_GUARD_OK;
}

/* ------------------------------------------------------------ normaliser */

#define NORM_FNV_OFFSET 1469598103934665603ULL
#define NORM_FNV_PRIME  1099511628211ULL

void sql_norm_init(SqlNorm *n, char *buf, size_t cap)
{
	*n = (SqlNorm){0};
	n->buf = cap ? buf : NULL;
	n->cap = buf ? cap : 0;
	n->hash = NORM_FNV_OFFSET;
	n->empty = true;
}

/*
 * The fingerprint is a hash of the tokens the text is written from (kind, then the
 * bytes of those that keep theirs), not of the text: so it is the same whether the
 * text is written or not (buf NULL), and the text of a statement can be written
 * only when its fingerprint is new. Eight bytes a step.
 */
static inline uint64_t norm_mix(uint64_t h, uint64_t w)
{
	h = (h ^ w) * NORM_FNV_PRIME;
	return h ^ (h >> 29);
}

/* Mixes the len bytes at s (folded when fold); room: the bytes readable at s. */
static uint64_t norm_mix_bytes(uint64_t h, const char *s, size_t len, size_t room, bool fold)
{
	size_t i = 0;
	uint64_t w;

	for (; i + 8 <= len; i += 8) {
		memcpy(&w, s + i, 8);
		h = norm_mix(h, fold ? fold_word(w) : w);
	}
	if (i < len) {
		size_t tail = len - i;
		if (room - i >= 8) {
			/* the statement goes on: load a whole word and keep the tail's bytes */
			memcpy(&w, s + i, 8);
			w &= (1ULL << (8 * tail)) - 1;
		} else {
			w = 0;
			for (size_t k = 0; k < tail; k++)
				w |= (uint64_t)(unsigned char)s[i + k] << (8 * k);
		}
		h = norm_mix(h, fold ? fold_word(w) : w);
	}
	return norm_mix(h, len);
}

/* Room left for the text ("..." and the NUL stay free at the end). */
static inline size_t norm_room(const SqlNorm *n)
{
	return n->cap > 4 ? n->cap - 4 : 0;
}

/* Writes a space when space, then s (folded to lower case when fold), while it fits. */
static inline void norm_write(SqlNorm *n, bool space, const char *s, size_t len, bool fold)
{
	size_t room = norm_room(n);

	if (n->truncated)
		return;
	if (space) {
		if (n->len >= room) {
			n->truncated = true;
			return;
		}
		n->buf[n->len++] = ' ';
	}
	size_t fit = room - n->len < len ? room - n->len : len;
	char *out = n->buf + n->len;
	if (fold) {
		for (size_t i = 0; i < fit; i++) {
			unsigned char c = (unsigned char)s[i];
			out[i] = (char)(c + (((unsigned)(c - 'A') < 26u) << 5));
		}
	} else {
		memcpy(out, s, fit);
	}
	n->len += fit;
	if (fit < len)
		n->truncated = true;
}

/* The bytes readable at s, a token's text of len bytes: the rest of the statement. */
static inline size_t norm_readable(const SqlNorm *n, const char *s, size_t len)
{
	if (n->sql && s >= n->sql && len <= (size_t)(n->sql + n->sql_len - s))
		return (size_t)(n->sql + n->sql_len - s);
	return len;
}

/* One written token: its kind and, when keep, its bytes go into the hash; the text when kept. */
static inline void norm_put(SqlNorm *n, bool space, uint8_t kind, const char *s, size_t len,
                            bool keep, bool fold)
{
	n->hash = norm_mix(n->hash, kind);
	if (keep)
		n->hash = norm_mix_bytes(n->hash, s, len, norm_readable(n, s, len), fold);
	if (n->buf)
		norm_write(n, space, s, len, fold);
}

static bool norm_is_literal(SqlTokType t)
{
	return t == SQLTOK_STRING || t == SQLTOK_NUMBER || t == SQLTOK_PARAM;
}

/* Words after which '(' reads better with a space: not a function call. */
static bool norm_word_spaces_paren(const char *text, size_t len)
{
	static const char *const words[] = {"in",    "values", "and",   "or",    "not",
	                                    "as",    "on",     "using", "from",  "join",
	                                    "where", "exists", "any",   "all",   "select",
	                                    "into",  "over",   "with",  "table", "returning"};
	for (size_t i = 0; i < ARRAY_SIZE(words); i++)
		if (strlen(words[i]) == len && strncasecmp(text, words[i], len) == 0)
			return true;
	return false;
}

/* Whether the token t, after the token written last, is written with a space before it. */
static bool norm_spaced(const SqlNorm *n, SqlTokType t)
{
	if (n->empty || t == SQLTOK_RPAREN || t == SQLTOK_COMMA || t == SQLTOK_DOT ||
	    n->prev == SQLTOK_LPAREN || n->prev == SQLTOK_DOT)
		return false;
	if (t == SQLTOK_LPAREN && n->prev == SQLTOK_IDENT)
		return norm_word_spaces_paren(n->prev_text, n->prev_len);
	return !(t == SQLTOK_LPAREN && n->prev == SQLTOK_QIDENT);
}

void sql_norm_token(SqlNorm *n, const SqlToken *tok)
{
	SqlTokType t = tok->type;

	if (t == SQLTOK_EOF || t == SQLTOK_ERROR)
		return;
	if (t == SQLTOK_SEMI) {
		if (!n->empty)
			n->pending_semi = true;
		n->pending_comma = false;
		return;
	}
	if (n->pending_comma) {
		n->pending_comma = false;
		if (norm_is_literal(t))
			return; /* 1, 2, 3 -> ? */
		norm_put(n, false, SQLTOK_COMMA, ",", 1, false, false);
		n->prev = SQLTOK_COMMA;
	}
	if (n->pending_semi) {
		norm_put(n, false, SQLTOK_SEMI, ";", 1, false, false);
		n->prev = SQLTOK_SEMI;
		n->pending_semi = false;
	}
	if (t == SQLTOK_COMMA && norm_is_literal((SqlTokType)n->prev)) {
		n->pending_comma = true;
		return;
	}
	bool space = n->buf && norm_spaced(n, t);
	switch (t) {
	case SQLTOK_STRING:
	case SQLTOK_NUMBER:
	case SQLTOK_PARAM:
		/* every literal is one '?': they share a kind */
		norm_put(n, space, SQLTOK_NUMBER, "?", 1, false, false);
		break;
	case SQLTOK_IDENT:
		norm_put(n, space, SQLTOK_IDENT, tok->text, tok->len, true, true);
		break;
	case SQLTOK_QIDENT:
		norm_put(n, space, SQLTOK_QIDENT, "\"", 1, false, false);
		n->hash = norm_mix_bytes(n->hash, tok->text, tok->len,
		                         norm_readable(n, tok->text, tok->len), false);
		if (n->buf) {
			norm_write(n, false, tok->text, tok->len, false);
			norm_write(n, false, "\"", 1, false);
		}
		break;
	case SQLTOK_OP:
		norm_put(n, space, SQLTOK_OP, tok->text, tok->len, true, false);
		break;
	default:
		/* ( ) , . : their kind says all */
		norm_put(n, space, (uint8_t)t, tok->text, tok->len, false, false);
		break;
	}
	n->prev_text = tok->text;
	n->prev_len = tok->len;
	n->prev = (uint8_t)t;
	n->empty = false;
}

void sql_norm_finish(SqlNorm *n)
{
	if (n->pending_comma)
		norm_put(n, false, SQLTOK_COMMA, ",", 1, false, false); /* a trailing "1," stays */
	n->pending_comma = false;
	n->hash ^= n->hash >> 32;
	if (!n->buf)
		return;
	if (n->truncated && n->len + 4 <= n->cap) {
		memcpy(n->buf + n->len, "...", 3);
		n->len += 3;
	}
	n->buf[n->len < n->cap ? n->len : n->cap - 1] = '\0';
}

void sql_normalize(const char *sql, size_t len, SqlNorm *n)
{
	SqlLexer lx;
	SqlToken tok;

	n->sql = sql;
	n->sql_len = len;
	sqllex_init(&lx, sql, len);
	for (;;) {
		SqlTokType t = sqllex_next(&lx, &tok);
		if (t == SQLTOK_EOF || t == SQLTOK_ERROR)
			break;
		sql_norm_token(n, &tok);
	}
	sql_norm_finish(n);
}

const char *sql_guard_name(SqlGuard g, const char *tenant_guc)
{
	switch (g) {
	case SQL_GUARD_SEARCH_PATH:
		return "search_path";
	case SQL_GUARD_TENANT_GUC:
		return tenant_guc && *tenant_guc ? tenant_guc : "tenant_guc";
	case SQL_GUARD_ROLE:
		return "role";
	case SQL_GUARD_SESSION_AUTH:
		return "session_authorization";
	case SQL_GUARD_AFTER_RESET:
		return "the tenant state (RESET ALL or DISCARD ALL must end its Query)";
	case SQL_GUARD_OK:
		break;
	}
	return "none";
}
