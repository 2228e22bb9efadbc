/* store.c -- LMDB environment, named databases and the few operations the
 * other layers need. See store.h for the layout and the why.
 *
 * Read transactions are pooled: beginning one with mdb_txn_begin allocates
 * and zeroes room for every named database (MAX_DBS of them, ~100 KB), a
 * twentieth of a keyed pull query's time. An ended one is reset -- it then
 * holds no snapshot, so however long it waits it pins no page (store.h) --
 * and the next reader, on any thread (MDB_NOTLS), renews it. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Named databases: meta, and a table's rows and sets. Tables created and
 * dropped while the daemon runs each open new ones (their handles cannot
 * be closed while readers may use them), hence the room. */
enum { MAX_DBS = 2048 };

static int lmdb_fail(const char *what, int rc)
{
    gd_error("lmdb: %s: %s%s", what, mdb_strerror(rc),
             rc == MDB_MAP_FULL ? " (raise --map-size, or shorten --retention)" : "");
    return GD_ERR;
}

/* A write that fails for want of disk shows as ENOSPC, or as EIO when LMDB
 * saw a short write; either way the message says what the operator can do. */
static bool disk_full(MDB_env *env, int rc, unsigned long long *free_bytes)
{
    const char *path;
    struct statvfs st;
    if ((rc != ENOSPC && rc != EIO) || mdb_env_get_path(env, &path) || statvfs(path, &st)) return false;
    *free_bytes = (unsigned long long)st.f_bavail * st.f_frsize;
    return rc == ENOSPC || *free_bytes < (16ULL << 20);
}

static int lock_data_dir(gd_store *s, const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/gamingd.lock", dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0) {
        gd_error("cannot open %s: %s", path, strerror(errno));
        return GD_ERR;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB)) {
        gd_error("data dir %s is in use by another gamingd", dir);
        close(s->lock_fd);
        s->lock_fd = -1;
        return GD_ERR;
    }
    return GD_OK;
}

static void unlock_data_dir(gd_store *s)
{
    if (s->lock_fd >= 0) close(s->lock_fd);
    s->lock_fd = -1;
}

int gd_store_open(gd_store *s, const char *dir, size_t map_size)
{
    memset(s, 0, sizeof *s);
    s->lock_fd = -1;
    pthread_mutex_init(&s->idle_mu, NULL);
    snprintf(s->path, sizeof s->path, "%s", dir);
    if (mkdir(dir, 0755) && errno != EEXIST) {
        gd_error("cannot create data dir %s: %s", dir, strerror(errno));
        return GD_ERR;
    }
    if (lock_data_dir(s, dir)) return GD_ERR;
    int rc = mdb_env_create(&s->env);
    if (rc) {
        unlock_data_dir(s);
        return lmdb_fail("env_create", rc);
    }
    if ((rc = mdb_env_set_maxdbs(s->env, MAX_DBS)) || (rc = mdb_env_set_mapsize(s->env, map_size)) ||
        (rc = mdb_env_set_maxreaders(s->env, 1024))) {
        mdb_env_close(s->env);
        unlock_data_dir(s);
        return lmdb_fail("env_set", rc);
    }
    /* NOTLS: HTTP read transactions are not tied to threads. NOMETASYNC: the
     * data pages are synced at commit, the meta page with the next one, so a
     * machine crash may lose the last batch but never the database; a process
     * crash loses nothing committed. */
    rc = mdb_env_open(s->env, dir, MDB_NOTLS | MDB_NOMETASYNC, 0644);
    if (rc) {
        mdb_env_close(s->env);
        unlock_data_dir(s);
        gd_error("lmdb: cannot open %s: %s", dir, mdb_strerror(rc));
        return GD_ERR;
    }
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn))) {
        mdb_env_close(s->env);
        unlock_data_dir(s);
        return lmdb_fail("txn_begin", rc);
    }
    rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
    if (rc) {
        mdb_txn_abort(txn);
        mdb_env_close(s->env);
        unlock_data_dir(s);
        return lmdb_fail("dbi_open", rc);
    }
    if ((rc = mdb_txn_commit(txn))) {
        mdb_env_close(s->env);
        unlock_data_dir(s);
        return lmdb_fail("commit", rc);
    }
    return GD_OK;
}

