/*
 * monitor.h — counters for monitoring (Prometheus, duet.health), kept in shared memory.
 *
 * monitor_stats.c  the counters: rule evaluations per rule, asks per tenant and status
 * monitor.c        the duet_metrics_*() functions and their scope (who sees which tenant)
 * The config cache counts its own hits and misses (config_cache.c, duet_config_cache_counts).
 */
#ifndef DUET_MONITOR_H
#define DUET_MONITOR_H

#include "datatype/timestamp.h"

#include "tenant.h"

/* Requests the shared memory when preloaded; called from _PG_init. */
extern void duet_monitor_init(void);

/* Whether the counters exist (pg_duet in shared_preload_libraries). */
extern bool duet_monitor_available(void);

/*
 * One evaluation of a rule of this database over rows rows; error: the rule could not be
 * evaluated (its query failed, its formulas do not compile) or a row failed to evaluate.
 */
extern void duet_monitor_count_rule(int64 rule_id, int64 rows, bool error);

/*
 * One duet_ask call of this database that ended with status, for tenant (NULL: none). No catalog
 * access and no allocation: also called in error recovery and at process exit.
 */
extern void duet_monitor_count_ask(const char *tenant, const char *status, int attempts,
								   int corrections, int tokens_in, int tokens_out,
								   double latency_ms);

typedef struct MonitorRuleCount
{
	int64		rule_id;
	uint64		evaluations;
	uint64		errors;
	uint64		rows;
	TimestampTz last_at;
} MonitorRuleCount;

/* Upper bounds (seconds) of the ask latency histogram's buckets; the last bucket is +Inf. */
#define MONITOR_LATENCY_BUCKETS 9
extern const double duet_monitor_latency_bounds[MONITOR_LATENCY_BUCKETS];

typedef struct MonitorAskCount
{
	bool		has_tenant;
	char		tenant[TENANT_NAME_MAXLEN + 1];
	char		status[16];
	uint64		calls;
	uint64		attempts;
	uint64		corrections;
	uint64		tokens_in;
	uint64		tokens_out;
	double		latency_ms;
	uint64		latency_buckets[MONITOR_LATENCY_BUCKETS];	/* asks per bucket, not cumulative */
} MonitorAskCount;

/* Copies of this database's counters (palloc'd; *n entries). */
extern MonitorRuleCount *duet_monitor_rule_counts(int *n);
extern MonitorAskCount *duet_monitor_ask_counts(int *n);

/*
 * Forgets the counters of this database's rules among ids[0..n-1] (rules that no longer exist)
 * last counted before `before`: a rule created by a transaction still open is counted under an id
 * other snapshots cannot see yet, and must keep its counts.
 */
extern void duet_monitor_forget_rules(const int64 *ids, int n, TimestampTz before);

/* Evaluations and asks not counted because the tables were full, since the server started. */
extern uint64 duet_monitor_dropped(void);

/* config_cache.c: lookups answered from the cache, read from the table, and read past it. */
extern void duet_config_cache_counts(uint64 *hits, uint64 *misses, uint64 *bypasses);

#endif							/* DUET_MONITOR_H */
