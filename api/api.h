/* api.h -- the HTTP API of SPEC §8 on libmicrohttpd.
 *
 * The API only reads: pull queries run in LMDB read transactions, push
 * streams read the hub's rings, metrics and health come from the ingest
 * counters (atomics). Nothing here can make ingest wait. */
#ifndef GD_API_H
#define GD_API_H

#include "../ingest/ingest.h"

typedef struct gd_api gd_api;

/* Starts serving on cfg->listen_host:listen_port; push streams come from
 * hub. reloads counts the SIGHUPs received: each asks for the API keys to
 * be read again. */
int gd_api_start(gd_api **out, const gd_config *cfg, gd_store *store, gd_catalog *cat, gd_counters *counters,
                 gd_hub *hub, const _Atomic unsigned *reloads);
void gd_api_stop(gd_api *api);

#endif
