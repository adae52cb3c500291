/*
 * param: see include/param.h. Lists are short (a dozen entries), so they
 * are arrays searched linearly; they change only at login and when the
 * server reports a new value, never per query.
 */
#include "param.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static uint64_t next_version = 1;

/*
 * Parameter names and values are interned with a reference count: ten thousand
 * clients with the same TimeZone and DateStyle share one copy of each string,
 * which is most of what an idle client would otherwise hold.
 */
typedef struct Interned {
	struct Interned *next;
	uint32_t refs;
	uint32_t hash;
	char text[];
} Interned;

#define INTERN_BUCKETS 1024
static Interned *intern_table[INTERN_BUCKETS];

static uint32_t str_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static char *intern(const char *s)
{
	uint32_t h = str_hash(s);
	Interned **slot = &intern_table[h % INTERN_BUCKETS];
	for (Interned *e = *slot; e; e = e->next) {
		if (e->hash == h && strcmp(e->text, s) == 0) {
			e->refs++;
			return e->text;
		}
	}
	size_t n = strlen(s);
	Interned *e = xmalloc(sizeof(Interned) + n + 1);
	e->refs = 1;
	e->hash = h;
	memcpy(e->text, s, n + 1);
	e->next = *slot;
	*slot = e;
	return e->text;
}

static void unintern(char *text)
{
	if (!text)
		return;
	Interned *e = (Interned *)(text - offsetof(Interned, text));
	if (--e->refs > 0)
		return;
	for (Interned **pp = &intern_table[e->hash % INTERN_BUCKETS]; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	free(e);
}

void params_init(Params *p)
{
	memset(p, 0, sizeof(*p));
	p->version = next_version++;
}

void params_clear(Params *p)
{
	for (int i = 0; i < p->n; i++) {
		unintern(p->items[i].name);
		unintern(p->items[i].value);
	}
	p->n = 0;
	p->version = next_version++;
}

void params_free(Params *p)
{
	params_clear(p);
	free(p->items);
	params_init(p);
}

static int params_index(const Params *p, const char *name)
{
	for (int i = 0; i < p->n; i++)
		if (strcasecmp(p->items[i].name, name) == 0)
			return i;
	return -1;
}

const char *params_get(const Params *p, const char *name)
{
	int i = params_index(p, name);
	return i < 0 ? NULL : p->items[i].value;
}

bool params_set(Params *p, const char *name, const char *value)
{
	int i = params_index(p, name);
	if (i >= 0) {
		if (strcmp(p->items[i].value, value) == 0)
			return false;
		char *v = intern(value);
		unintern(p->items[i].value);
		p->items[i].value = v;
		p->version = next_version++;
		return true;
	}
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 8;
		p->items = xrealloc(p->items, sizeof(Param) * (size_t)p->cap);
	}
	p->items[p->n].name = intern(name);
	p->items[p->n].value = intern(value);
	p->n++;
	p->version = next_version++;
	return true;
}

void params_remove(Params *p, const char *name)
{
	int i = params_index(p, name);
	if (i < 0)
		return;
	unintern(p->items[i].name);
	unintern(p->items[i].value);
	p->items[i] = p->items[--p->n];
	p->version = next_version++;
}

void params_copy(Params *dst, const Params *src)
{
	params_clear(dst);
	for (int i = 0; i < src->n; i++)
		params_set(dst, src->items[i].name, src->items[i].value);
}

static const char *const readonly_params[] = {
        "server_version",        "server_encoding", "integer_datetimes", "is_superuser",
        "session_authorization", "in_hot_standby",  "scram_iterations",  NULL};

static const char *const reported_params[] = {"client_encoding",
                                              "DateStyle",
                                              "TimeZone",
                                              "IntervalStyle",
                                              "application_name",
                                              "standard_conforming_strings",
                                              NULL};

static bool in_list(const char *const *list, const char *name)
{
	for (; *list; list++)
		if (strcasecmp(*list, name) == 0)
			return true;
	return false;
}

bool param_is_server_report(const char *name)
{
	/* reported by the server about itself, but a client may set it at startup */
	return strcasecmp(name, "default_transaction_read_only") == 0;
}

