/* tz.c -- see tz.h.
 *
 * A zone is a sorted list of transitions (the UTC second from which an
 * offset holds), read from the zone's TZif file (RFC 8536) as Debian's
 * tzdata installs it: the 64-bit data of a version 2+ file, else the
 * 32-bit data of a version 1 file. The C library's localtime_r would do
 * the same only through the process-wide TZ variable, which HTTP threads
 * running queries in parallel cannot each set; so the file is read here,
 * into the caller's arena. The planner loads a zone named by a literal once,
 * when it binds the call (the zone is kept in the bound tree); a zone that
 * comes from the data is loaded for each value, into the scratch arena.
 * Past the last transition of the file (2037 in a "fat" file such as
 * Debian's) the last offset holds: the POSIX rule at the file's end, which
 * would carry daylight saving further, is not read. */
#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

struct gd_zone {
    int n;             /* transitions */
    int64_t *at;       /* the UTC second each starts at, ascending */
    int32_t *offset;   /* the offset from it on */
    const char **abbr; /* and its abbreviation (PST) */
    int32_t before;    /* the offset before the first (or always, when n == 0) */
    const char *before_abbr;
};

/* A fixed offset: UTC, GMT, Z, [UTC|GMT]+hh[:mm] */
static bool fixed_offset(gd_str tz, int *offset_s)
{
    if (!tz.len) { /* as UTC; and an empty string may have no bytes at all */
        *offset_s = 0;
        return true;
    }
    const char *p = tz.p, *end = tz.p + tz.len;
    if ((tz.len >= 3 && (!strncasecmp(p, "UTC", 3) || !strncasecmp(p, "GMT", 3)))) p += 3;
    else if (tz.len == 1 && (*p == 'Z' || *p == 'z')) p++;
    if (p == end) {
        *offset_s = 0;
        return true;
    }
    int sign = *p == '-' ? -1 : *p == '+' ? 1 : 0;
    if (!sign) return false;
    p++;
    int digits[4], nd = 0;
    for (; p < end && nd < 4; p++) {
        if (*p == ':') continue;
        if (*p < '0' || *p > '9') return false;
        digits[nd++] = *p - '0';
    }
    if (p != end || (nd != 2 && nd != 4)) return false;
    int h = digits[0] * 10 + digits[1], m = nd == 4 ? digits[2] * 10 + digits[3] : 0;
    if (h > 18 || m > 59) return false;
    *offset_s = sign * (h * 3600 + m * 60);
    return true;
}

/* An IANA name: letters, digits, `_ + - /`, no `..`, no leading `/`. */
static bool zone_name_ok(gd_str name)
{
    if (!name.len || name.len > 64 || name.p[0] == '/' || name.p[0] == '.') return false;
    for (uint32_t i = 0; i < name.len; i++) {
        char c = name.p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '+' ||
                  c == '-' || c == '/' || (c == '.' && name.p[i - 1] != '.' && name.p[i - 1] != '/');
        if (!ok) return false;
    }
    return true;
}

enum { TZIF_HEADER = 44, TZIF_MAX = 1 << 20 };

/* The counts of a TZif header at p: isutcnt, isstdcnt, leapcnt, timecnt,
 * typecnt, charcnt. */
static void tzif_counts(const unsigned char *p, uint32_t c[6])
{
    for (int i = 0; i < 6; i++) c[i] = gd_get_u32be(p + 20 + 4 * i);
}

static size_t tzif_body(const uint32_t c[6], int tsize)
{
    return (size_t)c[3] * tsize + c[3] + (size_t)c[4] * 6 + c[5] + (size_t)c[2] * (tsize + 4) + c[1] + c[0];
}

