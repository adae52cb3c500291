/*
 * The process-wide state shared by the modules: the configuration in
 * force, the auth file, and the shutdown flag. Defined in globals.c (not
 * main.c, so unit tests link every module but main); set by main.c and
 * control.c (reload, shutdown).
 */
#ifndef PGTENANT_PGTENANT_H
#define PGTENANT_PGTENANT_H

#include "auth.h"
#include "config.h"

extern Config *g_cfg;
extern AuthFile *g_auth;
extern unsigned g_cfg_epoch; /* bumped whenever g_cfg is replaced (RELOAD) */
extern bool g_shutdown;      /* SIGTERM/SIGINT seen: no new clients, finish transactions */
extern usec_t g_shutdown_deadline;

#endif
