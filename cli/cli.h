/* cli.h -- `gamingd sql [URL]`: a SQL shell over gamingd's ksqlDB REST API,
 * as ksqlDB's CLI is over ksqlDB's. It is a client: it speaks HTTP to the
 * daemon (libcurl) and uses nothing of the daemon but the byte buffer of
 * server/util.h; replies are read with jansson.
 *
 *   shell.c  arguments, the read loop (GNU readline, Tab completion), statements,
 *            the CLI's own commands (HELP, SPOOL, RUN SCRIPT, ...), HTTP
 *   draw.c   results and entities drawn as ksqlDB's CLI draws them */
#ifndef GD_CLI_H
#define GD_CLI_H

#include <jansson.h>
#include <stdio.h>

#include "../server/util.h"

/* gamingd sql [URL] [-e STATEMENTS | -f FILE] [--api-key-file FILE]:
 * argv[0] is "sql". Returns the process's exit status. */
int gd_shell_main(int argc, char **argv);

/* A result value as the shell shows it (appended to b, not terminated). */
void gd_cli_value_text(gd_buf *b, const json_t *v);
/* A query's column names, then its rows, in cells of the width's share. */
void gd_cli_draw_header(FILE *f, int width, const json_t *names);
void gd_cli_draw_row(FILE *f, int width, size_t columns, const json_t *row);
/* The entities /ksql answered (a JSON array). */
void gd_cli_draw_entities(FILE *f, int width, const json_t *entities);
/* A ksqlDB error object: the entities done before it to out, its message
 * to err, as the server wrote it. */
void gd_cli_draw_error(FILE *out, FILE *err, int width, const json_t *error);

#endif
