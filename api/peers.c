/* peers.c -- partitioned mode: a query's rows come from the instances that
 * own them (docs/scaling.md).
 *
 * A table's groups belong to tasks, the partitions of the route that
 * carries its records (ingest/route.c), and the instance holding a task is
 * the one that answers for its rows: its own state is the newest, where
 * another instance's copy is a changelog behind -- or absent. So every
 * query on an aggregation, from any route -- REST, Grafana, SQL -- goes
 * through the store's router (store/query.h), which is this file:
 *
 *  - it works out the tasks the query needs: every partition of the
 *    table's route, or the one a key given in full picks (the same murmur2
 *    of the same key the router used);
 *  - the tasks this instance holds it scans in its own store, filtered to
 *    their rows; for each other task it asks the instance that announces it
 *    (ingest/roster.c), POST /v1/internal/rows, with the tasks it expects
 *    that instance to hold. That instance answers only while it holds every
 *    one of them -- before and after its scan -- else 409;
 *  - the rows come back in pages (of 100 rows, then twice as many each time,
 *    up to 2,000 or 1 MiB) in LMDB key order, and are merged in that
 *    order, so what the caller sees is what one store holding every row
 *    would give: ORDER BY, LIMIT and a cursor's place hold exactly. A
 *    query for the latest window asks each owner for its latest, then all
 *    for that window. The owners are asked at once (ask_all, over
 *    curl's multi interface), on connections kept open between queries
 *    (peers' curl share): a query waits for the slowest owner, not their
 *    sum; later pages are asked of one owner as the merge needs them.
 *
 * A task no one announces, announced twice (a rebalance under way), or an
 * owner that refuses or does not answer makes the query GD_EUNAVAIL -- a
 * 503 with Retry-After -- never part of the answer. Unless --max-staleness
 * allows standby reads: then such a task is asked of an instance keeping it
 * warm (source_of_task; replace_source once rows were handed on), which
 * answers only within that many changelog records of its partition's end.
 * Instances call each other at their advertised URLs, over HTTPS when
 * they serve it (trusting the chain of their own --tls-cert), and present
 * the key of --instance-key (scope instance), never a user's: the user's
 * policy (scopes, masking) is applied here, on the merged rows, by the
 * caller. A request for rows is a leaf: the instance answering scans its
 * own store only. */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ingest/window.h"
#include "../store/query.h"
#include "routes.h"

enum {
    PAGE_ROWS = 2000,           /* rows in a page of one source */
    FIRST_PAGE_ROWS = 100,      /* ... in its first page, doubling: a LIMIT needs few */
    PAGE_BYTES = 1 << 20,       /* ... or bytes, whichever comes first */
    MAX_PAGE_BYTES = 64 << 20,  /* a peer's page beyond this is refused */
    CONNECT_TIMEOUT_MS = 1000,
    AVOID_MS = 2000,            /* an instance not reached is not asked first again for this long */
    MAX_AVOIDED = 16,
    MAX_KEY_HEX = 2 * 65536,
};

struct gd_peers {
    const gd_config *cfg;
    gd_counters *counters;
    char key[512]; /* presented to the others: --instance-key's */
    struct gd_query_router router;
    _Atomic uint64_t routed, asked, rows_in, bytes_in, refused, standby_reads;
    /* connections (and TLS sessions) to the others, kept open between
     * requests and shared by the HTTP threads: a page costs a round trip,
     * not a connect and a handshake */
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    pthread_mutex_t lock; /* avoided, warn_limit */
    struct {
        char url[1100];
        int64_t until_ms;
    } avoided[MAX_AVOIDED]; /* instances not reached lately: a killed owner is not tried by every query */
    gd_ratelimit warn_limit;
};

/* Notes that the instance at url could not be reached. */
static void avoid(gd_peers *pe, const char *url)
{
    pthread_mutex_lock(&pe->lock);
    int k = 0;
    for (int i = 0; i < MAX_AVOIDED; i++) {
        if (!strcmp(pe->avoided[i].url, url)) {
            k = i;
            break;
        }
        if (pe->avoided[i].until_ms < pe->avoided[k].until_ms) k = i; /* else the oldest goes */
    }
    snprintf(pe->avoided[k].url, sizeof pe->avoided[k].url, "%s", url);
    pe->avoided[k].until_ms = gd_now_ms() + AVOID_MS;
    pthread_mutex_unlock(&pe->lock);
}

static bool avoided(gd_peers *pe, const char *url)
{
    bool found = false;
    int64_t now = gd_now_ms();
    pthread_mutex_lock(&pe->lock);
    for (int i = 0; i < MAX_AVOIDED && !found; i++)
        found = pe->avoided[i].until_ms > now && !strcmp(pe->avoided[i].url, url);
    pthread_mutex_unlock(&pe->lock);
    return found;
}

static void lock_share(CURL *c, curl_lock_data data, curl_lock_access access, void *ctx)
{
    (void)c, (void)access;
    pthread_mutex_lock(&((gd_peers *)ctx)->share_locks[data]);
}

static void unlock_share(CURL *c, curl_lock_data data, void *ctx)
{
    (void)c;
    pthread_mutex_unlock(&((gd_peers *)ctx)->share_locks[data]);
}

