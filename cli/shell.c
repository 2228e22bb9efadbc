/* shell.c -- `gamingd sql [URL]`, the SQL shell: ksqlDB's CLI for gamingd.
 *
 * It reads statements (each ends at a ';' outside quotes and comments) from
 * the terminal with GNU readline -- line editing, history kept in
 * ~/.gamingd_history, a continuation prompt while a statement is open,
 * Ctrl-D to leave -- or from --execute / -f FILE / a pipe, where the first
 * statement that fails ends the run with status 1.
 *
 * As in ksqlDB's CLI, some statements never reach the server: SET / UNSET
 * keep query properties and DEFINE / UNDEFINE session variables here, and
 * every request carries them ("properties" / "streamsProperties",
 * "sessionVariables"), so the server substitutes ${name} and answers SHOW
 * VARIABLES with them. The CLI's own commands are the shell's too: HELP,
 * EXIT / QUIT, SPOOL file / SPOOL OFF (a copy of the session: output and
 * errors go through a stdio stream of fopencookie's that writes both to
 * the terminal and to the file, and each statement is written there after
 * its prompt), RUN SCRIPT 'file' (its statements, run as -f runs them). At
 * the prompt they need no ';', as in ksqlDB's CLI. A SELECT goes to
 * /query-stream, everything else to /ksql; errors are printed as the
 * server worded them.
 *
 * Tab completes keywords and table and stream names, in the case of what
 * was typed; the names are asked of the server (SHOW STREAMS; SHOW TABLES)
 * at the first Tab after any statement ran, not at every key.
 *
 * A query's rows are drawn as libcurl hands over bytes, a line at a time,
 * so a push query (EMIT CHANGES) shows rows as they come. Ctrl-C sets a
 * flag; libcurl's progress callback, called at least once a second, sees
 * it and aborts the transfer, the shell asks /close-query to end the query
 * on the server, and the prompt comes back. At the prompt, Ctrl-C drops
 * the statement being typed (the shell's key reader ends the read).
 *
 * The API key comes from GAMINGD_API_KEY or --api-key-file, never from the
 * command line, where every local user could read it. */
#include <curl/curl.h>
#include <errno.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"

#define DEFAULT_URL "http://localhost:8080"
#define HISTORY_FILE ".gamingd_history"
enum { HISTORY_LINES = 1000, KEY_MAX = 4096, MAX_SCRIPT_DEPTH = 8 };

/* A signal handler cannot be handed state: the Ctrl-C flag is a
 * file-scope variable; the shell's state is passed explicitly, save to
 * readline's completion callbacks, which cannot be handed it either (see
 * `completing`, below). */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct {
    char url[1024];
    char *auth_header;  /* "Authorization: Bearer KEY", or NULL */
    const char *ca_file; /* certificates that verify an https URL's server (its own, if self-signed), or NULL */
    json_t *properties; /* SET */
    json_t *variables;  /* DEFINE */
    CURL *curl;
    FILE *out, *err;   /* the terminal's, or while spooling, streams that copy to the spool too */
    FILE *spool;       /* SPOOL's file, or NULL */
    char spool_path[4096];
    int script_depth;  /* RUN SCRIPTs running inside one another */
    char **names;      /* tables and streams, for completion */
    size_t nnames;
    bool names_stale;  /* a statement ran since they were asked for */
    size_t complete_at; /* the completion generator's place among keywords and names */
} shell;

/* One request's answer as it arrives. */
typedef struct {
    shell *sh;
    bool query;       /* /query-stream: lines drawn as they come */
    long status;      /* HTTP status, once known */
    gd_buf body;      /* the answer (for a query: a partial line, or an error) */
    bool header_seen; /* the query's header line was drawn */
    size_t columns;
    char query_id[256];
    bool failed;      /* an error line within the stream */
    int width;
} transfer;

static int terminal_width(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *cols = getenv("COLUMNS");
    return cols && atoi(cols) > 0 ? atoi(cols) : 80;
}

/* ---- HTTP ---- */