bool param_is_server_default(const char *name, const char *value)
{
	/* a server reports default_transaction_read_only at login: its "off" is no client's */
	return param_is_server_report(name) && strcasecmp(value, "off") == 0;
}

bool param_is_readonly(const char *name)
{
	return in_list(readonly_params, name);
}

bool param_is_reported(const char *name)
{
	return in_list(reported_params, name);
}

void param_quote_literal(Buf *sql, const char *s)
{
	bool backslash = strchr(s, '\\') != NULL;
	if (backslash)
		buf_append(sql, "E", 1);
	buf_append(sql, "'", 1);
	for (; *s; s++) {
		if (*s == '\'' || *s == '\\')
			buf_append(sql, s, 1);
		buf_append(sql, s, 1);
	}
	buf_append(sql, "'", 1);
}

void param_quote_ident(Buf *sql, const char *s)
{
	buf_append(sql, "\"", 1);
	for (; *s; s++) {
		if (*s == '"')
			buf_append(sql, s, 1);
		buf_append(sql, s, 1);
	}
	buf_append(sql, "\"", 1);
}

static uint64_t hash_lower(uint64_t h, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch + 32);
		h ^= ch;
		h *= 1099511628211ULL;
	}
	return h;
}

static uint64_t hash_exact(uint64_t h, const char *s)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

uint64_t params_fingerprint_compute(Params *p)
{
	uint64_t fp = 0;
	for (int i = 0; i < p->n; i++) {
		const Param *it = &p->items[i];
		if (param_is_readonly(it->name) || param_is_server_default(it->name, it->value))
			continue;
		uint64_t h = hash_lower(1469598103934665603ULL, it->name);
		h ^= 0xff;
		h *= 1099511628211ULL;
		h = param_is_reported(it->name) ? hash_lower(h, it->value)
		                                : hash_exact(h, it->value);
		fp += h * 0x9E3779B97F4A7C15ULL; /* a sum: the order of the list does not matter */
	}
	p->fp = fp;
	p->fp_version = p->version;
	return fp;
}

static bool value_equal(const char *name, const char *a, const char *b)
{
	/* Reported values come back normalised (utf8 -> UTF8); compare those loosely. */
	return param_is_reported(name) ? strcasecmp(a, b) == 0 : strcmp(a, b) == 0;
}

bool param_sync_sql(const Params *client, Params *server, Buf *sql)
{
	static const char head[] = "SELECT ";
	static const char call[] = "pg_catalog.set_config(";
	bool any = false;

	/*
	 * set_config, not SET: SET name = 'a, b' would make a list-valued setting
	 * (search_path, temp_tablespaces) one element named "a, b".
	 */
	for (int i = 0; i < client->n; i++) {
		const Param *cp = &client->items[i];
		const char *sv;
		if (param_is_readonly(cp->name))
			continue;
		sv = params_get(server, cp->name);
		if (sv && value_equal(cp->name, cp->value, sv))
			continue;
		if (!any)
			buf_append(sql, head, sizeof(head) - 1);
		else
			buf_append(sql, ", ", 2);
		buf_append(sql, call, sizeof(call) - 1);
		param_quote_literal(sql, cp->name);
		buf_append(sql, ", ", 2);
		param_quote_literal(sql, cp->value);
		buf_append(sql, ", false)", 8);
		params_set(server, cp->name, cp->value);
		any = true;
	}
	if (any)
		buf_append(sql, ";", 1);
	/* Unreported values an earlier client set: back to the server default. */
	for (int i = 0; i < server->n;) {
		const Param *sp = &server->items[i];
		if (!param_is_reported(sp->name) && !param_is_readonly(sp->name) &&
		    !params_get(client, sp->name) &&
		    !param_is_server_default(sp->name, sp->value)) {
			buf_append(sql, "RESET ", 6);
			param_quote_ident(sql, sp->name);
			buf_append(sql, ";", 1);
			params_remove(server, sp->name);
			any = true;
			continue;
		}
		i++;
	}
	return any;
}