/* The shared connection pool; without one (no memory) each request connects. */
static void open_share(gd_peers *pe)
{
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&pe->share_locks[i], NULL);
    if (!(pe->share = curl_share_init())) return;
    curl_share_setopt(pe->share, CURLSHOPT_LOCKFUNC, lock_share);
    curl_share_setopt(pe->share, CURLSHOPT_UNLOCKFUNC, unlock_share);
    curl_share_setopt(pe->share, CURLSHOPT_USERDATA, pe);
    curl_share_setopt(pe->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(pe->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(pe->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
}

/* ---- tasks ---- */

enum { NO_ROUTE = -1, ROUTE_UNKNOWN = -2 };

/* The route of table t: its own (keyed by its group key), or route 0 (by
 * game_id); NO_ROUTE when no route carries it (every instance keeps it
 * whole), ROUTE_UNKNOWN when one should and this instance has not set it up
 * (a table just made, or one for which no route was left here). */
static int route_of_table(const gd_peers *pe, const gd_tabledef *t, gd_route *route)
{
    if (!gd_table_aggregates(t)) return NO_ROUTE;
    const gd_cluster_view *v = &pe->counters->cluster;
    char topic[sizeof v->route_topic[0]];
    gd_route_topic(pe->cfg, t->name, topic, sizeof topic);
    *route = (gd_route){.keyed_by = NULL};
    for (int r = 1; r < v->nroutes; r++)
        if (!strcmp(v->route_topic[r], topic)) {
            route->keyed_by = t;
            return r;
        }
    return !v->nroutes ? NO_ROUTE : gd_routes_fit(t) ? 0 : ROUTE_UNKNOWN;
}

/* The task (route partition) a row key belongs to, or -1. */
static int32_t task_of_row(const gd_route *route, const gd_tabledef *t, gd_str key, int32_t partitions, gd_buf *scratch)
{
    if (!gd_route_row_key(route, t, key, scratch)) return -1;
    return gd_kafka_key_partition((gd_str){scratch->p ? scratch->p : "", (uint32_t)scratch->len}, partitions);
}

/* The one task a query's keys pick, or -1 when it may span several: every
 * key column its route key is made of is given. */
static int32_t task_of_query(const gd_route *route, const gd_query *q, int32_t partitions)
{
    const gd_tabledef *t = q->t;
    gd_buf key = {0}, scratch = {0};
    gd_buf_put(&key, "\0\0\0\0\0\0\0\0", 8); /* a row key of any window: the route key ignores it */
    bool whole = true;
    for (int k = 0; k < t->nkeys; k++) {
        bool needed = route->keyed_by || t->keys[k].field == GD_F_GAME_ID;
        if (needed && !q->key_eq[k].p) whole = false;
        gd_groupkey_append(&key, q->key_eq[k].p ? q->key_eq[k] : (gd_str){"", 0});
    }
    int32_t task = whole ? task_of_row(route, t, (gd_str){key.p, (uint32_t)key.len}, partitions, &scratch) : -1;
    gd_buf_free(&key);
    gd_buf_free(&scratch);
    return task;
}

typedef struct {
    const gd_route *route;
    int32_t partitions;
    const uint64_t *tasks; /* a bit per partition: the rows kept */
    gd_buf scratch;
} task_filter;

static bool keep_task_rows(void *ctx, const gd_tabledef *t, gd_str key)
{
    task_filter *f = ctx;
    int32_t p = task_of_row(f->route, t, key, f->partitions, &f->scratch);
    return p >= 0 && f->tasks[p / 64] >> (p % 64) & 1;
}

/* Whether this instance may answer for every task of `tasks`: it holds
 * them, or (max_lag >= 0) keeps them warm at most max_lag records behind. */
static bool answers_all(const gd_cluster_view *v, int route, const uint64_t *tasks, int32_t partitions, int64_t max_lag)
{
    for (int32_t p = 0; p < partitions; p++)
        if ((tasks[p / 64] >> (p % 64) & 1) && !gd_cluster_answers_task(v, route, p, max_lag)) return false;
    return true;
}

/* ---- pages: frames of u32 key length, u32 value length, key, value ---- */

typedef struct {
    gd_buf *out;
    size_t rows, most;
} page_fill;

static void put_frame(gd_buf *b, gd_str key, gd_str val)
{
    gd_buf_put_u32be(b, key.len);
    gd_buf_put_u32be(b, val.len);
    gd_buf_put(b, key.p, key.len);
    gd_buf_put(b, val.p, val.len);
}

static int fill_page(void *ctx, gd_str key, gd_str val)
{
    page_fill *f = ctx;
    put_frame(f->out, key, val);
    return ++f->rows >= f->most || f->out->len >= PAGE_BYTES;
}

/* A page of up to `rows` rows of q (after q->after) from this store, into
 * out after a byte saying whether more may follow ('M') or not ('E'). Of
 * the latest window, its first row only: it says which window that is. */
static int page_here(gd_store *s, MDB_txn *txn, const gd_query *q, size_t rows, gd_buf *out)
{
    gd_buf_putc(out, 'E');
    size_t mark = out->len - 1;
    page_fill f = {out, 0, q->mode == GD_WINDOWS_LATEST ? 1 : rows};
    int rc = gd_query_run_here(s, txn, q, fill_page, &f);
    if (!rc && q->mode == GD_WINDOWS_RANGE && (f.rows >= f.most || out->len >= PAGE_BYTES)) out->p[mark] = 'M';
    return rc;
}

/* ---- asking another instance ---- */

static size_t collect(char *p, size_t size, size_t n, void *ctx)
{
    gd_buf *b = ctx;
    if (b->len + size * n > MAX_PAGE_BYTES) return 0;
    gd_buf_put(b, p, size * n);
    return size * n;
}

static void put_hex(gd_buf *b, gd_str s)
{
    gd_buf_putc(b, '"');
    gd_buf_put_hex(b, s.p, s.len);
    gd_buf_putc(b, '"');
}

/* The request for a page of q from the holder of `tasks` (a list); a
 * standby within max_staleness may answer (-1: the owner only). */
static void put_rows_request(gd_buf *b, const gd_query *q, const gd_buf *tasks, size_t rows, int64_t max_staleness)
{
    gd_buf_puts(b, "{\"table\":");
    gd_json_put_cstr(b, q->t->name);
    gd_buf_printf(b, ",\"rows\":%zu,\"tasks\":[%.*s],\"latest\":%s,\"from\":%lld,\"to\":%lld,\"keys\":[", rows,
                  (int)tasks->len,
                  tasks->p ? tasks->p : "", q->mode == GD_WINDOWS_LATEST ? "true" : "false", (long long)q->from,
                  (long long)q->to);
    for (int k = 0; k < q->t->nkeys; k++) {
        if (k) gd_buf_putc(b, ',');
        if (q->key_eq[k].p) put_hex(b, q->key_eq[k]);
        else gd_buf_puts(b, "null");
    }
    gd_buf_puts(b, "]");
    if (q->after.p) {
        gd_buf_puts(b, ",\"after\":");
        put_hex(b, q->after);
    }
    if (max_staleness >= 0) gd_buf_printf(b, ",\"staleness\":%lld", (long long)max_staleness);
    gd_buf_puts(b, "}");
}

/* One request for a page, made ready (ask_begin), sent alone or with
 * others at once (pages_there), and read (ask_end). */
typedef struct {
    CURL *c;
    struct curl_slist *headers;
    gd_buf body, target, auth;
    const char *url;
    gd_buf *out;
} ask;

static int ask_begin(gd_peers *pe, ask *a, const char *url, const gd_query *q, const gd_buf *tasks, size_t rows,
                     gd_buf *out)
{
    int64_t left = q->deadline_ms ? q->deadline_ms - (int64_t)(gd_mono_ns() / 1000000) : 30000;
    *a = (ask){.url = url, .out = out};
    if (left <= 0) return GD_ETIMEDOUT;
    if (!(a->c = curl_easy_init())) return GD_ENOMEM;
    put_rows_request(&a->body, q, tasks, rows, pe->cfg->max_staleness);
    gd_buf_printf(&a->target, "%s/v1/internal/rows", url);
    gd_buf_putc(&a->target, 0);
    a->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (pe->key[0]) {
        gd_buf_printf(&a->auth, "Authorization: Bearer %s", pe->key);
        gd_buf_putc(&a->auth, 0);
        a->headers = curl_slist_append(a->headers, a->auth.p);
    }
    curl_easy_setopt(a->c, CURLOPT_URL, a->target.p);
    curl_easy_setopt(a->c, CURLOPT_POSTFIELDS, a->body.p);
    curl_easy_setopt(a->c, CURLOPT_POSTFIELDSIZE, (long)a->body.len);
    curl_easy_setopt(a->c, CURLOPT_HTTPHEADER, a->headers);
    curl_easy_setopt(a->c, CURLOPT_TIMEOUT_MS, (long)left);
    curl_easy_setopt(a->c, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(a->c, CURLOPT_NOSIGNAL, 1L);
    if (pe->share) curl_easy_setopt(a->c, CURLOPT_SHARE, pe->share);
    if (pe->cfg->tls_cert[0]) curl_easy_setopt(a->c, CURLOPT_CAINFO, pe->cfg->tls_cert); /* the cluster's own chain */
    curl_easy_setopt(a->c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(a->c, CURLOPT_WRITEDATA, out);
    return GD_OK;
}

/* The page a's request brought, given how the transfer ended: GD_EUNAVAIL
 * when the instance refused or did not answer, GD_ETIMEDOUT past the
 * query's deadline. */
static int ask_end(gd_peers *pe, ask *a, CURLcode res, const gd_query *q)
{
    long status = 0;
    curl_easy_getinfo(a->c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(a->headers);
    curl_easy_cleanup(a->c);
    gd_buf_free(&a->body);
    gd_buf_free(&a->target);
    gd_buf_free(&a->auth);
    gd_buf *out = a->out;
    atomic_fetch_add(&pe->asked, 1);
    atomic_fetch_add(&pe->bytes_in, out->len);
    if (res == CURLE_OK && status == 200 && out->len >= 1 && (out->p[0] == 'M' || out->p[0] == 'E')) return GD_OK;
    atomic_fetch_add(&pe->refused, 1);
    if (res == CURLE_OPERATION_TIMEDOUT && q->deadline_ms && gd_mono_ns() / 1000000 >= q->deadline_ms)
        return GD_ETIMEDOUT;
    if (res != CURLE_OK) avoid(pe, a->url);
    pthread_mutex_lock(&pe->lock);
    if (gd_ratelimit_allow(&pe->warn_limit))
        gd_warn("partitioned mode: %s could not give rows of %s (%s, HTTP %ld)", a->url, q->t->name,
                res == CURLE_OK ? "refused" : curl_easy_strerror(res), status);
    pthread_mutex_unlock(&pe->lock);
    return GD_EUNAVAIL;
}

/* A page from the instance at url (ask_end's answers). */
static int page_there(gd_peers *pe, const char *url, const gd_query *q, const gd_buf *tasks, size_t rows, gd_buf *out)
{
    ask a;
    int rc = ask_begin(pe, &a, url, q, tasks, rows, out);
    return rc ? rc : ask_end(pe, &a, curl_easy_perform(a.c), q);
}

/* n requests made ready by ask_begin, sent at once -- a query asking
 * several owners waits for the slowest, not for their sum -- each then
 * read by ask_end into rcs[i]. */
static void pages_there(gd_peers *pe, ask *asks, int n, const gd_query *q, int *rcs)
{
    CURLM *multi = curl_multi_init();
    for (int i = 0; i < n; i++)
        if (!multi || curl_multi_add_handle(multi, asks[i].c)) rcs[i] = ask_end(pe, &asks[i], CURLE_FAILED_INIT, q);
        else rcs[i] = GD_AGAIN;
    for (int running = 1; multi && running;) {
        if (curl_multi_perform(multi, &running) || (running && curl_multi_poll(multi, NULL, 0, 100, NULL))) break;
    }
    CURLMsg *msg;
    int left;
    while (multi && (msg = curl_multi_info_read(multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL *done = msg->easy_handle; /* msg dies with the handle's removal */
        CURLcode res = msg->data.result;
        for (int i = 0; i < n; i++)
            if (done == asks[i].c && rcs[i] == GD_AGAIN) {
                curl_multi_remove_handle(multi, done);
                rcs[i] = ask_end(pe, &asks[i], res, q);
                break;
            }
    }
    for (int i = 0; i < n; i++)
        if (rcs[i] == GD_AGAIN) { /* the loop above ended early: not an answer */
            curl_multi_remove_handle(multi, asks[i].c);
            rcs[i] = ask_end(pe, &asks[i], CURLE_RECV_ERROR, q);
        }
    curl_multi_cleanup(multi);
}

/* ---- the merge ---- */

typedef struct {
    char *url;       /* NULL: this store */
    gd_buf tasks;    /* "1,5,9": what the owner is asked for */
    gd_buf *pages;   /* every page read: rows handed on stay valid to the end */
    size_t npages;
    size_t at;       /* next frame in the last page */
    bool more;       /* the last page said more may follow */
    size_t page_rows; /* the next page's */
    gd_str head_key, head_val;
    bool has_head;
} source;

/* The instances that failed a query so far: its next try asks others. */
enum { MAX_TRIES = 3, MAX_FAILED = 64 };
typedef struct {
    char *url[MAX_FAILED];
    int n;
} failures;

static bool failed_before(const failures *f, const char *url)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->url[i], url)) return true;
    return false;
}

/* Notes url as failed for this query. */
static void note_failed(failures *f, const char *url)
{
    if (!failed_before(f, url) && f->n < (int)(sizeof f->url / sizeof *f->url) && (f->url[f->n] = strdup(url))) f->n++;
}

typedef struct {
    gd_peers *pe;
    gd_store *s;
    MDB_txn *txn;
    gd_query q;     /* as sources are asked: RANGE, keep for this store's tasks */
    task_filter mine;
    int route;
    failures *failed;
    bool standby;   /* a source is a standby, not the owner (--max-staleness) */
} merge;

/* Room for src's next page, its size doubling from FIRST_PAGE_ROWS. NULL:
 * no memory. */
static gd_buf *page_room(source *src)
{
    gd_buf *grown = realloc(src->pages, (src->npages + 1) * sizeof *grown);
    if (!grown) return NULL;
    src->pages = grown;
    gd_buf *page = &src->pages[src->npages++];
    *page = (gd_buf){0};
    src->page_rows = src->page_rows ? src->page_rows * 2 : FIRST_PAGE_ROWS;
    if (src->page_rows > PAGE_ROWS) src->page_rows = PAGE_ROWS;
    return page;
}

/* q as src is asked it: after the last row handed on; an owner unfiltered
 * (it holds every task it is asked for). */
static gd_query query_for(const gd_query *q, const source *src)
{
    gd_query asked = *q;
    if (src->url) asked.keep = NULL;
    if (src->has_head) asked.after = src->head_key;
    return asked;
}

/* src's page as read (rc: how), its first row next. */
static int page_end(merge *m, source *src, int rc)
{
    if (rc) return rc;
    gd_buf *page = &src->pages[src->npages - 1];
    if (m->q.hold) { /* the caller keeps rows past fn: their page lives as long (cap 0: not ours to free) */
        size_t len = page->len;
        char *kept = memcpy(gd_arena_alloc(m->q.hold, len), page->p, len);
        gd_buf_free(page);
        *page = (gd_buf){.p = kept, .len = len};
    }
    src->more = page->p[0] == 'M';
    src->at = 1;
    return page->len == 1 && src->more ? GD_EUNAVAIL : GD_OK; /* more, but none: not a page */
}

/* Another instance keeping task p of route r warm, not one of f's, into
 * url: true; it says itself whether it is within the staleness. */
static bool warm_elsewhere(gd_peers *pe, int r, int32_t p, const failures *f, char *url, size_t n)
{
    int32_t c = gd_cluster_task_changelog(&pe->counters->cluster, r, p);
    return c >= 0 && gd_roster_task_reader(pe->counters->cluster.roster, c, (const char *const *)f->url, f->n, url, n);
}

/* Once src failed mid-merge (rows before its next page handed on
 * already): another instance for its tasks, asked for the rest -- one
 * keeping the first of them warm, which says itself whether it keeps all
 * within the staleness; not one that failed this query. False: none, or
 * owners only. */
static bool replace_source(merge *m, source *src)
{
    note_failed(m->failed, src->url);
    if (m->pe->cfg->max_staleness < 0 || !src->tasks.len) return false;
    char url[1100], *copy;
    if (!warm_elsewhere(m->pe, m->route, (int32_t)strtol(src->tasks.p, NULL, 10), m->failed, url, sizeof url) ||
        !(copy = strdup(url)))
        return false;
    free(src->url);
    src->url = copy;
    m->standby = true;
    return true;
}

static int next_page(merge *m, source *src)
{
    gd_buf *page = page_room(src);
    if (!page) return GD_ENOMEM;
    gd_query q = query_for(&m->q, src);
    int rc = src->url ? page_there(m->pe, src->url, &q, &src->tasks, src->page_rows, page)
                      : page_here(m->s, m->txn, &q, src->page_rows, page);
    while (rc == GD_EUNAVAIL && src->url && replace_source(m, src)) {
        gd_buf_clear(page);
        rc = page_there(m->pe, src->url, &q, &src->tasks, src->page_rows, page);
    }
    return page_end(m, src, rc);
}

/* A page of q of `rows` rows from each source into pages[i]: the other
 * instances asked at once, this store read meanwhile. The first error. */
static int ask_all(merge *m, source *srcs, int n, const gd_query *q, size_t rows, gd_buf **pages)
{
    ask *asks = calloc((size_t)n, sizeof *asks);
    int *rcs = calloc((size_t)n, sizeof *rcs);
    int *asked_of = calloc((size_t)n, sizeof *asked_of); /* the source of each ask */
    int k = 0, rc = asks && rcs && asked_of ? GD_OK : GD_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        gd_query asked = query_for(q, &srcs[i]);
        if (!srcs[i].url) rc = page_here(m->s, m->txn, &asked, rows, pages[i]);
        else if (!(rc = ask_begin(m->pe, &asks[k], srcs[i].url, &asked, &srcs[i].tasks, rows, pages[i]))) asked_of[k++] = i;
    }
    if (k) pages_there(m->pe, asks, k, &m->q, rcs);
    for (int j = 0; j < k; j++)
        if (rcs[j]) {
            if (rcs[j] == GD_EUNAVAIL) note_failed(m->failed, srcs[asked_of[j]].url);
            if (!rc) rc = rcs[j];
        }
    free(asked_of);
    free(asks);
    free(rcs);
    return rc;
}

/* Every source's first page, asked at once (ask_all). */
static int first_pages(merge *m, source *srcs, int n)
{
    gd_buf **pages = calloc((size_t)n, sizeof *pages);
    int rc = pages ? GD_OK : GD_ENOMEM;
    for (int i = 0; !rc && i < n; i++)
        if (!(pages[i] = page_room(&srcs[i]))) rc = GD_ENOMEM;
    if (!rc) rc = ask_all(m, srcs, n, &m->q, FIRST_PAGE_ROWS, pages);
    for (int i = 0; !rc && i < n; i++) rc = page_end(m, &srcs[i], GD_OK);
    free(pages);
    return rc;
}

/* Moves src's head to its next row, reading a page when needed. */
static int advance(merge *m, source *src)
{
    for (;;) {
        gd_buf *page = src->npages ? &src->pages[src->npages - 1] : NULL;
        if (page && src->at + 8 <= page->len) {
            uint32_t kl = gd_get_u32be(page->p + src->at), vl = gd_get_u32be(page->p + src->at + 4);
            if ((uint64_t)src->at + 8 + kl + vl > page->len) return GD_EUNAVAIL; /* a cut page */
            src->head_key = (gd_str){page->p + src->at + 8, kl};
            src->head_val = (gd_str){page->p + src->at + 8 + kl, vl};
            src->at += 8 + (size_t)kl + vl;
            src->has_head = true;
            return GD_OK;
        }
        if (page && !src->more) {
            src->has_head = false;
            return GD_EOF;
        }
        int rc = next_page(m, src);
        if (rc) return rc;
    }
}

/* The newest window any owner has a matching row in, or INT64_MIN: the
 * query in LATEST mode, one row of it from each source (ask_all). */
static int latest_window(merge *m, source *srcs, int n, int64_t *w)
{
    *w = INT64_MIN;
    gd_query q = m->q;
    q.mode = GD_WINDOWS_LATEST;
    gd_buf *bufs = calloc((size_t)n, sizeof *bufs), **pages = calloc((size_t)n, sizeof *pages);
    int rc = bufs && pages ? GD_OK : GD_ENOMEM;
    for (int i = 0; !rc && i < n; i++) pages[i] = &bufs[i];
    if (!rc) rc = ask_all(m, srcs, n, &q, 1, pages);
    for (int i = 0; !rc && i < n; i++) {
        const gd_buf *page = &bufs[i];
        if (page->len < 1 + 8 + 8) continue;
        uint32_t kl = gd_get_u32be(page->p + 1);
        if (kl >= 8 && page->len >= 9 + (size_t)kl) {
            int64_t win = gd_rowkey_window(page->p + 9);
            if (win > *w) *w = win;
        }
    }
    for (int i = 0; bufs && i < n; i++) gd_buf_free(&bufs[i]);
    free(bufs);
    free(pages);
    return rc;
}

static void free_sources(source *srcs, int n)
{
    for (int i = 0; i < n; i++) {
        for (size_t p = 0; p < srcs[i].npages; p++)
            if (srcs[i].pages[p].cap) gd_buf_free(&srcs[i].pages[p]);
        free(srcs[i].pages);
        gd_buf_free(&srcs[i].tasks);
        free(srcs[i].url);
    }
    free(srcs);
}

enum { NOWHERE, HERE, THERE };

/* Where task p of route r is read: this store, the instance at url, or
 * nowhere. Its owner; when no owner can answer -- none announces it, two
 * do (a move under way), or it failed this query -- and --max-staleness
 * allows, an instance keeping it warm: this one, else another (which says
 * itself whether it is within the staleness). *standby: a standby's. */
static int source_of_task(gd_peers *pe, int r, int32_t p, const failures *f, char *url, size_t n, bool *standby)
{
    const gd_cluster_view *v = &pe->counters->cluster;
    if (gd_cluster_holds_task(v, r, p)) return HERE;
    if (gd_roster_task_owner(v->roster, r, p, url, n) == 1 && !failed_before(f, url) &&
        (pe->cfg->max_staleness < 0 || !avoided(pe, url)))
        return THERE;
    int64_t max_lag = pe->cfg->max_staleness;
    if (max_lag < 0) return NOWHERE;
    *standby = true;
    if (gd_cluster_answers_task(v, r, p, max_lag)) return HERE;
    return warm_elsewhere(pe, r, p, f, url, n) ? THERE : NOWHERE;
}

/* The sources of route r's tasks `wanted` (source_of_task), grouped by
 * instance, this store last. GD_EUNAVAIL when a task has none. */
static int find_sources(gd_peers *pe, int r, const uint64_t *wanted, int32_t partitions, const failures *f,
                        uint64_t *mine, source **out, int *nout, bool *standby)
{
    source *srcs = calloc((size_t)partitions + 1, sizeof *srcs);
    if (!srcs) return GD_ENOMEM;
    int n = 0, rc = GD_OK;
    for (int32_t p = 0; p < partitions && !rc; p++) {
        if (!(wanted[p / 64] >> (p % 64) & 1)) continue;
        char url[1100];
        int where = source_of_task(pe, r, p, f, url, sizeof url, standby);
        if (where == NOWHERE) {
            rc = GD_EUNAVAIL;
            break;
        }
        if (where == HERE) {
            mine[p / 64] |= 1ULL << (p % 64);
            continue;
        }
        int i = 0;
        while (i < n && strcmp(srcs[i].url, url)) i++;
        if (i == n && !(srcs[n++].url = strdup(url))) rc = GD_ENOMEM;
        gd_buf_printf(&srcs[i].tasks, "%s%d", srcs[i].tasks.len ? "," : "", (int)p);
    }
    for (int32_t w = 0; w < GD_MAX_PARTITIONS / 64 && !rc; w++)
        if (mine[w]) { /* this store, last */
            n++;
            break;
        }
    *out = srcs;
    *nout = n;
    return rc;
}

/* One try at q over route r's tasks `wanted`, merging what their sources
 * give into fn. The instances that failed go into f; *emitted once fn has
 * had a row (the query cannot be tried again: a source failing after that
 * is replaced in place, replace_source). */
static int merge_sources(gd_peers *pe, gd_store *s, MDB_txn *txn, const gd_query *q, const gd_route *route, int r,
                         int32_t partitions, const uint64_t *wanted, failures *f, gd_query_fn fn, void *fn_ctx,
                         bool *emitted)
{
    const gd_cluster_view *v = &pe->counters->cluster;
    uint64_t mine[GD_MAX_PARTITIONS / 64] = {0};
    source *srcs = NULL;
    int n = 0;
    merge m = {.pe = pe, .s = s, .txn = txn, .q = *q,
               .mine = {.route = route, .partitions = partitions, .tasks = mine}, .route = r, .failed = f};
    int rc = find_sources(pe, r, wanted, partitions, f, mine, &srcs, &n, &m.standby);
    /* every row this store holds that the query can match is of a task held
     * here when it holds every task wanted (a key picks one task's rows) */
    if (memcmp(mine, wanted, sizeof mine)) {
        m.q.keep = keep_task_rows;
        m.q.keep_ctx = &m.mine;
    }
    int merged = n; /* sources read in pages and merged */
    if (!rc && n == 1 && !srcs[0].url) { /* this store alone: no pages */
        *emitted = true;
        rc = gd_query_run_here(s, txn, &m.q, fn, fn_ctx);
        merged = 0;
    }
    if (!rc && merged && m.q.mode == GD_WINDOWS_LATEST) {
        int64_t w;
        rc = latest_window(&m, srcs, n, &w);
        m.q.mode = GD_WINDOWS_RANGE;
        m.q.from = w;
        m.q.to = w == INT64_MIN ? w : w + 1;
    }
    if (!rc && merged && m.q.from < m.q.to) rc = first_pages(&m, srcs, merged);
    for (int i = 0; !rc && i < merged && m.q.from < m.q.to; i++) /* each source's first row */
        if ((rc = advance(&m, &srcs[i])) == GD_EOF) rc = GD_OK;
    while (!rc && merged) {
        source *least = NULL;
        for (int i = 0; i < merged; i++)
            if (srcs[i].has_head && (!least || gd_key_cmp(srcs[i].head_key, least->head_key) < 0)) least = &srcs[i];
        if (!least) break;
        if (least->url) atomic_fetch_add(&pe->rows_in, 1);
        *emitted = true;
        if (fn(fn_ctx, least->head_key, least->head_val)) break;
        rc = advance(&m, least);
        if (rc == GD_EOF) rc = GD_OK;
    }
    /* a task left during the scan */
    if (!rc && !answers_all(v, r, mine, partitions, pe->cfg->max_staleness)) rc = GD_EUNAVAIL;
    if (!rc && m.standby) atomic_fetch_add(&pe->standby_reads, 1);
    free_sources(srcs, n);
    gd_buf_free(&m.mine.scratch);
    return rc;
}

/* A query on a routed table: its tasks' rows merged from their sources;
 * with --max-staleness, tried again (before any row is handed on) without
 * the instances that failed it, so a standby answers for an owner gone. */
static int routed_run(void *ctx, gd_store *s, MDB_txn *txn, const gd_query *q, gd_query_fn fn, void *fn_ctx)
{
    gd_peers *pe = ctx;
    const gd_cluster_view *v = &pe->counters->cluster;
    gd_route route;
    int r = route_of_table(pe, q->t, &route);
    if (r == NO_ROUTE) return gd_query_run_here(s, txn, q, fn, fn_ctx); /* every instance keeps it whole */
    if (r == ROUTE_UNKNOWN) return GD_EUNAVAIL;
    int32_t partitions = atomic_load(&v->route_partitions[r]);
    if (partitions <= 0 || partitions > GD_MAX_PARTITIONS) return GD_EUNAVAIL;
    atomic_fetch_add(&pe->routed, 1);
    uint64_t wanted[GD_MAX_PARTITIONS / 64] = {0};
    int32_t only = task_of_query(&route, q, partitions);
    for (int32_t p = only >= 0 ? only : 0; p < (only >= 0 ? only + 1 : partitions); p++) wanted[p / 64] |= 1ULL << (p % 64);
    failures f = {.n = 0};
    bool emitted = false;
    int rc = GD_EUNAVAIL;
    for (int tries = 0; tries < MAX_TRIES; tries++) {
        int failed = f.n;
        rc = merge_sources(pe, s, txn, q, &route, r, partitions, wanted, &f, fn, fn_ctx, &emitted);
        if (rc != GD_EUNAVAIL || emitted || pe->cfg->max_staleness < 0 || f.n == failed) break;
    }
    for (int i = 0; i < f.n; i++) free(f.url[i]);
    return rc;
}

/* ---- the rows another instance asks for ---- */

static bool read_hex(json_t *j, gd_buf *out)
{
    const char *s = json_string_value(j);
    size_t n = s ? strlen(s) : 0;
    if (!s || n % 2 || n > MAX_KEY_HEX) return false;
    for (size_t i = 0; i < n; i += 2) {
        int hi = gd_hex_value(s[i]), lo = gd_hex_value(s[i + 1]);
        if (hi < 0 || lo < 0) return false;
        gd_buf_putc(out, (char)(hi << 4 | lo));
    }
    return true;
}

void gd_route_internal_rows(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    const gd_cluster_view *v = &ctx->counters->cluster;
    json_error_t jerr;
    json_t *o = json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *table = json_object_get(o, "table"), *tasks = json_object_get(o, "tasks"), *keys = json_object_get(o, "keys");
    json_t *from = json_object_get(o, "from"), *to = json_object_get(o, "to"), *after = json_object_get(o, "after");
    json_t *staleness = json_object_get(o, "staleness"); /* absent: the owner only */
    const gd_catalog_entry *e = json_is_string(table) ? gd_catalog_find(ctx->cat, gd_str_c(json_string_value(table))) : NULL;
    gd_buf keybufs[GD_MAX_KEYS] = {{0}}, afterbuf = {0};
    gd_route route;
    int rt = e && e->is_table && ctx->peers ? route_of_table(ctx->peers, e->table, &route) : -1;
    int32_t partitions = rt >= 0 ? atomic_load(&v->route_partitions[rt]) : 0;
    uint64_t asked[GD_MAX_PARTITIONS / 64] = {0};
    bool ok = rt >= 0 && partitions > 0 && partitions <= GD_MAX_PARTITIONS && json_is_array(tasks) &&
              json_is_array(keys) && json_array_size(keys) == (size_t)e->table->nkeys && json_is_integer(from) &&
              json_is_integer(to) && (!after || read_hex(after, &afterbuf)) &&
              (!staleness || (json_is_integer(staleness) && json_integer_value(staleness) >= 0));
    int64_t max_lag = staleness ? json_integer_value(staleness) : -1;
    size_t i;
    json_t *x;
    json_array_foreach(ok ? tasks : NULL, i, x) {
        json_int_t p = json_is_integer(x) ? json_integer_value(x) : -1;
        if (p < 0 || p >= partitions) ok = false;
        else asked[p / 64] |= 1ULL << (p % 64);
    }
    gd_query q = {0};
    if (ok) {
        q = (gd_query){.t = e->table, .mode = json_is_true(json_object_get(o, "latest")) ? GD_WINDOWS_LATEST : GD_WINDOWS_RANGE,
                       .from = json_integer_value(from), .to = json_integer_value(to), .deadline_ms = req->deadline_ms};
        json_array_foreach(keys, i, x) {
            if (json_is_null(x)) continue;
            if (!read_hex(x, &keybufs[i])) ok = false;
            q.key_eq[i] = (gd_str){keybufs[i].p ? keybufs[i].p : "", (uint32_t)keybufs[i].len};
        }
        if (after) q.after = (gd_str){afterbuf.p ? afterbuf.p : "", (uint32_t)afterbuf.len};
    }
    if (!ok) {
        gd_reply_error(r, 400, "not a request for rows of a routed table: %s", o ? "unknown table or bad member" : jerr.text);
    } else if (!answers_all(v, rt, asked, partitions, max_lag)) {
        gd_reply_error(r, 409, max_lag < 0 ? "this instance does not hold every task asked for (a rebalance moved them)"
                                           : "this instance neither holds nor keeps warm within the staleness asked "
                                             "every task asked for");
    } else {
        task_filter f = {.route = &route, .partitions = partitions, .tasks = asked};
        q.keep = keep_task_rows;
        q.keep_ctx = &f;
        MDB_txn *txn = NULL;
        json_int_t rows = json_integer_value(json_object_get(o, "rows"));
        rows = rows < 1 || rows > PAGE_ROWS ? PAGE_ROWS : rows;
        int rc = gd_store_begin_read(ctx->store, &txn) ? GD_ERR : page_here(ctx->store, txn, &q, (size_t)rows, &r->body);
        if (txn) gd_store_end_read(ctx->store, txn);
        gd_buf_free(&f.scratch);
        if (!rc && !answers_all(v, rt, asked, partitions, max_lag)) rc = GD_EUNAVAIL;
        if (rc) {
            gd_buf_clear(&r->body);
            if (rc == GD_ETIMEDOUT) gd_reply_timed_out(ctx, r);
            else if (rc == GD_EUNAVAIL) gd_reply_error(r, 409, "a task asked for moved during the scan");
            else gd_reply_error(r, 500, "reading %s failed", e->name);
        } else {
            r->status = 200;
            r->content_type = "application/octet-stream";
        }
    }
    for (int k = 0; k < GD_MAX_KEYS; k++) gd_buf_free(&keybufs[k]);
    gd_buf_free(&afterbuf);
    json_decref(o);
}

/* ---- the set ---- */

static void read_instance_key(const char *path, char *key, size_t n)
{
    key[0] = 0;
    FILE *f = path[0] ? fopen(path, "r") : NULL;
    if (path[0] && !f) gd_warn("--instance-key %s: cannot be read; other instances will refuse this one", path);
    if (!f) return;
    if (fgets(key, (int)n, f)) key[strcspn(key, "\r\n \t")] = 0;
    fclose(f);
}

int gd_peers_open(gd_peers **out, const gd_config *cfg, gd_counters *counters)
{
    *out = NULL;
    if (!cfg->partitioned) return GD_OK;
    gd_peers *pe = calloc(1, sizeof *pe);
    if (!pe) return GD_ENOMEM;
    pe->cfg = cfg;
    pe->counters = counters;
    read_instance_key(cfg->instance_key, pe->key, sizeof pe->key);
    if (cfg->api_keys[0] && !pe->key[0])
        gd_warn("partitioned mode with --api-keys and no --instance-key: the other instances will refuse this one's "
                "requests for rows, so queries on the tables answer 503");
    pe->router = (struct gd_query_router){.ctx = pe, .run = routed_run};
    pthread_mutex_init(&pe->lock, NULL);
    open_share(pe);
    *out = pe;
    return GD_OK;
}

const struct gd_query_router *gd_peers_router(gd_peers *pe) { return pe ? &pe->router : NULL; }

void gd_peers_metrics(gd_peers *pe, gd_buf *b)
{
    if (!pe) return;
    gd_prom_family(b, "gamingd_routed_queries_total", "counter",
                   "Scans of a table that asked the owners of its tasks (partitioned mode).");
    gd_prom_sample(b, "gamingd_routed_queries_total", NULL, "%llu", (unsigned long long)atomic_load(&pe->routed));
    gd_prom_family(b, "gamingd_peer_requests_total", "counter", "Pages of rows asked of other instances.");
    gd_prom_sample(b, "gamingd_peer_requests_total", NULL, "%llu", (unsigned long long)atomic_load(&pe->asked));
    gd_prom_family(b, "gamingd_peer_rows_total", "counter", "Rows other instances gave, as merged into answers.");
    gd_prom_sample(b, "gamingd_peer_rows_total", NULL, "%llu", (unsigned long long)atomic_load(&pe->rows_in));
    gd_prom_family(b, "gamingd_peer_bytes_total", "counter", "Bytes of the pages other instances gave.");
    gd_prom_sample(b, "gamingd_peer_bytes_total", NULL, "%llu", (unsigned long long)atomic_load(&pe->bytes_in));
    gd_prom_family(b, "gamingd_peer_refusals_total", "counter",
                   "Pages another instance refused or did not give (the query then answered 503).");
    gd_prom_sample(b, "gamingd_peer_refusals_total", NULL, "%llu", (unsigned long long)atomic_load(&pe->refused));
    gd_prom_family(b, "gamingd_standby_reads_total", "counter",
                   "Routed scans answered in part by an instance keeping a task warm for an owner that could not "
                   "answer (--max-staleness).");
    gd_prom_sample(b, "gamingd_standby_reads_total", NULL, "%llu", (unsigned long long)atomic_load(&pe->standby_reads));
}

void gd_peers_close(gd_peers *pe)
{
    if (!pe) return;
    if (pe->share) curl_share_cleanup(pe->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&pe->share_locks[i]);
    pthread_mutex_destroy(&pe->lock);
    free(pe);
}
