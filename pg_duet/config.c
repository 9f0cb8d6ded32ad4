/*
 * config.c — the Config Service's module init: its settings, the tenant context and the shared
 * change epoch. Reading is in config_cache.c, writing in config_write.c, definitions in
 * config_schema.c, the tenant context in tenant.c.
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "change_epoch.h"
#include "duet_config.h"
#include "pg_duet.h"
#include "tenant.h"

/* duet.config_history_retention: history older than this is pruned (minutes; 0 keeps all). */
int			duet_config_history_retention = 365 * 24 * 60;

void
duet_config_init(void)
{
	DefineCustomIntVariable("duet.config_history_retention",
							"How long config history is kept.",
							"Older history entries are pruned when their key is written, and by "
							"duet_config_history_prune(); the latest entry of each key is always "
							"kept. 0 keeps history forever.",
							&duet_config_history_retention,
							365 * 24 * 60, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);
	duet_tenant_init();
	duet_epoch_init();
	duet_config_cache_shmem_init();	/* counters of cache hits and misses */
}
