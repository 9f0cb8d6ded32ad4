/*
 * pg_duet.h — declarations shared between the extension's concerns.
 */
#ifndef PG_DUET_H
#define PG_DUET_H

#define PG_DUET_VERSION "0.2.0"

void		_PG_init(void);

/* duet.databases (pg_duet.c): comma-separated databases served by the background workers. */
extern char *duet_databases;

/* privileged.h: running as the extension owner or another role (the one way to switch users). */
#include "privileged.h"

/* Per-concern initialisation, called from _PG_init (pg_duet.c). */
extern void duet_calc_init(void);	/* calc_cache.c */
extern void duet_config_init(void);	/* config.c */
extern void duet_kafka_init(void);	/* kafka_shmem.c */
extern void duet_rules_init(void);	/* rules_worker.c */
extern void duet_ask_init(void);	/* ask.c */
/* metrics: extern void duet_metrics_init(void); */

#endif							/* PG_DUET_H */
