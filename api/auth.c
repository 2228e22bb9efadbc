/* auth.c -- API keys, scopes, and the masking of personal data.
 *
 * --api-keys FILE holds one key a line, `KEY SCOPES`: SCOPES a comma list of
 * read, pii and admin (admin implies read and pii), and instance: the key
 * instances of partitioned mode present to each other (--instance-key),
 * which only they need; a key written
 * `sha256:HEX` stands for the key whose SHA-256 is HEX, so the file need not
 * hold secrets; `#` starts a comment line. Keys are kept only as SHA-256
 * digests. A presented key is hashed and compared with every digest in
 * constant time -- no early exit, no comparison that stops at the first
 * differing byte -- so timing tells nothing about any key. Keys are never
 * logged.
 *
 * SIGHUP reloads the file (gd_auth_reload_if_asked, called by request
 * threads and by the push waker): a bad file keeps the keys in force and
 * says why; the generation number moves only when the keys change, which
 * is how push streams learn to end those whose key went away.
 *
 * Personal data: without the pii scope, every column the catalog marks
 * personal (gd_catalog_column_pii: PII in builtin.sql, and whatever is
 * computed from such a column) is masked in every response and stream --
 * a copy of an email as ***@domain, anything derived as ***, null as null
 * (gd_json_put_masked). Rows and events that gamingd writes as JSON
 * objects are masked member by member (gd_mask_json_object), each personal
 * member found by search: in the flat objects gamingd writes, `"name":`
 * after '{' or ',' can only be that member's key, so an event costs a
 * search per personal column, not a parse of every member. */
#include <ctype.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"

enum { DIGEST = 32, MAX_LINE = 4096 };

typedef struct {
    unsigned char digest[DIGEST];
    unsigned scopes;
} api_key;

struct gd_auth {
    char path[1024];
    pthread_rwlock_t lock; /* readers: every request; writer: a reload */
    api_key *keys;
    size_t nkeys;
    _Atomic unsigned generation;     /* moves when the keys change */
    const _Atomic unsigned *reloads; /* SIGHUPs received */
    unsigned reloads_seen;
    pthread_mutex_t reload_lock;
};

static void sha256(const void *p, size_t n, unsigned char out[DIGEST])
{
    gnutls_hash_fast(GNUTLS_DIG_SHA256, p, n, out);
}

static int parse_scopes(const char *s, unsigned *out)
{
    *out = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "read")) *out |= GD_SCOPE_READ;
        else if (!strcmp(tok, "pii")) *out |= GD_SCOPE_PII;
        else if (!strcmp(tok, "admin")) *out |= GD_SCOPE_READ | GD_SCOPE_PII | GD_SCOPE_ADMIN;
        else if (!strcmp(tok, "instance")) *out |= GD_SCOPE_INSTANCE;
        else return GD_ERR;
    }
    return *out ? GD_OK : GD_ERR;
}

/* Parses the key file into *keys; on a bad line, says which and why. */
static int load_keys(const char *path, api_key **keys, size_t *nkeys, char *why, size_t why_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, why_len, "cannot read %s", path);
        return GD_ERR;
    }
    api_key *list = NULL;
    size_t n = 0, cap = 0;
    char line[MAX_LINE];
    int lineno = 0, rc = GD_OK;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        char key[MAX_LINE], scopes[256], extra[8];
        int fields = sscanf(line, " %4095s %255s %7s", key, scopes, extra);
        if (fields <= 0 || key[0] == '#') continue;
        api_key k;
        if (fields != 2) {
            snprintf(why, why_len, "%s line %d: expected `KEY SCOPES`", path, lineno);
            rc = GD_ERR;
        } else if (parse_scopes(scopes, &k.scopes)) {
            snprintf(why, why_len, "%s line %d: scopes are a comma list of read, pii, admin", path, lineno);
            rc = GD_ERR;
        } else if (!strncmp(key, "sha256:", 7)) {
            const char *hex = key + 7;
            if (strlen(hex) != 2 * DIGEST) rc = GD_ERR;
            for (int i = 0; !rc && i < DIGEST; i++) {
                int hi = gd_hex_value(hex[2 * i]), lo = gd_hex_value(hex[2 * i + 1]);
                if (hi < 0 || lo < 0) rc = GD_ERR;
                else k.digest[i] = (unsigned char)(hi << 4 | lo);
            }
            if (rc) snprintf(why, why_len, "%s line %d: sha256: takes 64 hex digits", path, lineno);
        } else {
            sha256(key, strlen(key), k.digest);
        }
        if (rc) break;
        for (size_t i = 0; i < n; i++)
            if (!memcmp(list[i].digest, k.digest, DIGEST)) {
                snprintf(why, why_len, "%s line %d: the same key is given twice", path, lineno);
                rc = GD_ERR;
            }
        if (rc) break;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            api_key *grown = realloc(list, cap * sizeof *grown);
            if (!grown) {
                rc = GD_ENOMEM;
                break;
            }
            list = grown;
        }
        list[n++] = k;
    }
    fclose(f);
    if (!rc && !n) {
        snprintf(why, why_len, "%s holds no key: every request would be refused", path);
        rc = GD_ERR;
    }
    if (rc) {
        free(list);
        return rc;
    }
    *keys = list;
    *nkeys = n;
    return GD_OK;
}