/* One line of /query-stream: the header, a row, or an error object. */
static void query_line(transfer *t, const char *p, size_t n)
{
    if (!n) return;
    json_error_t jerr;
    json_t *v = json_loadb(p, n, 0, &jerr);
    if (json_is_array(v)) {
        gd_cli_draw_row(t->sh->out, t->width, t->columns, v);
    } else if (json_is_object(v) && !t->header_seen && json_is_array(json_object_get(v, "columnNames"))) {
        const json_t *names = json_object_get(v, "columnNames");
        const char *id = json_string_value(json_object_get(v, "queryId"));
        snprintf(t->query_id, sizeof t->query_id, "%s", id ? id : "");
        t->columns = json_array_size(names);
        t->header_seen = true;
        gd_cli_draw_header(t->sh->out, t->width, names);
    } else if (json_is_object(v) && json_object_get(v, "message")) {
        gd_cli_draw_error(t->sh->out, t->sh->err, t->width, v);
        t->failed = true;
    } else {
        fprintf(t->sh->err, "gamingd sql: unexpected line from the server: %.*s\n", (int)n, p);
        t->failed = true;
    }
    json_decref(v);
    fflush(t->sh->out);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    transfer *t = arg;
    size_t n = size * nmemb;
    if (!t->status) curl_easy_getinfo(t->sh->curl, CURLINFO_RESPONSE_CODE, &t->status);
    gd_buf_put(&t->body, p, n);
    if (!t->query || t->status != 200) return n;
    size_t start = 0;
    for (size_t i = 0; i < t->body.len; i++) {
        if (t->body.p[i] != '\n') continue;
        query_line(t, t->body.p + start, i - start);
        start = i + 1;
    }
    memmove(t->body.p, t->body.p + start, t->body.len - start);
    t->body.len -= start;
    return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)arg, (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return interrupted ? 1 : 0; /* non-zero aborts the transfer */
}

/* POSTs the JSON body to path; the answer goes to t. */
static CURLcode post(shell *sh, const char *path, const json_t *body, transfer *t)
{
    char url[1200];
    snprintf(url, sizeof url, "%s%s", sh->url, path);
    char *text = json_dumps(body, JSON_COMPACT);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (t->query) headers = curl_slist_append(headers, "Accept: application/vnd.ksqlapi.delimited.v1");
    if (sh->auth_header) headers = curl_slist_append(headers, sh->auth_header);
    CURL *c = sh->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (sh->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, sh->ca_file);
    CURLcode rc = curl_easy_perform(c);
    if (!t->status) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t->status);
    curl_slist_free_all(headers);
    free(text);
    return rc;
}

static void transfer_init(transfer *t, shell *sh, bool query)
{
    memset(t, 0, sizeof *t);
    t->sh = sh;
    t->query = query;
    t->width = terminal_width();
}

/* An answer that is not 200: the server's error object, or its text. */
static int print_failure(shell *sh, transfer *t, CURLcode rc)
{
    if (rc != CURLE_OK) {
        fprintf(sh->err, "gamingd sql: %s: %s\n", sh->url, curl_easy_strerror(rc));
        return GD_ERR;
    }
    json_error_t jerr;
    json_t *e = json_loadb(t->body.p ? t->body.p : "", t->body.len, 0, &jerr);
    if (json_is_object(e) && json_object_get(e, "message")) gd_cli_draw_error(sh->out, sh->err, t->width, e);
    else fprintf(sh->err, "gamingd sql: HTTP %ld: %.*s\n", t->status, (int)t->body.len, t->body.p ? t->body.p : "");
    json_decref(e);
    return GD_ERR;
}

/* Ends a query the user interrupted: the server stops it now rather than
 * when it notices the closed connection. */
static void close_query(shell *sh, const char *id)
{
    if (!id[0]) return;
    interrupted = 0;
    transfer t;
    transfer_init(&t, sh, false);
    json_t *body = json_pack("{ss}", "queryId", id);
    post(sh, "/close-query", body, &t);
    json_decref(body);
    gd_buf_free(&t.body);
}

static int run_query(shell *sh, const char *stmt)
{
    transfer t;
    transfer_init(&t, sh, true);
    json_t *body = json_pack("{sssOsO}", "sql", stmt, "properties", sh->properties, "sessionVariables", sh->variables);
    CURLcode rc = post(sh, "/query-stream", body, &t);
    json_decref(body);
    int status = GD_OK;
    if (rc == CURLE_ABORTED_BY_CALLBACK) close_query(sh, t.query_id);
    else if (rc != CURLE_OK || t.status != 200) status = print_failure(sh, &t, rc);
    else query_line(&t, t.body.p, t.body.len); /* a last line without its newline */
    if (!status && t.failed) status = GD_ERR;
    if (!status) fprintf(sh->out, "Query terminated\n");
    fflush(sh->out);
    gd_buf_free(&t.body);
    return status;
}

/* A statement ksqlDB accepts but could not run reports status ERROR. */
static const char *command_error(const json_t *entities)
{
    size_t i;
    json_t *e;
    json_array_foreach(entities, i, e) {
        const json_t *cs = json_object_get(e, "commandStatus");
        if (cs && !strcmp(json_string_value(json_object_get(cs, "status")) ?: "", "ERROR"))
            return json_string_value(json_object_get(cs, "message")) ?: "";
    }
    return NULL;
}

