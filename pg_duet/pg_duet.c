/*
 * pg_duet.c — module entry point: each concern registers its settings, hooks and workers here.
 *
 * Settings live under "duet."; the prefix is reserved once every concern has defined its own,
 * so a typo such as SET duet.tennant is an error rather than a silently ignored placeholder.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "pg_duet.h"

PG_MODULE_MAGIC;

/* duet.databases: databases whose duet workers (Kafka consumers, outbox, rule scheduler) run. */
char	   *duet_databases = NULL;

/* Loaded by shared_preload_libraries (the workers exist), not on first use by a backend. */
bool		duet_preloaded = false;

void
_PG_init(void)
{
	duet_preloaded = process_shared_preload_libraries_in_progress;
	DefineCustomStringVariable("duet.databases",
							   "Databases in which pg_duet's background workers run.",
							   "Comma-separated database names. Kafka consumers, the outbox "
							   "publisher and the rule scheduler serve these databases.",
							   &duet_databases,
							   "postgres",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   NULL, NULL, NULL);

	/* One line per concern, in dependency order. */
	duet_calc_init();			/* calc: duet_calc() settings */
	duet_config_init();			/* config: tenants, tenant context, config service */
	duet_kafka_init();			/* kafka: settings, shared memory, the worker launcher */
	duet_rules_init();			/* rules: duet.rules_interval and the rule scheduler */
	duet_ask_init();			/* ask: duet_ask settings */
	/* metrics: duet_metrics_init(); */

	MarkGUCPrefixReserved("duet");
}

PG_FUNCTION_INFO_V1(duet_version);

/* duet_version() → the version of the loaded library, to catch a library/SQL mismatch. */
Datum
duet_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(PG_DUET_VERSION));
}

