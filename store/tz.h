/* tz.h -- time zones for SQL's time functions: a fixed offset, or a zone
 * of the IANA database read from its TZif file (tz.c says how and why). */
#ifndef GD_TZ_H
#define GD_TZ_H

#include "../server/util.h"

typedef struct gd_zone gd_zone;

/* The zone named name: `UTC`, `GMT`, `Z`, an offset (`+05:30`, `UTC-08`,
 * `+0100`), or an IANA name (`America/Los_Angeles`) read from
 * GD_ZONEINFO_DIR. It is allocated in a, and immutable, so any thread may
 * read it. GD_OK, or GD_ERR for a name that is none of these. */
int gd_zone_load(gd_str name, gd_arena *a, const gd_zone **out);
/* The zone's offset from UTC, in seconds, at the instant utc_s. */
int gd_zone_offset(const gd_zone *z, int64_t utc_s);
/* Its abbreviation then (PST, CEST; UTC or +05:30 for a fixed offset). */
const char *gd_zone_abbr(const gd_zone *z, int64_t utc_s);
/* The instant (seconds) at which the zone's clocks read local_s: in a gap
 * (spring forward) the time after it, in an overlap the earlier instant,
 * as java.time resolves a local time. */
int64_t gd_zone_to_utc(const gd_zone *z, int64_t local_s);

#define GD_ZONEINFO_DIR "/usr/share/zoneinfo"

#endif
