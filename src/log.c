/*
 * log: writes one line per call with a wall-clock timestamp and pid.
 * SIGHUP reopens log_file (so logrotate works) through log_open(), before
 * it reloads and whether or not the reload succeeds (main.c).
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int g_log_level = LOG_LVL_INFO;
static FILE *log_fp;

static const char *const level_names[] = {"ERROR", "WARNING", "LOG", "DEBUG", "TRACE"};

void log_open(const char *path)
{
	FILE *fp = NULL;

	if (path && *path) {
		/* "e": O_CLOEXEC, so no child (none today) inherits the log */
		fp = fopen(path, "ae");
		if (!fp) {
			int e = errno;
			/* keep writing where we were: after a rotation, the renamed file still
			 * gets the lines, which beats losing them to a closed stderr (daemon) */
			log_error("cannot open log_file %s: %s; logging goes on to %s", path,
			          strerror(e), log_fp ? "the file open before" : "stderr");
			return;
		}
		setvbuf(fp, NULL, _IOLBF, 0);
	}
	if (log_fp && log_fp != stderr)
		fclose(log_fp);
	log_fp = fp;
}

void log_write(LogLevel lvl, const char *fmt, ...)
{
	FILE *fp = log_fp ? log_fp : stderr;
	struct timeval tv;
	struct tm tm;
	char ts[32];
	va_list ap;

	if (!fmt)
		return;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
	flockfile(fp);
	fprintf(fp, "%s.%03d [%d] %s ", ts, (int)(tv.tv_usec / 1000), (int)getpid(),
	        level_names[lvl]);
	va_start(ap, fmt);
	/* the analyzer loses va_start here (clang 14); ap is initialised one line up */
	vfprintf(fp, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized) */
	va_end(ap);
	fputc('\n', fp);
	funlockfile(fp);
}
