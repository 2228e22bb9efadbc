/* page.c -- the built-in live page: GET / and its assets under /assets/.
 *
 * The page (api/page/index.html, app.js, style.css) and its chart library,
 * uPlot from npm at the version api/page/package-lock.json pins, are built
 * into the binary (api/page/embed.sh), so a user needs no node and no file
 * beside the binary. They are static and hold no data, so they are open
 * even with --api-keys; the page asks for a key before it reads any. */
#include <string.h>

#include "routes.h"

static const char *content_type(const char *name)
{
    const char *ext = strrchr(name, '.');
    if (!ext) return "text/plain; charset=utf-8";
    if (!strcmp(ext, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(ext, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(ext, ".css")) return "text/css; charset=utf-8";
    return "text/plain; charset=utf-8";
}

void gd_route_page(const gd_request *req, const char *name, gd_reply *r)
{
    if (req->nparams) {
        gd_reply_error(r, 400, "the page takes no parameters");
        return;
    }
    for (size_t i = 0; i < gd_page_asset_count; i++) {
        const gd_page_asset *a = &gd_page_assets[i];
        if (strcmp(a->name, name)) continue;
        r->status = 200;
        r->content_type = content_type(a->name);
        gd_buf_put(&r->body, a->data, a->len);
        return;
    }
    gd_reply_error(r, 404, "no such asset: %s", name);
}