/* A table's databases are named after it; a user's table also carries its
 * creation number, so that a table dropped and created again in one run
 * gets databases (and handles) of its own. */
static void db_name(const char *table, uint64_t uid, const char *suffix, char *out, size_t n)
{
    if (uid) snprintf(out, n, "%s@%llu%s", table, (unsigned long long)uid, suffix);
    else snprintf(out, n, "%s%s", table, suffix);
}

int gd_store_open_table(gd_store *s, MDB_txn *txn, gd_tabledef *t, uint64_t uid)
{
    char name[600];
    db_name(t->name, uid, "", name, sizeof name);
    MDB_dbi rows, sets = 0;
    int rc = mdb_dbi_open(txn, name, MDB_CREATE, &rows);
    if (!rc && gd_table_has_sets(t)) {
        db_name(t->name, uid, "/sets", name, sizeof name);
        rc = mdb_dbi_open(txn, name, MDB_CREATE, &sets);
    }
    if (rc) return lmdb_fail(name, rc);
    (void)s;
    t->dbi_rows = rows;
    t->dbi_sets = sets;
    return GD_OK;
}

int gd_store_open_tables(gd_store *s, gd_catalog *cat)
{
    MDB_txn *txn;
    int rc = gd_store_begin_write(s, &txn);
    for (unsigned i = 0; !rc && i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(cat, i);
        if (e) rc = gd_store_open_table(s, txn, e->table, e->uid);
    }
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return gd_store_commit(txn);
}

int gd_store_empty_table(gd_store *s, MDB_txn *txn, const gd_tabledef *t)
{
    (void)s;
    int rc = mdb_drop(txn, t->dbi_rows, 0);
    if (!rc && gd_table_has_sets(t)) rc = mdb_drop(txn, t->dbi_sets, 0);
    return rc ? lmdb_fail("empty a dropped table", rc) : GD_OK;
}

int gd_store_delete_table(gd_store *s, MDB_txn *txn, const char *table, uint64_t uid)
{
    (void)s;
    static const char *const suffixes[] = {"", "/sets"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char name[600];
        db_name(table, uid, suffixes[i], name, sizeof name);
        MDB_dbi dbi;
        int rc = mdb_dbi_open(txn, name, 0, &dbi);
        if (rc == MDB_NOTFOUND) continue;
        if (!rc) rc = mdb_drop(txn, dbi, 1);
        if (rc) return lmdb_fail(name, rc);
    }
    return GD_OK;
}

void gd_store_close(gd_store *s)
{
    if (!s->env) return;
    while (s->nidle) mdb_txn_abort(s->idle[--s->nidle]);
    pthread_mutex_destroy(&s->idle_mu);
    mdb_env_sync(s->env, 1);
    mdb_env_close(s->env);
    s->env = NULL;
    unlock_data_dir(s);
}

int gd_store_begin_write(gd_store *s, MDB_txn **txn)
{
    int rc = mdb_txn_begin(s->env, NULL, 0, txn);
    return rc ? lmdb_fail("begin write", rc) : GD_OK;
}

int gd_store_begin_read(gd_store *s, MDB_txn **txn)
{
    pthread_mutex_lock(&s->idle_mu);
    *txn = s->nidle ? s->idle[--s->nidle] : NULL;
    pthread_mutex_unlock(&s->idle_mu);
    if (*txn && !mdb_txn_renew(*txn)) return GD_OK;
    if (*txn) mdb_txn_abort(*txn);
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    return rc ? lmdb_fail("begin read", rc) : GD_OK;
}

int gd_store_renew_read(MDB_txn *txn, const char *whose)
{
    mdb_txn_reset(txn);
    int rc = mdb_txn_renew(txn);
    if (rc) gd_error("lmdb: renewing the %s read transaction: %s", whose, mdb_strerror(rc));
    return rc ? GD_ERR : GD_OK;
}

void gd_store_end_read(gd_store *s, MDB_txn *txn)
{
    mdb_txn_reset(txn);
    pthread_mutex_lock(&s->idle_mu);
    bool kept = s->nidle < GD_STORE_IDLE_READERS;
    if (kept) s->idle[s->nidle++] = txn;
    pthread_mutex_unlock(&s->idle_mu);
    if (!kept) mdb_txn_abort(txn);
}

