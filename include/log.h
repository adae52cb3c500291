/*
 * log: leveled logging to stderr or log_file. The macros check the level
 * before any formatting, so a disabled debug line costs one comparison.
 * Connection macros take the connection first and prefix its identity and
 * tenant, so every line about a client names its tenant.
 */
#ifndef PGTENANT_LOG_H
#define PGTENANT_LOG_H

#include "common.h"

typedef enum {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARNING,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
	LOG_LVL_TRACE
} LogLevel;

extern int g_log_level;

/*
 * Switches to path (NULL or "": stderr), reopening it when it is the file
 * already open. The new file is opened before the old one is closed: when
 * it cannot be, logging goes on where it was and the failure is logged.
 */
void log_open(const char *path);
void log_write(LogLevel lvl, const char *fmt, ...) PRINTF_LIKE(2, 3);

#define log_at(lvl, ...)                                                                           \
	do {                                                                                       \
		if ((int)(lvl) <= g_log_level)                                                     \
			log_write((lvl), __VA_ARGS__);                                             \
	} while (0)
#define log_error(...)   log_at(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warning(...) log_at(LOG_LVL_WARNING, __VA_ARGS__)
#define log_info(...)    log_at(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)   log_at(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_trace(...)   log_at(LOG_LVL_TRACE, __VA_ARGS__)

#endif