int gd_auth_open(gd_auth **out, const char *path, const _Atomic unsigned *reloads)
{
    *out = NULL;
    if (!path || !path[0]) return GD_OK;
    gd_auth *a = calloc(1, sizeof *a);
    if (!a) return GD_ENOMEM;
    snprintf(a->path, sizeof a->path, "%s", path);
    char why[512];
    if (load_keys(path, &a->keys, &a->nkeys, why, sizeof why)) {
        gd_error("--api-keys: %s", why);
        free(a);
        return GD_ERR;
    }
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->reload_lock, NULL);
    a->reloads = reloads;
    a->reloads_seen = reloads ? atomic_load(reloads) : 0;
    gd_info("API keys: %zu from %s", a->nkeys, path);
    *out = a;
    return GD_OK;
}

void gd_auth_free(gd_auth *a)
{
    if (!a) return;
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->reload_lock);
    free(a->keys);
    free(a);
}

void gd_auth_reload_if_asked(gd_auth *a)
{
    if (!a || !a->reloads || atomic_load_explicit(a->reloads, memory_order_relaxed) == a->reloads_seen) return;
    pthread_mutex_lock(&a->reload_lock);
    unsigned asked = atomic_load(a->reloads);
    if (asked != a->reloads_seen) {
        a->reloads_seen = asked;
        api_key *keys;
        size_t n;
        char why[512];
        if (load_keys(a->path, &keys, &n, why, sizeof why)) {
            gd_error("SIGHUP: the API keys were not reloaded, the previous ones stay in force: %s", why);
        } else {
            pthread_rwlock_wrlock(&a->lock);
            api_key *old = a->keys;
            a->keys = keys;
            a->nkeys = n;
            atomic_fetch_add(&a->generation, 1);
            pthread_rwlock_unlock(&a->lock);
            free(old);
            gd_info("SIGHUP: %zu API keys reloaded from %s", n, a->path);
        }
    }
    pthread_mutex_unlock(&a->reload_lock);
}

unsigned gd_auth_generation(const gd_auth *a) { return a ? atomic_load(&a->generation) : 0; }

/* 0 when equal; every byte looked at whatever the outcome. */
static unsigned differs(const unsigned char *x, const unsigned char *y)
{
    unsigned d = 0;
    for (int i = 0; i < DIGEST; i++) d |= (unsigned)(x[i] ^ y[i]);
    return d;
}

unsigned gd_auth_scopes(gd_auth *a, const char *key, unsigned char digest_out[32])
{
    if (!key) return 0;
    unsigned char digest[DIGEST];
    sha256(key, strlen(key), digest);
    if (digest_out) memcpy(digest_out, digest, DIGEST);
    unsigned scopes = 0;
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; i < a->nkeys; i++) {
        unsigned match = -(unsigned)(differs(a->keys[i].digest, digest) == 0); /* all ones when equal */
        scopes |= a->keys[i].scopes & match;
    }
    pthread_rwlock_unlock(&a->lock);
    return scopes;
}

unsigned gd_auth_scopes_of_digest(gd_auth *a, const unsigned char digest[32])
{
    unsigned scopes = 0;
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; i < a->nkeys; i++)
        if (!differs(a->keys[i].digest, digest)) scopes |= a->keys[i].scopes;
    pthread_rwlock_unlock(&a->lock);
    return scopes;
}