static int run_ksql(shell *sh, const char *stmt)
{
    transfer t;
    transfer_init(&t, sh, false);
    json_t *body = json_pack("{sssOsO}", "ksql", stmt, "streamsProperties", sh->properties, "sessionVariables",
                             sh->variables);
    CURLcode rc = post(sh, "/ksql", body, &t);
    json_decref(body);
    int status = GD_OK;
    if (rc == CURLE_ABORTED_BY_CALLBACK) fprintf(sh->err, "gamingd sql: interrupted\n");
    else if (rc != CURLE_OK || t.status != 200) status = print_failure(sh, &t, rc);
    else {
        json_error_t jerr;
        json_t *entities = json_loadb(t.body.p ? t.body.p : "", t.body.len, 0, &jerr);
        const char *failed = command_error(entities);
        if (failed) {
            fprintf(sh->err, "%s\n", failed);
            status = GD_ERR;
        } else if (json_is_array(entities)) gd_cli_draw_entities(sh->out, t.width, entities);
        else fprintf(sh->out, "%.*s\n", (int)t.body.len, t.body.p ? t.body.p : "");
        json_decref(entities);
    }
    fflush(sh->out);
    gd_buf_free(&t.body);
    return status;
}

/* ---- the statements the shell keeps itself ---- */

typedef struct {
    const char *p;
} scanner;

static void skip_space(scanner *s)
{
    while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r') s->p++;
}

/* A bare word (letters, digits, _), copied to out. */
static bool word(scanner *s, char *out, size_t n)
{
    skip_space(s);
    size_t len = 0;
    while ((*s->p >= 'a' && *s->p <= 'z') || (*s->p >= 'A' && *s->p <= 'Z') || (*s->p >= '0' && *s->p <= '9') ||
           *s->p == '_') {
        if (len + 1 < n) out[len++] = *s->p;
        s->p++;
    }
    out[len] = 0;
    return len > 0;
}

/* A 'quoted' string ('' inside is one quote), unquoted into out. */
static bool quoted(scanner *s, gd_buf *out)
{
    skip_space(s);
    if (*s->p != '\'') return false;
    for (s->p++; *s->p; s->p++) {
        if (*s->p == '\'' && s->p[1] != '\'') {
            s->p++;
            gd_buf_putc(out, 0);
            return true;
        }
        if (*s->p == '\'') s->p++;
        gd_buf_putc(out, *s->p);
    }
    return false;
}

static bool expect(scanner *s, char c)
{
    skip_space(s);
    if (*s->p != c) return false;
    s->p++;
    return true;
}

/* Only the closing ';' (and space) may follow. */
static bool at_end(scanner *s)
{
    skip_space(s);
    if (*s->p == ';') s->p++;
    skip_space(s);
    return *s->p == 0;
}

static int set_property(shell *sh, scanner *s)
{
    gd_buf name = {0}, value = {0};
    int rc = GD_ERR;
    if (quoted(s, &name) && expect(s, '=') && quoted(s, &value) && at_end(s)) {
        const char *prior = json_string_value(json_object_get(sh->properties, name.p));
        fprintf(sh->out, "Successfully changed local property '%s'%s%s%s to '%s'.%s\n", name.p, prior ? " from '" : "",
                prior ? prior : "", prior ? "'" : "", value.p, prior ? "" : " Use the UNSET command to revert your change.");
        json_object_set_new(sh->properties, name.p, json_string(value.p));
        rc = GD_OK;
    } else fprintf(sh->err, "SET takes 'name' = 'value'\n");
    gd_buf_free(&name);
    gd_buf_free(&value);
    return rc;
}

static int unset_property(shell *sh, scanner *s)
{
    gd_buf name = {0};
    int rc = GD_ERR;
    if (!quoted(s, &name) || !at_end(s)) fprintf(sh->err, "UNSET takes 'name'\n");
    else if (!json_object_get(sh->properties, name.p))
        fprintf(sh->err, "Cannot unset local property '%s' which was never set in the first place\n", name.p);
    else {
        fprintf(sh->out, "Successfully unset local property '%s' (value was '%s').\n", name.p,
                json_string_value(json_object_get(sh->properties, name.p)));
        json_object_del(sh->properties, name.p);
        rc = GD_OK;
    }
    gd_buf_free(&name);
    return rc;
}

