/*
 * pg_duet.c — module entry point: each concern registers its settings, hooks and workers here.
 *
 * Settings live under "duet."; the prefix is reserved once every concern has defined its own,
 * so a typo such as SET duet.tennant is an error rather than a silently ignored placeholder.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "monitor.h"
#include "alertmanager.h"
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
	duet_alertmanager_init();	/* alerts to Alertmanager: settings, the sender's wake-up */
	duet_ask_init();			/* ask: duet_ask settings */
	duet_monitor_init();		/* monitor: counters for Prometheus and duet.health */
	duet_pipelines_init();		/* pipelines: settings, the wake latch, the pipeline scheduler */
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


/*
 * Whether the extension's SQL objects in this database are the library's version (after a new
 * library is installed and before ALTER EXTENSION pg_duet UPDATE they are older). In a
 * transaction; reads pg_extension, which everyone may read.
 */
bool
duet_sql_is_current(void)
{
	Oid			ext = get_extension_oid("pg_duet", true);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		current = false;

	if (!OidIsValid(ext))
		return false;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		v = heap_getattr(tup, Anum_pg_extension_extversion, RelationGetDescr(rel), &isnull);

		current = !isnull && strcmp(TextDatumGetCString(v), PG_DUET_VERSION) == 0;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return current;
}

/*
 * Check hook of duet.ask_log_retention_days and duet.rules_history_retention. Before 0.2.0 they
 * were a bare number of days; now they are minutes, so a line such as "= 90" left in
 * postgresql.conf would mean 90 minutes and prune nearly everything. Every retention shorter than
 * a day is refused with the way to write it instead (0, where allowed, keeps everything).
 */
bool
duet_check_retention(int *newval, void **extra, GucSource source)
{
	if (*newval > 0 && *newval < DUET_MINS_PER_DAY)
	{
		GUC_check_errdetail("Retention settings are in minutes since pg_duet 0.2.0 and are at least one day; "
							"a value without a unit is minutes.");
		GUC_check_errhint("Write the retention with its unit, for example '90d'.");
		return false;
	}
	return true;
}