/* ---- personal data ---- */

/* The value of a member as gd_json_put_masked takes it. */
static gd_value member_value(const gd_jval *v)
{
    switch (v->t) {
    case GD_J_STR: return (gd_value){.t = GD_V_STR, .s = v->s};
    case GD_J_INT: return (gd_value){.t = GD_V_INT, .i = v->i};
    case GD_J_DBL: return (gd_value){.t = GD_V_DBL, .d = v->d};
    case GD_J_BOOL: return (gd_value){.t = GD_V_BOOL, .i = v->b};
    case GD_J_NULL: return (gd_value){.t = GD_V_NULL};
    default: return (gd_value){.t = GD_V_STR, .s = v->raw}; /* masked whole */
    }
}

/* A personal member of an object: where its value stands, and what it is. */
typedef struct {
    const char *at, *end;
    gd_pii pii;
    gd_value v;
} personal_member;

/* Finds member `name` of obj (a flat object gamingd wrote: `"name":` after
 * '{' or ',' can only be that member's key, since quotes inside strings are
 * escaped): 1 and *m set, 0 when absent, -1 when its value does not parse. */
static int find_member(gd_str obj, const char *name, gd_pii pii, gd_arena *scratch, personal_member *m)
{
    char needle[300];
    size_t nl = (size_t)snprintf(needle, sizeof needle, "\"%s\":", name);
    if (nl >= sizeof needle) return 0;
    const char *at = obj.p, *end = obj.p + obj.len;
    while ((at = memmem(at, (size_t)(end - at), needle, nl))) {
        if (at > obj.p && (at[-1] == '{' || at[-1] == ',')) break;
        at++;
    }
    if (!at) return 0;
    gd_json j;
    gd_json_init(&j, (gd_str){at + nl, (uint32_t)(end - at - nl)}, scratch);
    gd_jval v;
    if (gd_json_value(&j, &v)) return -1;
    *m = (personal_member){v.raw.p, v.raw.p + v.raw.len, pii, member_value(&v)};
    return 1;
}

/* Column i of e (a table's keys, then its values): false past the last. */
static bool entry_column(const gd_catalog_entry *e, int i, const char **name, gd_pii *pii)
{
    if (!e->is_table) {
        if (i >= e->ncols) return false;
        return *name = e->cols[i].name, *pii = e->cols[i].pii, true;
    }
    const gd_tabledef *t = e->table;
    if (i < t->nkeys) return *name = t->keys[i].name, *pii = t->keys[i].pii, true;
    i -= t->nkeys;
    if (i >= t->ncols) return false;
    return *name = t->cols[i].name, *pii = t->cols[i].pii, true;
}

enum { MAX_PERSONAL_MEMBERS = 64 };

void gd_mask_json_object(const gd_catalog_entry *e, gd_str obj, gd_buf *out)
{
    gd_arena scratch;
    gd_arena_init(&scratch);
    personal_member found[MAX_PERSONAL_MEMBERS];
    int nfound = 0;
    bool bad = false;
    const char *name;
    gd_pii pii;
    for (int i = 0; !bad && entry_column(e, i, &name, &pii); i++) {
        if (!pii) continue;
        personal_member m;
        int rc = find_member(obj, name, pii, &scratch, &m);
        if (rc < 0 || (rc && nfound == MAX_PERSONAL_MEMBERS)) bad = true;
        else if (rc) { /* kept in the order they stand */
            int at = nfound++;
            for (; at > 0 && found[at - 1].at > m.at; at--) found[at] = found[at - 1];
            found[at] = m;
        }
    }
    gd_json j;
    gd_json_init(&j, obj, &scratch);
    if (bad || gd_json_object_begin(&j)) {
        gd_buf_puts(out, "null"); /* not an object gamingd wrote: show nothing of it */
    } else {
        const char *copied = obj.p;
        for (int i = 0; i < nfound; i++) {
            gd_buf_put(out, copied, (size_t)(found[i].at - copied));
            gd_json_put_masked(out, found[i].pii, found[i].v);
            copied = found[i].end;
        }
        gd_buf_put(out, copied, (size_t)(obj.p + obj.len - copied));
    }
    gd_arena_free(&scratch);
}
