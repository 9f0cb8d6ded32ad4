/*
 * pg_duet.h — declarations shared between the extension's concerns.
 */
#ifndef PG_DUET_H
#define PG_DUET_H

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "utils/guc.h"

#define PG_DUET_VERSION "0.2.0"

void		_PG_init(void);

/* duet.databases (pg_duet.c): comma-separated databases served by the background workers. */
extern char *duet_databases;

/* Whether the library was loaded by shared_preload_libraries (pg_duet.c). */
extern bool duet_preloaded;

/*
 * pg_duet.c: whether this database's pg_duet SQL is the library's version. The library serves
 * the previous version's SQL too (a rolling restart installs the library first): code that needs
 * what an update adds asks this first.
 */
extern bool duet_sql_is_current(void);

/*
 * doctor.c: why pg_duet's background workers do not serve this database (NULL when they do),
 * with the fix; and a WARNING saying so, at most once per transaction, for what needs them.
 */
extern const char *duet_workers_problem(const char **hint);
extern void duet_workers_warn(const char *what);

/*
 * spi_plan.c: *plan, prepared from sql and kept on first use (SPI connected); for fixed, fully
 * qualified statements run again and again.
 */
extern SPIPlanPtr duet_spi_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types);

/* privileged.h: running as the extension owner or another role (the one way to switch users). */
#include "privileged.h"

/*
 * deadline.c: statement_timeout's timer armed ms from now unless the statement ends sooner
 * (returns whether it was armed; disarm puts the previous deadline back), and whether it fired.
 */
extern bool duet_deadline_arm(int ms, TimestampTz *previous);
extern void duet_deadline_disarm(TimestampTz previous);
extern bool duet_deadline_fired(void);

/*
 * pg_duet.c: check hook of the retention settings, which were days without a unit before 0.2.0
 * and are minutes (GUC_UNIT_MIN, so '90d' works) at least a day long: an old bare number of days
 * is refused loudly instead of being read as minutes.
 */
#define DUET_MINS_PER_DAY (24 * 60)
extern bool duet_check_retention(int *newval, void **extra, GucSource source);

/* Per-concern initialisation, called from _PG_init (pg_duet.c). */
extern void duet_calc_init(void);	/* calc_cache.c */
extern void duet_config_init(void);	/* config.c */
extern void duet_kafka_init(void);	/* kafka_shmem.c */
extern void duet_rules_init(void);	/* rules_worker.c */
extern void duet_ask_init(void);	/* ask.c */
extern void duet_pipelines_init(void);	/* pipeline_worker.c */
/* metrics: extern void duet_metrics_init(void); */

#endif							/* PG_DUET_H */
