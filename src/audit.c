/*
 * audit: see include/audit.h.
 *
 * A record is built in a Buf and written whole with one write(2) on an
 * O_APPEND descriptor; there is no stdio buffering, so a crash loses no
 * record that was reported as written and a rotated file (reopened on
 * reload) never gets half a line.
 */
#include "audit.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int audit_fd = -1;
static char *audit_path;

bool audit_open(const char *path)
{
	int fd;

	if (!path || !*path) {
		audit_close();
		return true;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		int e = errno;
		log_error("cannot open audit_log %s: %s", path, strerror(e));
		errno = e;
		return false;
	}
	audit_close();
	audit_fd = fd;
	audit_path = xstrdup(path);
	return true;
}

void audit_close(void)
{
	if (audit_fd >= 0)
		close(audit_fd);
	audit_fd = -1;
	free(audit_path);
	audit_path = NULL;
}

bool audit_enabled(void)
{
	return audit_fd >= 0;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 when invalid. */
static size_t utf8_seq_len(const uint8_t *p, size_t n)
{
	size_t len;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	/* overlong forms, surrogates and values past U+10FFFF are not UTF-8 */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void audit_json_string(Buf *out, const char *s)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t n;
	char esc[8];

	if (!s) {
		buf_append(out, "null", 4);
		return;
	}
	n = strlen(s);
	buf_append(out, "\"", 1);
	for (size_t i = 0; i < n;) {
		uint8_t ch = p[i];
		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			buf_append(out, esc, 2);
			i++;
		} else if (ch < 0x20 || ch == 0x7f) {
			const char *named = ch == '\n'   ? "\\n"
			                    : ch == '\r' ? "\\r"
			                    : ch == '\t' ? "\\t"
			                                 : NULL;
			if (named)
				buf_append(out, named, 2);
			else
				buf_append(out, esc,
				           (size_t)snprintf(esc, sizeof(esc), "\\u%04x", ch));
			i++;
		} else {
			size_t len = utf8_seq_len(p + i, n - i);
			if (len == 0) {
				/* not UTF-8: keep the byte's value readable, as if it were Latin-1
				 */
				buf_append(out, esc,
				           (size_t)snprintf(esc, sizeof(esc), "\\u%04x", ch));
				i++;
			} else {
				buf_append(out, p + i, len);
				i += len;
			}
		}
	}
	buf_append(out, "\"", 1);
}

/* Starts a record: {"ts":"2024-05-01T12:00:00.123Z","event":"..." */
static void record_begin(Buf *b, const char *event)
{
	struct timeval tv;
	struct tm tm;
	char ts[64];
	size_t n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(tv.tv_usec / 1000));
	buf_append(b, "{\"ts\":\"", 7);
	buf_append(b, ts, strlen(ts));
	buf_append(b, "\",\"event\":", 10);
	audit_json_string(b, event);
}

static void field_str(Buf *b, const char *name, const char *value)
{
	buf_append(b, ",\"", 2);
	buf_append(b, name, strlen(name));
	buf_append(b, "\":", 2);
	audit_json_string(b, value);
}

static void field_raw(Buf *b, const char *name, const char *json)
{
	buf_append(b, ",\"", 2);
	buf_append(b, name, strlen(name));
	buf_append(b, "\":", 2);
	buf_append(b, json, strlen(json));
}

static void record_write(Buf *b)
{
	buf_append(b, "}\n", 2);
	/* one write: O_APPEND places the whole line atomically (a short write is retried) */
	const uint8_t *p = buf_head(b);
	size_t left = buf_avail(b);
	while (left > 0) {
		ssize_t w = write(audit_fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			log_error("cannot write audit_log %s: %s", audit_path ? audit_path : "?",
			          w < 0 ? strerror(errno) : "short write");
			break;
		}
		p += w;
		left -= (size_t)w;
	}
	buf_free(b);
}

void audit_login(const char *tenant, const char *user, const char *addr, bool ok,
                 const char *reason)
{
	Buf b;

	if (audit_fd < 0)
		return;
	buf_init(&b);
	record_begin(&b, "login");
	field_str(&b, "tenant", tenant);
	field_str(&b, "user", user);
	field_str(&b, "addr", addr);
	field_raw(&b, "ok", ok ? "true" : "false");
	if (reason || !ok)
		field_str(&b, "reason", reason);
	record_write(&b);
}

void audit_console(const char *user, const char *command, bool ok, const char *result)
{
	Buf b;

	if (audit_fd < 0)
		return;
	buf_init(&b);
	record_begin(&b, "console");
	field_str(&b, "user", user);
	field_str(&b, "command", command);
	field_raw(&b, "ok", ok ? "true" : "false");
	field_str(&b, "result", result);
	record_write(&b);
}

void audit_reload(bool ok, int n_errors)
{
	Buf b;
	char num[24];

	if (audit_fd < 0)
		return;
	buf_init(&b);
	record_begin(&b, "reload");
	field_raw(&b, "ok", ok ? "true" : "false");
	snprintf(num, sizeof(num), "%d", n_errors);
	field_raw(&b, "errors", num);
	record_write(&b);
}
