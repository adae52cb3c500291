/*
 * admin: the SQL console reached with dbname = admin_db (SPEC §6). Commands
 * arrive as simple Query messages (and, for drivers, Parse/Bind/Execute
 * without parameters); results go back as RowDescription / DataRow /
 * CommandComplete so psql prints tables and drivers read rows.
 */
#ifndef PGTENANT_ADMIN_H
#define PGTENANT_ADMIN_H

#include "types.h"
#include "common.h"

/* Frames and answers the console client's pending input (called by client.c). */
void admin_process(Client *c);
/* A command that answers later (PAUSE, WAIT_CLOSE) finished: send its tag and ReadyForQuery. */
void admin_command_done(Client *c, const char *tag);
/* A console command failed later: send the error and ReadyForQuery. */
void admin_command_failed(Client *c, const char *sqlstate, const char *msg);

#endif