int gd_store_commit(MDB_txn *txn)
{
    MDB_env *env = mdb_txn_env(txn);
    int rc = mdb_txn_commit(txn);
    unsigned long long free_bytes;
    if (rc && disk_full(env, rc, &free_bytes)) {
        const char *path = "?";
        mdb_env_get_path(env, &path);
        gd_error("lmdb: commit: the disk holding the data dir %s is full (%llu KiB free). Free space there or move "
                 "--data-dir to a larger disk, then start gamingd again: it resumes from its last commit and loses "
                 "nothing", path, free_bytes >> 10);
        return GD_ERR;
    }
    return rc ? lmdb_fail("commit", rc) : GD_OK;
}

static MDB_val val_of(const void *p, size_t n) { return (MDB_val){n, (void *)p}; }

int gd_store_meta_get(gd_store *s, MDB_txn *txn, const char *name, gd_str *out)
{
    MDB_val k = val_of(name, strlen(name)), v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) return GD_EOF;
    if (rc) return lmdb_fail("meta get", rc);
    *out = (gd_str){v.mv_data, (uint32_t)v.mv_size};
    return GD_OK;
}

int gd_store_meta_put(gd_store *s, MDB_txn *txn, const char *name, const void *p, size_t n)
{
    MDB_val k = val_of(name, strlen(name)), v = val_of(p, n);
    int rc = mdb_put(txn, s->meta, &k, &v, 0);
    return rc ? lmdb_fail("meta put", rc) : GD_OK;
}

/* Which file the data dir's LMDB is (device and inode): a copy of the dir
 * is another file, and must not keep the id -- two replicas with one id
 * would share a consumer group, each holding part of the records. */
static void lmdb_file_identity(const gd_store *s, uint64_t identity[2])
{
    char path[sizeof s->path + 16];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", s->path);
    identity[0] = identity[1] = 0;
    if (stat(path, &st) == 0) {
        identity[0] = (uint64_t)st.st_dev;
        identity[1] = (uint64_t)st.st_ino;
    }
}

int gd_store_instance_id(gd_store *s, char out[17])
{
    MDB_txn *txn;
    gd_str id, home;
    uint64_t identity[2];
    lmdb_file_identity(s, identity);
    int rc = gd_store_begin_write(s, &txn);
    if (rc) return rc;
    bool have_id = gd_store_meta_get(s, txn, "instance_id", &id) == GD_OK && id.len == 16;
    bool have_home = gd_store_meta_get(s, txn, "instance_home", &home) == GD_OK && home.len == sizeof identity;
    bool copied = have_id && have_home && memcmp(home.p, identity, sizeof identity) != 0;
    if (have_id && !copied) {
        memcpy(out, id.p, 16);
        out[16] = 0;
        if (have_home) { /* a data dir of an earlier version learns its file below */
            mdb_txn_abort(txn);
            return GD_OK;
        }
    } else {
        uint64_t r;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r = (uint64_t)gd_now_ms() ^ gd_mono_ns() ^ (uint64_t)getpid() << 32;
        if (copied)
            gd_info("data dir %s is a copy of instance %.16s's (another LMDB file): it gets an id of its own", s->path,
                    id.p);
        snprintf(out, 17, "%016llx", (unsigned long long)r);
        rc = gd_store_meta_put(s, txn, "instance_id", out, 16);
    }
    if (!rc) rc = gd_store_meta_put(s, txn, "instance_home", identity, sizeof identity);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return gd_store_commit(txn);
}

int gd_store_secret(gd_store *s, const char *name, void *out, size_t n)
{
    MDB_txn *txn;
    gd_str kept;
    int rc = gd_store_begin_write(s, &txn);
    if (rc) return rc;
    if (gd_store_meta_get(s, txn, name, &kept) == GD_OK && kept.len == n) {
        memcpy(out, kept.p, n);
        mdb_txn_abort(txn);
        return GD_OK;
    }
    if (getrandom(out, n, 0) != (ssize_t)n) {
        gd_error("no random bytes for the %s: %s", name, strerror(errno));
        mdb_txn_abort(txn);
        return GD_ERR;
    }
    if ((rc = gd_store_meta_put(s, txn, name, out, n))) {
        mdb_txn_abort(txn);
        return rc;
    }
    return gd_store_commit(txn);
}

