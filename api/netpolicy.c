/* netpolicy.c -- who may talk to gamingd from a browser, and by which name.
 *
 * Two browser attacks reach a daemon on the user's own machine:
 *  - Cross-origin reads: any page the user visits can fetch() from
 *    http://127.0.0.1:8080 and read the answer if the response allows its
 *    origin. So no origin is allowed unless --cors-origins names it (or is
 *    *), and a request that carries a foreign Origin is refused outright
 *    (403), which also stops cross-origin form posts that need no preflight.
 *    A same-origin request (the built-in page's) is always allowed.
 *  - DNS rebinding: a page at evil.example whose name is made to resolve
 *    to 127.0.0.1 is same-origin with itself, so Origin checks cannot see
 *    it; its requests carry Host: evil.example. So a daemon listening on a
 *    loopback address answers only loopback Host names (localhost,
 *    127.0.0.0/8, [::1], any port) and those of --allowed-hosts; on another
 *    address Host is checked only when --allowed-hosts is given (behind a
 *    proxy or in compose gamingd is reached by a service name).
 * A request without Host (HTTP/1.0) or without Origin (not a browser, or a
 * same-origin GET) passes those checks. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "routes.h"

enum { MAX_ENTRIES = 64 };

struct gd_netpolicy {
    bool check_host;
    bool any_origin;
    char *hosts[MAX_ENTRIES], *origins[MAX_ENTRIES];
    int nhosts, norigins;
    char *lists; /* the strings above point into it */
};

static bool loopback_address(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!strcasecmp(host, "localhost")) return true;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* Splits a comma list in place into entries (spaces around them dropped). */
static int split_list(char *s, char **out, int max)
{
    int n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        size_t len = strlen(tok);
        while (len && tok[len - 1] == ' ') tok[--len] = 0;
        if (!len) continue;
        if (n == max) return -1;
        out[n++] = tok;
    }
    return n;
}

int gd_netpolicy_open(gd_netpolicy **out, const gd_config *cfg)
{
    gd_netpolicy *np = calloc(1, sizeof *np);
    size_t hl = strlen(cfg->allowed_hosts), ol = strlen(cfg->cors_origins);
    if (!np || !(np->lists = malloc(hl + ol + 2))) {
        free(np);
        return GD_ENOMEM;
    }
    char *hosts = np->lists, *origins = np->lists + hl + 1;
    memcpy(hosts, cfg->allowed_hosts, hl + 1);
    memcpy(origins, cfg->cors_origins, ol + 1);
    np->nhosts = split_list(hosts, np->hosts, MAX_ENTRIES);
    np->norigins = split_list(origins, np->origins, MAX_ENTRIES);
    if (np->nhosts < 0 || np->norigins < 0) {
        gd_error("--allowed-hosts and --cors-origins take at most %d entries each", MAX_ENTRIES);
        gd_netpolicy_free(np);
        return GD_ERR;
    }
    for (int i = 0; i < np->norigins; i++)
        if (!strcmp(np->origins[i], "*")) np->any_origin = true;
    np->check_host = loopback_address(cfg->listen_host) || np->nhosts > 0;
    *out = np;
    return GD_OK;
}

void gd_netpolicy_free(gd_netpolicy *np)
{
    if (!np) return;
    free(np->lists);
    free(np);
}

/* The name part of a Host value: "name:port" -> "name", "[::1]:80" -> "::1". */
static void host_name(const char *host, char *out, size_t cap)
{
    const char *start = host, *end;
    if (*host == '[') {
        start = host + 1;
        end = strchr(start, ']');
        if (!end) end = start + strlen(start);
    } else {
        end = strrchr(host, ':');
        if (!end || strchr(host, ':') != end) end = host + strlen(host); /* no port, or not host:port */
    }
    size_t n = (size_t)(end - start) < cap - 1 ? (size_t)(end - start) : cap - 1;
    memcpy(out, start, n);
    out[n] = 0;
}

static bool host_allowed(const gd_netpolicy *np, const char *host)
{
    char name[256];
    host_name(host, name, sizeof name);
    if (loopback_address(name)) return true;
    for (int i = 0; i < np->nhosts; i++)
        if (!strcmp(np->hosts[i], "*") || !strcasecmp(np->hosts[i], name) || !strcasecmp(np->hosts[i], host))
            return true;
    return false;
}

/* "http://HOST" or "https://HOST": the origin of a page served by this Host. */
static bool same_origin(const char *origin, const char *host)
{
    const char *rest = !strncasecmp(origin, "http://", 7) ? origin + 7 : !strncasecmp(origin, "https://", 8) ? origin + 8 : NULL;
    return rest && host && !strcasecmp(rest, host);
}

int gd_netpolicy_check(const gd_netpolicy *np, const char *host, const char *origin, gd_reply *r,
                       const char **allow_origin)
{
    *allow_origin = NULL;
    if (np->check_host && host && !host_allowed(np, host)) {
        gd_reply_error(r, 403, "Host '%s' is not served here: gamingd answers loopback names%s (add it with --allowed-hosts)",
                       host, np->nhosts ? " and those of --allowed-hosts" : "");
        return GD_ERR;
    }
    if (!origin || same_origin(origin, host)) return GD_OK;
    if (np->any_origin) {
        *allow_origin = "*";
        return GD_OK;
    }
    for (int i = 0; i < np->norigins; i++)
        if (!strcmp(np->origins[i], origin)) {
            *allow_origin = np->origins[i];
            return GD_OK;
        }
    gd_reply_error(r, 403, "cross-origin requests from '%s' are not allowed (see --cors-origins)", origin);
    return GD_ERR;
}
