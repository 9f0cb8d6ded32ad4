/*
 * config.c — the Config Service's entry point: settings, shared memory and module init.
 */
#include "postgres.h"

#include "change_epoch.h"
#include "pg_duet.h"
#include "tenant.h"

void
duet_config_init(void)
{
	duet_tenant_init();
	duet_epoch_init();
}