static int define_variable(shell *sh, scanner *s)
{
    char name[256];
    gd_buf value = {0};
    int rc = GD_ERR;
    if (word(s, name, sizeof name) && expect(s, '=') && quoted(s, &value) && at_end(s)) {
        json_object_set_new(sh->variables, name, json_string(value.p));
        rc = GD_OK;
    } else fprintf(sh->err, "DEFINE takes name = 'value'\n");
    gd_buf_free(&value);
    return rc;
}

static int undefine_variable(shell *sh, scanner *s)
{
    char name[256];
    if (!word(s, name, sizeof name) || !at_end(s)) {
        fprintf(sh->err, "UNDEFINE takes a name\n");
        return GD_ERR;
    }
    if (json_object_del(sh->variables, name)) /* ksqlDB's CLI warns and goes on */
        fprintf(sh->out, "Cannot undefine variable '%s' which was never defined.\n", name);
    return GD_OK;
}

/* ---- the CLI's own commands ---- */

static int read_all(FILE *f, gd_buf *out)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) gd_buf_put(out, chunk, n);
    return ferror(f) ? GD_ERR : GD_OK;
}


static void help(shell *sh)
{
    fputs("\n"
          "Description:\n"
          "\tThe gamingd SQL shell runs statements against gamingd's ksqlDB REST API: a SELECT on\n"
          "\t/query-stream, the others on /ksql. Statements end with ';' and may span lines.\n"
          "\n"
          "Commands the shell runs itself (at the prompt, without ';' too):\n"
          "help:\n"
          "\tShow this message.\n"
          "exit, quit:\n"
          "\tExit the shell (as Ctrl-D does).\n"
          "spool <path_to_file>, spool off:\n"
          "\tCopy the statements and their results into a file (overwritten), until SPOOL OFF.\n"
          "\tStatements are written after their prompt, \"ksql> \".\n"
          "run script <path_to_sql_file>:\n"
          "\tRun the statements in the file, one after the other; the first that fails ends it.\n"
          "set 'name' = 'value';  unset 'name';\n"
          "\tA property sent with each request, such as SET 'auto.offset.reset' = 'earliest';\n"
          "define name = 'value';  undefine name;\n"
          "\tA variable: ${name} stands for value in the statements after it.\n"
          "\n"
          "Statements the server runs:\n"
          "\tSELECT ... FROM table [WHERE ...] [ORDER BY ...] [LIMIT n];      a pull query\n"
          "\tSELECT ... FROM stream|table ... EMIT CHANGES|FINAL [LIMIT n];    a push query\n"
          "\tCREATE TABLE name AS SELECT ... FROM stream ... GROUP BY ...;\n"
          "\tCREATE STREAM name AS SELECT ... FROM stream [WHERE ...] [PARTITION BY ...];\n"
          "\tDROP TABLE|STREAM [IF EXISTS] name;  TERMINATE query_id|ALL;\n"
          "\tSHOW|LIST STREAMS|TABLES|QUERIES|PROPERTIES|VARIABLES|FUNCTIONS;\n"
          "\tDESCRIBE [EXTENDED] name;  DESCRIBE FUNCTION name;\n"
          "\n"
          "Keyboard shortcuts:\n"
          "\tTab: complete a keyword, or a table or stream name.\n"
          "\tCtrl-C: stop a query, or drop the statement being typed.\n"
          "\tCtrl-D: leave.  Ctrl-R: search the history.  Up and Down: move through it.\n"
          "\n",
          sh->out);
    fflush(sh->out);
}

/* A path: 'quoted' ('' a quote) or bare up to space or ';'. */
static bool path_arg(scanner *s, gd_buf *out)
{
    skip_space(s);
    if (*s->p == '\'') return quoted(s, out);
    while (*s->p && *s->p != ';' && *s->p != ' ' && *s->p != '\t' && *s->p != '\n' && *s->p != '\r')
        gd_buf_putc(out, *s->p++);
    gd_buf_putc(out, 0);
    return out->len > 1;
}

/* While spooling, out and err are these: each write goes to the terminal's
 * stream and to the spool, in the order written. */
typedef struct {
    FILE *term, *copy;
} tee;

static ssize_t tee_write(void *cookie, const char *buf, size_t n)
{
    tee *t = cookie;
    fwrite(buf, 1, n, t->term);
    fflush(t->term);
    fwrite(buf, 1, n, t->copy);
    fflush(t->copy); /* a push query's rows reach the file as they come */
    return (ssize_t)n;
}

static int tee_close(void *cookie)
{
    free(cookie);
    return 0;
}

static FILE *tee_open(FILE *term, FILE *copy)
{
    tee *t = malloc(sizeof *t);
    if (!t) return NULL;
    *t = (tee){term, copy};
    FILE *f = fopencookie(t, "w", (cookie_io_functions_t){.write = tee_write, .close = tee_close});
    if (!f) free(t);
    else setvbuf(f, NULL, _IONBF, 0); /* in order with the other stream's writes */
    return f;
}

