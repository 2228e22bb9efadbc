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
 * VARIABLES with them. A SELECT goes to /query-stream, everything else to
 * /ksql; errors are printed as the server worded them.
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
enum { HISTORY_LINES = 1000, KEY_MAX = 4096 };

/* A signal handler cannot be handed state: the Ctrl-C flag is the one
 * file-scope variable; the shell's state is passed explicitly. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct {
    char url[1024];
    char *auth_header;  /* "Authorization: Bearer KEY", or NULL */
    json_t *properties; /* SET */
    json_t *variables;  /* DEFINE */
    CURL *curl;
    FILE *out, *err;
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

static int run_statement(shell *sh, const char *stmt)
{
    scanner s = {stmt};
    char first[16];
    word(&s, first, sizeof first);
    interrupted = 0;
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
        status = run_statement(sh, stmt);
        free(stmt);
        if (status && !interactive) break;
    }
    size_t left = text->len - (size_t)(p - text->p);
    memmove(text->p, p, left);
    text->len = blank(text->p, left) ? 0 : left;
    return status;
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

static bool is_exit(const char *line)
{
    char w[8];
    scanner s = {line};
    return word(&s, w, sizeof w) && (!strcasecmp(w, "exit") || !strcasecmp(w, "quit")) && at_end(&s);
}

static void interactive(shell *sh)
{
    char history[1024] = "";
    const char *home = getenv("HOME");
    if (home && *home) snprintf(history, sizeof history, "%s/" HISTORY_FILE, home);
    if (history[0]) read_history(history);
    rl_catch_signals = 0;
    rl_getc_function = read_key;
    fprintf(sh->out, "gamingd SQL shell on %s: statements end with ';', Ctrl-C stops a query, Ctrl-D leaves.\n",
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
        if (!text.len && is_exit(line)) {
            free(line);
            break;
        }
        gd_buf_puts(&text, line);
        gd_buf_putc(&text, '\n');
        free(line);
        run_statements(sh, &text, false, true);
    }
    fputc('\n', sh->out);
    gd_buf_free(&text);
    if (history[0] && !write_history(history)) history_truncate_file(history, HISTORY_LINES);
}

static int read_all(FILE *f, gd_buf *out)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) gd_buf_put(out, chunk, n);
    return ferror(f) ? GD_ERR : GD_OK;
}

/* ---- arguments ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: gamingd sql [URL] [--execute STATEMENTS | -f FILE] [--api-key-file FILE]\n"
               "  URL                       gamingd's address (default " DEFAULT_URL ")\n"
               "  -e, --execute STATEMENTS  run these statements and exit (status 1 on the first error)\n"
               "  -f, --file FILE           run the statements in FILE and exit (status 1 on the first error)\n"
               "  --api-key-file FILE       read the API key from FILE (else GAMINGD_API_KEY)\n"
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
    const char *url, *execute, *file, *key_file;
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
        gd_buf_free(&text);
    }
    shell_close(&sh);
    return status ? 1 : 0;
}