int gd_store_row_get(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str key, gd_str *val)
{
    (void)s; /* tables carry their own handles */
    MDB_val k = val_of(key.p, key.len), v;
    int rc = mdb_get(txn, t->dbi_rows, &k, &v);
    if (rc == MDB_NOTFOUND) return GD_EOF;
    if (rc) return lmdb_fail("row get", rc);
    *val = (gd_str){v.mv_data, (uint32_t)v.mv_size};
    return GD_OK;
}

/* A write, to the writer's tap when it set one. */
static int tapped(gd_store *s, char kind, const gd_tabledef *t, gd_str key, gd_str val)
{
    return s->tap ? s->tap(s->tap_ctx, kind, t, key, val) : GD_OK;
}

int gd_store_row_put(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str key, gd_str val)
{
    if (!gd_store_key_fits(key)) return GD_EBADREC;
    MDB_val k = val_of(key.p, key.len), v = val_of(val.p, val.len);
    int rc = mdb_put(txn, t->dbi_rows, &k, &v, 0);
    if (rc) return lmdb_fail("row put", rc);
    return tapped(s, 'R', t, key, val);
}

int gd_store_row_del(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str key)
{
    if (!gd_store_key_fits(key)) return GD_OK;
    MDB_val k = val_of(key.p, key.len);
    int rc = mdb_del(txn, t->dbi_rows, &k, NULL);
    if (rc && rc != MDB_NOTFOUND) return lmdb_fail("row del", rc);
    rc = gd_table_has_sets(t) ? mdb_del(txn, t->dbi_sets, &k, NULL) : 0;
    if (rc && rc != MDB_NOTFOUND) return lmdb_fail("sets del", rc);
    return tapped(s, 'D', t, key, GD_STR_NULL);
}

int gd_store_sets_get(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str key, gd_str *val)
{
    (void)s; /* tables carry their own handles */
    MDB_val k = val_of(key.p, key.len), v;
    int rc = mdb_get(txn, t->dbi_sets, &k, &v);
    if (rc == MDB_NOTFOUND) return GD_EOF;
    if (rc) return lmdb_fail("sets get", rc);
    *val = (gd_str){v.mv_data, (uint32_t)v.mv_size};
    return GD_OK;
}

int gd_store_sets_put(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str key, gd_str val)
{
    if (!gd_store_key_fits(key)) return GD_EBADREC;
    MDB_val k = val_of(key.p, key.len), v = val_of(val.p, val.len);
    int rc = mdb_put(txn, t->dbi_sets, &k, &v, 0);
    if (rc) return lmdb_fail("sets put", rc);
    return tapped(s, 'S', t, key, val);
}

void gd_store_writer_begin(gd_store_writer *w, MDB_txn *txn) { *w = (gd_store_writer){.txn = txn}; }

void gd_store_writer_end(gd_store_writer *w)
{
    if (w->rows) mdb_cursor_close(w->rows);
    if (w->sets) mdb_cursor_close(w->sets);
    w->rows = w->sets = NULL;
    w->table = NULL;
}

/* The cursors on t's databases. */
static int writer_on(gd_store_writer *w, const gd_tabledef *t)
{
    if (w->table == t) return GD_OK;
    gd_store_writer_end(w);
    int rc = mdb_cursor_open(w->txn, t->dbi_rows, &w->rows);
    if (!rc && gd_table_has_sets(t)) rc = mdb_cursor_open(w->txn, t->dbi_sets, &w->sets);
    if (rc) {
        gd_store_writer_end(w);
        return lmdb_fail("cursor", rc);
    }
    w->table = t;
    return GD_OK;
}

int gd_store_writer_put(gd_store *s, gd_store_writer *w, const gd_tabledef *t, gd_str key, gd_str row, gd_str sets)
{
    if (!gd_store_key_fits(key)) return GD_EBADREC;
    int rc = writer_on(w, t);
    if (rc) return rc;
    MDB_val k = val_of(key.p, key.len), v = val_of(row.p, row.len);
    if ((rc = mdb_cursor_put(w->rows, &k, &v, 0))) return lmdb_fail("row put", rc);
    if ((rc = tapped(s, 'R', t, key, row))) return rc;
    if (!sets.p) return GD_OK;
    v = val_of(sets.p, sets.len);
    if (!w->sets || (rc = mdb_cursor_put(w->sets, &k, &v, 0))) return lmdb_fail("sets put", w->sets ? rc : EINVAL);
    return tapped(s, 'S', t, key, sets);
}