static void spool_off(shell *sh)
{
    if (!sh->spool) return;
    fclose(sh->out);
    fclose(sh->err);
    fclose(sh->spool);
    sh->out = stdout;
    sh->err = stderr;
    sh->spool = NULL;
    fprintf(sh->out, "Spool written to %s\n", sh->spool_path);
}

/* SPOOL file | SPOOL OFF, in ksqlDB's CLI's words. */
static int spool(shell *sh, scanner *s)
{
    gd_buf path = {0};
    int rc = GD_ERR;
    if (!path_arg(s, &path) || !at_end(s)) fprintf(sh->err, "SPOOL takes a file, or OFF\n");
    else if (!strcasecmp(path.p, "OFF")) {
        spool_off(sh);
        rc = GD_OK;
    } else if (sh->spool) fprintf(sh->err, "Cannot set two spools! Please issue SPOOL OFF.\n");
    else if (!(sh->spool = fopen(path.p, "w"))) fprintf(sh->err, "Cannot SPOOL to file: %s: %s\n", path.p, strerror(errno));
    else {
        if (!realpath(path.p, sh->spool_path)) snprintf(sh->spool_path, sizeof sh->spool_path, "%s", path.p);
        FILE *out = tee_open(stdout, sh->spool), *err = out ? tee_open(stderr, sh->spool) : NULL;
        if (!err) {
            if (out) fclose(out);
            fclose(sh->spool);
            sh->spool = NULL;
            fprintf(sh->err, "Cannot SPOOL to file: %s: out of memory\n", path.p);
        } else {
            sh->out = out, sh->err = err;
            fprintf(sh->out, "Session will be spooled to %s\nEnter SPOOL OFF to disable\n", sh->spool_path);
            rc = GD_OK;
        }
    }
    gd_buf_free(&path);
    return rc;
}

static int run_statements(shell *sh, gd_buf *text, bool to_end, bool interactive);

/* RUN SCRIPT file: its statements as -f runs them (the first failure ends
 * it); an EXIT in it ends the shell. */
static int run_script(shell *sh, scanner *s)
{
    char second[16];
    gd_buf path = {0}, text = {0};
    int rc = GD_ERR;
    if (!word(s, second, sizeof second) || strcasecmp(second, "SCRIPT") || !path_arg(s, &path) || !at_end(s))
        fprintf(sh->err, "RUN SCRIPT takes a file\n");
    else if (sh->script_depth == MAX_SCRIPT_DEPTH)
        fprintf(sh->err, "RUN SCRIPT %s: scripts run inside one another more than %d deep\n", path.p, MAX_SCRIPT_DEPTH);
    else {
        FILE *f = fopen(path.p, "r");
        if (!f || read_all(f, &text)) fprintf(sh->err, "Failed to read file: %s: %s\n", path.p, strerror(errno));
        else {
            sh->script_depth++;
            rc = run_statements(sh, &text, true, false);
            sh->script_depth--;
        }
        if (f) fclose(f);
    }
    gd_buf_free(&path);
    gd_buf_free(&text);
    return rc;
}

/* Whether a line typed at the prompt is one of the CLI's commands, which
 * need no ';' there. */
static bool is_command(const char *line)
{
    char w[16];
    scanner s = {line};
    if (!word(&s, w, sizeof w)) return false;
    if (!strcasecmp(w, "EXIT") || !strcasecmp(w, "QUIT") || !strcasecmp(w, "HELP")) return at_end(&s);
    if (!strcasecmp(w, "SPOOL")) return true;
    return !strcasecmp(w, "RUN") && word(&s, w, sizeof w) && !strcasecmp(w, "SCRIPT");
}

/* GD_EOF: the statement was EXIT or QUIT. */
static int run_statement(shell *sh, const char *stmt)
{
    scanner s = {stmt};
    char first[16];
    word(&s, first, sizeof first);
    interrupted = 0;
    sh->names_stale = true;
    if ((!strcasecmp(first, "EXIT") || !strcasecmp(first, "QUIT")) && at_end(&s)) return GD_EOF;
    if (!strcasecmp(first, "HELP") && at_end(&s)) {
        help(sh);
        return GD_OK;
    }
    if (!strcasecmp(first, "SPOOL")) return spool(sh, &s);
    if (!strcasecmp(first, "RUN")) return run_script(sh, &s);
    if (!strcasecmp(first, "SET")) return set_property(sh, &s);
    if (!strcasecmp(first, "UNSET")) return unset_property(sh, &s);
    if (!strcasecmp(first, "DEFINE")) return define_variable(sh, &s);
    if (!strcasecmp(first, "UNDEFINE")) return undefine_variable(sh, &s);
    if (!strcasecmp(first, "SELECT")) return run_query(sh, stmt);
    return run_ksql(sh, stmt);
}