/* The transitions of the TZif data in buf, into z (allocated in a). */
static bool parse_tzif(const unsigned char *buf, size_t len, gd_arena *a, gd_zone *z)
{
    if (len < TZIF_HEADER || memcmp(buf, "TZif", 4)) return false;
    uint32_t c[6];
    tzif_counts(buf, c);
    for (int i = 0; i < 6; i++)
        if (c[i] > TZIF_MAX) return false;
    int tsize = 4;
    const unsigned char *p = buf + TZIF_HEADER;
    size_t body = tzif_body(c, 4);
    if (buf[4] >= '2') { /* skip the 32-bit data to the 64-bit header */
        if (len < TZIF_HEADER + body + TZIF_HEADER) return false;
        p += body;
        if (memcmp(p, "TZif", 4)) return false;
        tzif_counts(p, c);
        for (int i = 0; i < 6; i++)
            if (c[i] > TZIF_MAX) return false;
        p += TZIF_HEADER;
        tsize = 8;
        body = tzif_body(c, 8);
    }
    if ((size_t)(p - buf) + body > len || c[4] == 0) return false;
    const unsigned char *times = p, *idx = p + (size_t)c[3] * tsize, *types = idx + c[3], *chars = types + 6 * c[4];
    char *names = gd_arena_alloc(a, c[5] + 1); /* the abbreviations, each NUL-terminated */
    memcpy(names, chars, c[5]);
    names[c[5]] = 0;
    z->n = (int)c[3];
    z->at = gd_arena_alloc(a, sizeof *z->at * (c[3] ? c[3] : 1));
    z->offset = gd_arena_alloc(a, sizeof *z->offset * (c[3] ? c[3] : 1));
    z->abbr = gd_arena_alloc(a, sizeof *z->abbr * (c[3] ? c[3] : 1));
    for (uint32_t i = 0; i < c[3]; i++) {
        z->at[i] = tsize == 8 ? (int64_t)gd_get_u64be(times + 8 * i) : (int32_t)gd_get_u32be(times + 4 * i);
        uint8_t t = idx[i];
        if (t >= c[4] || (i && z->at[i] <= z->at[i - 1]) || types[6 * t + 5] >= c[5] + 1) return false;
        z->offset[i] = (int32_t)gd_get_u32be(types + 6 * t);
        z->abbr[i] = names + types[6 * t + 5];
    }
    /* before the first transition: the first type (RFC 8536 3.2) */
    if (types[5] >= c[5] + 1) return false;
    z->before = (int32_t)gd_get_u32be(types);
    z->before_abbr = names + types[5];
    return true;
}

int gd_zone_load(gd_str name, gd_arena *a, const gd_zone **out)
{
    gd_zone *z = gd_arena_alloc(a, sizeof *z);
    memset(z, 0, sizeof *z);
    int fixed;
    if (fixed_offset(name, &fixed)) { /* named as java.time names it: UTC, or the offset */
        char *abbr = gd_arena_alloc(a, 8);
        int o = fixed < 0 ? -fixed : fixed;
        if (fixed) snprintf(abbr, 8, "%c%02d:%02d", fixed < 0 ? '-' : '+', o / 3600 % 100, o % 3600 / 60);
        else strcpy(abbr, "UTC");
        z->before = fixed;
        z->before_abbr = abbr;
        *out = z;
        return GD_OK;
    }
    if (!zone_name_ok(name)) return GD_ERR;
    char path[128];
    snprintf(path, sizeof path, "%s/%.*s", GD_ZONEINFO_DIR, (int)name.len, name.p);
    FILE *f = fopen(path, "rb");
    if (!f) return GD_ERR;
    struct stat st;
    unsigned char *buf = NULL;
    size_t len = 0;
    if (!fstat(fileno(f), &st) && S_ISREG(st.st_mode) && st.st_size <= TZIF_MAX && (buf = malloc((size_t)st.st_size + 1)))
        len = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    bool ok = buf && parse_tzif(buf, len, a, z);
    free(buf);
    if (!ok) return GD_ERR;
    *out = z;
    return GD_OK;
}

/* The transition in force at utc_s, -1 before the first. */
static int transition_at(const gd_zone *z, int64_t utc_s)
{
    if (!z->n || utc_s < z->at[0]) return -1;
    int lo = 0, hi = z->n - 1; /* the last transition at or before utc_s */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (z->at[mid] <= utc_s) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

int gd_zone_offset(const gd_zone *z, int64_t utc_s)
{
    int i = transition_at(z, utc_s);
    return i < 0 ? z->before : z->offset[i];
}

const char *gd_zone_abbr(const gd_zone *z, int64_t utc_s)
{
    int i = transition_at(z, utc_s);
    return i < 0 ? z->before_abbr : z->abbr[i];
}

int64_t gd_zone_to_utc(const gd_zone *z, int64_t local_s)
{
    /* the offsets in force a day either side cover any transition near it */
    int64_t early = local_s - gd_zone_offset(z, local_s - 86400), late = local_s - gd_zone_offset(z, local_s + 86400);
    bool early_ok = early + gd_zone_offset(z, early) == local_s, late_ok = late + gd_zone_offset(z, late) == local_s;
    if (early_ok && late_ok) return early < late ? early : late; /* an overlap: the earlier */
    if (early_ok) return early;
    if (late_ok) return late;
    return local_s - gd_zone_offset(z, local_s - 86400); /* a gap: the earlier offset, which lands after it */
}