static int purge_dbi(MDB_txn *txn, MDB_dbi dbi, int64_t window_limit, size_t max_rows, size_t *deleted)
{
    MDB_cursor *c;
    *deleted = 0;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc) return lmdb_fail("cursor", rc);
    MDB_val k, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0 && *deleted < max_rows) {
        if (k.mv_size < 8 || gd_rowkey_window(k.mv_data) >= window_limit) break;
        if ((rc = mdb_cursor_del(c, 0))) break;
        (*deleted)++;
        rc = mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT);
        if (rc == EINVAL || rc == MDB_NOTFOUND) /* deleted the last one */
            break;
    }
    mdb_cursor_close(c);
    return rc && rc != MDB_NOTFOUND && rc != EINVAL ? lmdb_fail("purge", rc) : GD_OK;
}

int gd_store_purge(gd_store *s, MDB_txn *txn, const gd_tabledef *t, int64_t window_limit,
                   size_t max_rows, size_t *deleted)
{
    (void)s;
    size_t sets_deleted;
    int rc = purge_dbi(txn, t->dbi_rows, window_limit, max_rows, deleted);
    if (!rc && gd_table_has_sets(t)) rc = purge_dbi(txn, t->dbi_sets, window_limit, max_rows, &sets_deleted);
    return rc;
}

static int delete_after_dbi(MDB_txn *txn, MDB_dbi dbi, int64_t window_limit, size_t *deleted)
{
    MDB_cursor *c;
    *deleted = 0;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc) return lmdb_fail("cursor", rc);
    MDB_val k, v;
    /* from the end, taking the last row afresh after each delete */
    for (rc = mdb_cursor_get(c, &k, &v, MDB_LAST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_LAST)) {
        if (k.mv_size < 8 || gd_rowkey_window(k.mv_data) <= window_limit) break;
        if ((rc = mdb_cursor_del(c, 0))) break;
        (*deleted)++;
    }
    mdb_cursor_close(c);
    return rc && rc != MDB_NOTFOUND ? lmdb_fail("delete", rc) : GD_OK;
}

int gd_store_delete_after(gd_store *s, MDB_txn *txn, const gd_tabledef *t, int64_t window_limit, size_t *deleted)
{
    (void)s;
    size_t sets_deleted;
    int rc = delete_after_dbi(txn, t->dbi_rows, window_limit, deleted);
    if (!rc && gd_table_has_sets(t)) rc = delete_after_dbi(txn, t->dbi_sets, window_limit, &sets_deleted);
    return rc;
}

int gd_store_newest_window(gd_store *s, MDB_txn *txn, const gd_tabledef *t, int64_t *window_start)
{
    (void)s; /* tables carry their own handles */
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, t->dbi_rows, &c);
    if (rc) return lmdb_fail("cursor", rc);
    MDB_val k, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    if (!rc && k.mv_size >= 8) *window_start = gd_rowkey_window(k.mv_data);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND || (!rc && k.mv_size < 8)) return GD_EOF;
    return rc ? lmdb_fail("newest window", rc) : GD_OK;
}

int gd_store_scan(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str start, gd_row_fn fn,
                  void *ctx)
{
    (void)s; /* tables carry their own handles */
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, t->dbi_rows, &c);
    if (rc) return lmdb_fail("cursor", rc);
    MDB_val k = val_of(start.p, start.len), v;
    int stop = 0;
    for (rc = mdb_cursor_get(c, &k, &v, start.len ? MDB_SET_RANGE : MDB_FIRST); rc == 0 && !stop;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        stop = fn(ctx, (gd_str){k.mv_data, (uint32_t)k.mv_size},
                  (gd_str){v.mv_data, (uint32_t)v.mv_size});
    mdb_cursor_close(c);
    return rc && rc != MDB_NOTFOUND ? lmdb_fail("scan", rc) : GD_OK;
}

size_t gd_store_size(gd_store *s)
{
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st)) return 0;
    return (size_t)(info.me_last_pgno + 1) * st.ms_psize;
}
