/* registry.c -- the Confluent Schema Registry client: two REST calls.
 *
 *   GET  /schemas/ids/{id}              a writer schema by its id
 *   POST /subjects/{subject}/versions   register a schema, learn its id
 *
 * One libcurl handle, reused so the connection stays open; basic auth from
 * --schema-registry-auth. Only the ingest thread (or `gamingd generate`)
 * calls it, and only for a schema it has not seen: the Avro layer caches
 * by id. main() runs curl_global_init before any thread starts. A registry
 * that cannot be reached is retried with a growing pause for up to
 * RETRY_FOR_MS before the call fails: a registry restart should not send
 * good records to the dead-letter topic, a registry that is gone should not
 * stop ingest for ever. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ingest.h"

/* START_TIMEOUT_MS: the PII tags read at start, which must not hold a start up */
enum { RETRY_FOR_MS = 30000, TIMEOUT_MS = 10000, START_TIMEOUT_MS = 2000 };

struct gd_registry {
    CURL *curl;
    const atomic_bool *stop; /* a retry ends when it is set */
    char url[1024];
    char auth[256];
    gd_buf body;
};

static size_t collect(char *p, size_t size, size_t n, void *userdata)
{
    gd_buf_put(userdata, p, size * n);
    return size * n;
}

int gd_registry_open(gd_registry **out, const char *url, const char *auth, const atomic_bool *stop)
{
    gd_registry *r = calloc(1, sizeof *r);
    if (!r || !(r->curl = curl_easy_init())) {
        free(r);
        return GD_ENOMEM;
    }
    size_t n = strlen(url);
    while (n && url[n - 1] == '/') n--; /* "http://host:8081/" and without the slash */
    snprintf(r->url, sizeof r->url, "%.*s", (int)n, url);
    snprintf(r->auth, sizeof r->auth, "%s", auth ? auth : "");
    r->stop = stop;
    *out = r;
    return GD_OK;
}

void gd_registry_close(gd_registry *r)
{
    if (!r) return;
    curl_easy_cleanup(r->curl);
    gd_buf_free(&r->body);
    free(r);
}

/* One request; *status is the HTTP status, 0 when the registry was not
 * reached. The response body is left in r->body, NUL-terminated. */
static void request_once(gd_registry *r, const char *path, const char *post, long timeout_ms, long *status)
{
    char url[2048];
    snprintf(url, sizeof url, "%s%s", r->url, path);
    CURL *c = r->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (r->auth[0]) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERPWD, r->auth);
    }
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: application/vnd.schemaregistry.v1+json");
    if (post) {
        headers = curl_slist_append(headers, "Content-Type: application/vnd.schemaregistry.v1+json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    gd_buf_clear(&r->body);
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    else gd_warn("schema registry %s: %s", url, curl_easy_strerror(rc));
    curl_slist_free_all(headers);
    gd_buf_putc(&r->body, 0);
}

static bool stopping(const gd_registry *r) { return r->stop && atomic_load(r->stop); }

/* Retries while the registry is unreachable or answers 5xx; -1 when the
 * daemon began to stop meanwhile. */
static long request(gd_registry *r, const char *path, const char *post)
{
    long status = 0;
    int64_t give_up = gd_mono_ns() + (int64_t)RETRY_FOR_MS * 1000000;
    for (int pause_ms = 100;; pause_ms = pause_ms < 4000 ? pause_ms * 2 : 5000) {
        request_once(r, path, post, TIMEOUT_MS, &status);
        if ((status && status < 500) || gd_mono_ns() > give_up) break;
        gd_warn("schema registry unavailable (status %ld); retrying in %d ms", status, pause_ms);
        for (int slept = 0; slept < pause_ms && !stopping(r); slept += 50) gd_sleep_ms(50);
        if (stopping(r)) return -1;
    }
    return status;
}

/* The registry's own error text, e.g. {"error_code":40403,"message":"Schema not found"}. */
static void log_failure(gd_registry *r, const char *what, long status)
{
    json_t *doc = json_loads(r->body.p, 0, NULL);
    const char *msg = doc ? json_string_value(json_object_get(doc, "message")) : NULL;
    gd_warn("schema registry: %s failed (status %ld): %s", what, status, msg ? msg : r->body.p);
    json_decref(doc);
}

int gd_registry_fetch(gd_registry *r, int32_t id, gd_buf *schema_json)
{
    char path[64];
    snprintf(path, sizeof path, "/schemas/ids/%d", (int)id);
    long status = request(r, path, NULL);
    if (status < 0) return GD_AGAIN;
    json_t *doc = status == 200 ? json_loads(r->body.p, 0, NULL) : NULL;
    const char *schema = json_string_value(json_object_get(doc, "schema"));
    if (!schema) {
        log_failure(r, path, status);
        json_decref(doc);
        return GD_ERR;
    }
    gd_buf_clear(schema_json);
    gd_buf_puts(schema_json, schema);
    json_decref(doc);
    return GD_OK;
}

static bool tagged_pii(json_t *field)
{
    size_t i;
    json_t *tag;
    json_array_foreach(json_object_get(field, "confluent:tags"), i, tag)
        if (json_is_string(tag) && !strcasecmp(json_string_value(tag), "PII")) return true;
    return false;
}

int gd_registry_pii_fields(gd_registry *r, const char *subject, void (*fn)(void *ctx, const char *field), void *ctx)
{
    char path[600];
    char *escaped = curl_easy_escape(r->curl, subject, 0);
    snprintf(path, sizeof path, "/subjects/%s/versions/latest", escaped ? escaped : subject);
    curl_free(escaped);
    long status;
    request_once(r, path, NULL, START_TIMEOUT_MS, &status);
    if (status == 404) return GD_OK; /* no schema: nothing tagged */
    json_t *doc = status == 200 ? json_loads(r->body.p, 0, NULL) : NULL;
    const char *text = json_string_value(json_object_get(doc, "schema"));
    json_t *schema = text ? json_loads(text, 0, NULL) : NULL;
    json_decref(doc);
    if (!schema) {
        log_failure(r, path, status);
        return GD_ERR;
    }
    size_t i;
    json_t *field;
    json_array_foreach(json_object_get(schema, "fields"), i, field) {
        const char *name = json_string_value(json_object_get(field, "name"));
        if (name && tagged_pii(field)) fn(ctx, name);
    }
    json_decref(schema);
    return GD_OK;
}

int gd_registry_register(gd_registry *r, const char *subject, const char *schema_json, int32_t *id)
{
    char path[600];
    char *escaped = curl_easy_escape(r->curl, subject, 0);
    snprintf(path, sizeof path, "/subjects/%s/versions", escaped ? escaped : subject);
    curl_free(escaped);
    json_t *req = json_pack("{s:s}", "schema", schema_json);
    char *post = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!post) return GD_ENOMEM;
    long status = request(r, path, post);
    free(post);
    if (status < 0) return GD_AGAIN;
    json_t *doc = status == 200 ? json_loads(r->body.p, 0, NULL) : NULL;
    json_t *jid = json_object_get(doc, "id");
    int rc = GD_OK;
    if (json_is_integer(jid)) *id = (int32_t)json_integer_value(jid);
    else {
        log_failure(r, path, status);
        rc = GD_ERR;
    }
    json_decref(doc);
    return rc;
}