/* ---- statements out of text ---- */

/* Where the first statement of text ends (just past its ';'), or NULL when
 * it is still open. Quotes ('', "", ``) and comments (--, / * * /) hide ';'. */
static const char *statement_end(const char *p)
{
    for (; *p; p++) {
        if (*p == '\'' || *p == '"' || *p == '`') {
            const char *close = strchr(p + 1, *p);
            if (!close) return NULL;
            p = close;
        } else if (p[0] == '-' && p[1] == '-') {
            p = strchr(p, '\n');
            if (!p) return NULL;
        } else if (p[0] == '/' && p[1] == '*') {
            p = strstr(p + 2, "*/");
            if (!p) return NULL;
            p++;
        } else if (*p == ';') return p + 1;
    }
    return NULL;
}

/* Past the space and comments before a statement: the server reads the
 * statement alone, so the line:column of its errors are the statement's
 * own, as ksqlDB's CLI sends them. */
static const char *skip_comments(const char *p)
{
    for (;;) {
        p += strspn(p, " \t\r\n");
        if (p[0] == '-' && p[1] == '-') p += strcspn(p, "\n");
        else if (p[0] == '/' && p[1] == '*' && strstr(p + 2, "*/")) p = strstr(p + 2, "*/") + 2;
        else return p;
    }
}

static bool blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') return false;
    return true;
}

/* A statement goes to the history on one line: the history file keeps a
 * line an entry. */
static void remember(const char *stmt)
{
    char *line = strdup(stmt + strspn(stmt, " \t\r\n"));
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    add_history(line);
    free(line);
}

/* Runs each complete statement at the start of *text, removing it; with
 * to_end also what is left without a ';'. interactive: statements go to the
 * history, and a failure does not end the run. */
static int run_statements(shell *sh, gd_buf *text, bool to_end, bool interactive)
{
    int status = GD_OK;
    gd_buf_putc(text, 0);
    text->len--;
    const char *p = text->p;
    for (;;) {
        const char *end = statement_end(p);
        if (!end && to_end && !blank(p, strlen(p))) end = p + strlen(p);
        if (!end) break;
        p = skip_comments(p);
        char *stmt = strndup(p, (size_t)(end - p));
        p = end;
        if (blank(stmt, strlen(stmt) - (stmt[0] && stmt[strlen(stmt) - 1] == ';'))) {
            free(stmt);
            continue;
        }
        if (interactive) remember(stmt);
        else if (sh->spool) fprintf(sh->spool, "ksql> %s\n", stmt);
        status = run_statement(sh, stmt);
        free(stmt);
        if (status == GD_EOF || (status && !interactive)) break;
    }
    size_t left = text->len - (size_t)(p - text->p);
    memmove(text->p, p, left);
    text->len = blank(text->p, left) ? 0 : left;
    return status;
}

/* ---- completion ---- */

static const char *const keywords[] = {
    "ADVANCE", "ALL", "AND", "AS", "ASC", "BETWEEN", "BY", "CASE", "CAST", "CHANGES", "CREATE", "DAYS", "DEFINE",
    "DELETE", "DESC", "DESCRIBE", "DISTINCT", "DROP", "ELSE", "EMIT", "END", "EXISTS", "EXIT", "EXTENDED", "FALSE",
    "FINAL", "FROM", "FUNCTION", "FUNCTIONS", "GRACE", "GROUP", "HAVING", "HELP", "HOPPING", "HOURS", "IF", "IN", "IS",
    "LIKE", "LIMIT", "LIST", "MINUTES", "NOT", "NULL", "OFF", "OR", "ORDER", "PARTITION", "PERIOD", "PROPERTIES",
    "QUERIES", "QUIT", "RUN", "SCRIPT", "SECONDS", "SELECT", "SET", "SHOW", "SIZE", "SPOOL", "STREAM", "STREAMS",
    "TABLE", "TABLES", "TERMINATE", "THEN", "TOPIC", "TRUE", "TUMBLING", "UNDEFINE", "UNSET", "VARIABLES", "WHEN",
    "WHERE", "WINDOW"};

/* readline's completion callbacks cannot be handed state: the shell whose
 * line is being read, set while it reads. */
static shell *completing;

