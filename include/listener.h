/*
 * listener: the TCP and unix sockets pgtenant accepts clients on.
 */
#ifndef PGTENANT_LISTENER_H
#define PGTENANT_LISTENER_H

#include "config.h"

bool listener_start(const Config *cfg);
/* Stops accepting (shutdown); existing clients are untouched. */
void listener_stop(void);

#endif
