/*
 * listener: the TCP and unix sockets pgtenant accepts clients on.
 */
#ifndef PGTENANT_LISTENER_H
#define PGTENANT_LISTENER_H

#include "config.h"

/* Opens the listening sockets (before daemonizing, so a taken port fails the start). */
bool listener_bind(const Config *cfg);
/* Starts accepting on them (needs the event loop). */
void listener_start(void);
/* Stops accepting (shutdown); existing clients are untouched. */
void listener_stop(void);

#endif