/* The tables' and streams' names, as the server lists them. */
static void fetch_names(shell *sh)
{
    sh->names_stale = false;
    for (size_t i = 0; i < sh->nnames; i++) free(sh->names[i]);
    sh->nnames = 0;
    transfer t;
    transfer_init(&t, sh, false);
    json_t *body = json_pack("{sssOsO}", "ksql", "SHOW STREAMS; SHOW TABLES;", "streamsProperties", sh->properties,
                             "sessionVariables", sh->variables);
    CURLcode rc = post(sh, "/ksql", body, &t);
    json_decref(body);
    json_error_t jerr;
    json_t *entities = rc == CURLE_OK && t.status == 200 ? json_loadb(t.body.p, t.body.len, 0, &jerr) : NULL;
    size_t i, j;
    json_t *e, *source;
    json_array_foreach(entities, i, e) {
        const json_t *list = json_object_get(e, "streams") ?: json_object_get(e, "tables");
        json_array_foreach(list, j, source) {
            const char *name = json_string_value(json_object_get(source, "name"));
            char **more = name ? realloc(sh->names, sizeof *sh->names * (sh->nnames + 1)) : NULL;
            if (!more) continue;
            sh->names = more;
            sh->names[sh->nnames++] = strdup(name);
        }
    }
    json_decref(entities);
    gd_buf_free(&t.body);
}

/* readline's generator: the state-th keyword or name starting with text
 * (case aside), in lower case when text has a lower-case letter. */
static char *complete_next(const char *text, int state)
{
    shell *sh = completing;
    size_t *at = &sh->complete_at;
    size_t nkeywords = sizeof keywords / sizeof keywords[0], len = strlen(text);
    if (!state) *at = 0;
    bool lower = false;
    for (const char *p = text; *p; p++) lower |= *p >= 'a' && *p <= 'z';
    while (*at < nkeywords + sh->nnames) {
        const char *w = *at < nkeywords ? keywords[*at] : sh->names[*at - nkeywords];
        (*at)++;
        if (!w || strncasecmp(w, text, len)) continue;
        char *out = strdup(w);
        for (char *p = out; out && *p; p++)
            *p = (char)(lower && *p >= 'A' && *p <= 'Z' ? *p + 32 : !lower && *p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        return out;
    }
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)start, (void)end;
    rl_attempted_completion_over = 1; /* no file names */
    if (completing->names_stale) fetch_names(completing);
    return rl_completion_matches(text, complete_next);
}

/* ---- the read loop ---- */

/* readline's key reader: rl_getc, but Ctrl-C (a read interrupted with the
 * flag set) accepts an emptied line, so readline returns and the caller
 * drops the statement being typed. */
static int read_key(FILE *f)
{
    unsigned char c;
    for (;;) {
        if (interrupted) {
            rl_replace_line("", 0);
            return '\n';
        }
        ssize_t n = read(fileno(f), &c, 1);
        if (n == 1) return c;
        if (n == 0 || errno != EINTR) return EOF;
    }
}

static void interactive(shell *sh)
{
    char history[1024] = "";
    const char *home = getenv("HOME");
    if (home && *home) snprintf(history, sizeof history, "%s/" HISTORY_FILE, home);
    if (history[0]) read_history(history);
    rl_catch_signals = 0;
    rl_getc_function = read_key;
    completing = sh;
    sh->names_stale = true;
    rl_attempted_completion_function = complete;
    fprintf(sh->out, "gamingd SQL shell on %s: statements end with ';', HELP lists commands, Ctrl-C stops a query, "
                     "Ctrl-D leaves.\n",
            sh->url);
    gd_buf text = {0};
    for (;;) {
        interrupted = 0;
        char *line = readline(text.len ? "    > " : "ksql> ");
        if (!line) break;
        if (interrupted) { /* Ctrl-C: the statement being typed is dropped */
            free(line);
            text.len = 0;
            continue;
        }
        if (sh->spool) fprintf(sh->spool, "%s%s\n", text.len ? "    > " : "ksql> ", line);
        gd_buf_puts(&text, line);
        gd_buf_putc(&text, '\n');
        bool command = text.len == strlen(line) + 1 && is_command(line);
        free(line);
        if (run_statements(sh, &text, command, true) == GD_EOF) break;
    }
    fputc('\n', sh->out);
    gd_buf_free(&text);
    if (history[0] && !write_history(history)) history_truncate_file(history, HISTORY_LINES);
}

