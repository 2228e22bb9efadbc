/* request.c -- a request's path and query string, decoded by gamingd itself.
 *
 * libmicrohttpd's own argument parsing keeps a record per parameter in the
 * connection's small memory pool, cuts a value short at a decoded %00,
 * leaves a malformed %zz as it stands, and when the pool runs out (a few
 * hundred parameters) answers nothing at all. So the server hands the raw
 * request target (libmicrohttpd's URI log callback sees it before any
 * parsing) to gd_request_parse, which decodes it strictly and within fixed
 * limits; the server then hides the query string from libmicrohttpd.
 *
 * Decoding: %XX with two hex digits, '+' as a space in the query (HTML
 * forms), and the result must be UTF-8 without NUL bytes or control
 * characters; anything else is a 400 that says which part is wrong. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"

static int refuse(gd_request *req, int status, const char *fmt, const char *what)
{
    snprintf(req->error, sizeof req->error, fmt, what);
    return status;
}

/* Decodes s[0, n) into *out (NUL-terminated, advanced past it). what names
 * the part for the error message. */
static int decode_part(gd_request *req, const char *s, size_t n, bool query, char **out, const char *what)
{
    char *o = *out, *start = o;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < n ? gd_hex_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? gd_hex_value(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) return refuse(req, 400, "malformed percent-encoding in %s (%%XX takes two hex digits)", what);
            c = (unsigned char)(hi << 4 | lo);
            if (c == 0) return refuse(req, 400, "%s holds a NUL byte (%%00)", what);
            i += 2;
        } else if (c == '+' && query) {
            c = ' ';
        }
        if (c < 0x20 || c == 0x7F) return refuse(req, 400, "%s holds a control character", what);
        *o++ = (char)c;
    }
    *o++ = 0;
    if (!gd_utf8_valid(start, (size_t)(o - start - 1))) return refuse(req, 400, "%s is not valid UTF-8", what);
    *out = o;
    return GD_OK;
}

int gd_request_parse(gd_request *req, const char *target)
{
    memset(req, 0, sizeof *req);
    size_t len = strlen(target);
    if (len > GD_MAX_URI) {
        snprintf(req->error, sizeof req->error, "the request target is %zu bytes; at most %d are accepted", len,
                 GD_MAX_URI);
        return 414;
    }
    /* decoded text is never longer than the raw text, plus a NUL per part */
    req->storage = malloc(len + 2 * GD_MAX_PARAMS + 2);
    if (!req->storage) return refuse(req, 500, "%s", "out of memory");
    char *o = req->storage;
    const char *q = strchr(target, '?');
    size_t path_len = q ? (size_t)(q - target) : len;
    req->path = o;
    int rc = decode_part(req, target, path_len, false, &o, "the path");
    if (rc || !q) return rc;
    for (const char *p = q + 1; *p;) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n) { /* "a&&b" has an empty part: skipped */
            if (req->nparams == GD_MAX_PARAMS) {
                snprintf(req->error, sizeof req->error, "too many query parameters (at most %d)", GD_MAX_PARAMS);
                return 400;
            }
            const char *eq = memchr(p, '=', n);
            size_t name_len = eq ? (size_t)(eq - p) : n;
            gd_param *prm = &req->params[req->nparams++];
            prm->name = o;
            if ((rc = decode_part(req, p, name_len, true, &o, "a parameter name"))) return rc;
            if (!*prm->name) return refuse(req, 400, "%s", "a query parameter has no name");
            if (eq) {
                prm->value = o;
                if ((rc = decode_part(req, eq + 1, n - name_len - 1, true, &o, "a parameter value"))) return rc;
            }
        }
        p += n + (amp != NULL);
    }
    return GD_OK;
}

void gd_request_free(gd_request *req)
{
    free(req->storage);
    req->storage = NULL;
}
