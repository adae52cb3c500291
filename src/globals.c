/*
 * globals: the process-wide state declared in pgtenant.h, kept out of
 * main.c so unit tests can link every other module.
 */
#include "pgtenant.h"

Config *g_cfg;
AuthFile *g_auth;
unsigned g_cfg_epoch;
bool g_shutdown;
usec_t g_shutdown_deadline;