/* ---- arguments ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: gamingd sql [URL] [--execute STATEMENTS | -f FILE] [--api-key-file FILE] [--ca-file FILE]\n"
               "  URL                       gamingd's address (default " DEFAULT_URL ")\n"
               "  -e, --execute STATEMENTS  run these statements and exit (status 1 on the first error)\n"
               "  -f, --file FILE           run the statements in FILE and exit (status 1 on the first error)\n"
               "  --api-key-file FILE       read the API key from FILE (else GAMINGD_API_KEY)\n"
               "  --ca-file FILE            verify an https URL's server with the certificates in FILE\n"
               "                            (a self-signed server's own certificate; else the system's)\n"
               "Interactive without -e / -f when stdin is a terminal; statements end with ';'.\n");
}

static int read_key_file(const char *path, char *key, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "gamingd sql: cannot read %s: %s\n", path, strerror(errno));
        return GD_ERR;
    }
    if (!fgets(key, (int)n, f)) key[0] = 0;
    fclose(f);
    key[strcspn(key, "\r\n")] = 0;
    return GD_OK;
}

typedef struct {
    const char *url, *execute, *file, *key_file, *ca_file;
} arguments;

static int parse_arguments(arguments *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char **slot = NULL;
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout);
            return GD_EOF;
        }
        if (!strcmp(arg, "-e") || !strcmp(arg, "--execute")) slot = &a->execute;
        else if (!strcmp(arg, "-f") || !strcmp(arg, "--file")) slot = &a->file;
        else if (!strcmp(arg, "--api-key-file")) slot = &a->key_file;
        else if (!strcmp(arg, "--ca-file")) slot = &a->ca_file;
        else if (arg[0] == '-' || a->url) {
            fprintf(stderr, "gamingd sql: unknown argument '%s'%s (see gamingd sql --help)\n", arg,
                    strncmp(arg, "--api-key", 9) ? "" : "; the key goes in GAMINGD_API_KEY or --api-key-file");
            return GD_ERR;
        } else a->url = arg;
        if (slot && ++i >= argc) {
            fprintf(stderr, "gamingd sql: %s needs a value\n", arg);
            return GD_ERR;
        }
        if (slot) *slot = argv[i];
    }
    if (a->execute && a->file) {
        fprintf(stderr, "gamingd sql: --execute and -f go one at a time\n");
        return GD_ERR;
    }
    return GD_OK;
}

static int shell_open(shell *sh, const arguments *a)
{
    memset(sh, 0, sizeof *sh);
    snprintf(sh->url, sizeof sh->url, "%s", a->url ? a->url : DEFAULT_URL);
    for (size_t n = strlen(sh->url); n && sh->url[n - 1] == '/'; n--) sh->url[n - 1] = 0;
    sh->ca_file = a->ca_file;
    char key[KEY_MAX] = "";
    if (a->key_file && read_key_file(a->key_file, key, sizeof key)) return GD_ERR;
    if (!a->key_file && getenv("GAMINGD_API_KEY")) snprintf(key, sizeof key, "%s", getenv("GAMINGD_API_KEY"));
    if (key[0]) {
        size_t n = strlen(key) + 32;
        sh->auth_header = malloc(n);
        snprintf(sh->auth_header, n, "Authorization: Bearer %s", key);
    }
    sh->properties = json_object();
    sh->variables = json_object();
    sh->curl = curl_easy_init();
    sh->out = stdout;
    sh->err = stderr;
    return sh->curl ? GD_OK : GD_ERR;
}

static void shell_close(shell *sh)
{
    spool_off(sh);
    for (size_t i = 0; i < sh->nnames; i++) free(sh->names[i]);
    free(sh->names);
    if (sh->curl) curl_easy_cleanup(sh->curl);
    json_decref(sh->properties);
    json_decref(sh->variables);
    free(sh->auth_header);
}

int gd_shell_main(int argc, char **argv)
{
    arguments a;
    int rc = parse_arguments(&a, argc, argv);
    if (rc) return rc == GD_EOF ? 0 : 2;
    shell sh;
    if (shell_open(&sh, &a)) {
        shell_close(&sh);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: a read at the prompt returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int status = GD_OK;
    if (!a.execute && !a.file && isatty(STDIN_FILENO)) interactive(&sh);
    else {
        gd_buf text = {0};
        FILE *f = a.file ? fopen(a.file, "r") : NULL;
        if (a.file && !f) {
            fprintf(stderr, "gamingd sql: cannot read %s: %s\n", a.file, strerror(errno));
            status = GD_ERR;
        } else if (a.execute) gd_buf_puts(&text, a.execute);
        else status = read_all(f ? f : stdin, &text);
        if (f) fclose(f);
        if (!status) status = run_statements(&sh, &text, true, false);
        if (status == GD_EOF) status = GD_OK; /* EXIT */
        gd_buf_free(&text);
    }
    shell_close(&sh);
    return status ? 1 : 0;
}
