/* store_fixture.h -- a real LMDB store with rows in every table, for the
 * fuzz targets that run queries (pull, sql). */
#ifndef GD_STORE_FIXTURE_H
#define GD_STORE_FIXTURE_H

#include "../../ingest/window.h"

/* Opens a fresh store in /tmp with the built-in catalog and applies 600
 * activity records over two hours, three games, seven players, some with
 * purchases, through the engine's windows. Aborts on failure. */
void gd_fuzz_fill_store(gd_config *cfg, gd_catalog *cat, gd_store *store);

#endif
