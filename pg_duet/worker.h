/*
 * worker.h — the one skeleton every pg_duet background worker uses (worker.c).
 *
 * Modelled on PostgreSQL's worker_spi and autoprewarm: the standard signal handlers (die,
 * SignalHandlerForConfigReload, procsignal_sigusr1_handler), a connection with the pinned search
 * path, a memory context reset every loop, latch waits that exit on postmaster death, and one
 * place that fills BackgroundWorker to register (static) or start (dynamic) a worker.
 */
#ifndef DUET_WORKER_H
#define DUET_WORKER_H

#include "postgres.h"

#include "postmaster/bgworker.h"

/* What a worker is: everything duet_worker_register/duet_worker_start put in BackgroundWorker. */
typedef struct DuetWorkerSpec
{
	const char *function;		/* bgw_function_name, exported by pg_duet */
	const char *name;			/* bgw_name */
	const char *type;			/* bgw_type; NULL = name */
	bool		connect;		/* needs a database connection */
	int			restart_s;		/* bgw_restart_time; BGW_NEVER_RESTART for dynamic children */
	Datum		main_arg;
	const void *extra;			/* copied into bgw_extra */
	Size		extra_len;
} DuetWorkerSpec;

/* How a worker takes SIGTERM. */
typedef enum DuetWorkerStop
{
	DUET_WORKER_DIE,			/* die(): the next CHECK_FOR_INTERRUPTS ends it, mid-batch too */
	DUET_WORKER_DRAIN			/* ShutdownRequestPending: it finishes what it holds, then exits */
} DuetWorkerStop;

/* Registration (postmaster, shared_preload_libraries): a static worker. */
extern void duet_worker_register(const DuetWorkerSpec *spec);

/*
 * A dynamic worker, notifying this process; the handle is in TopMemoryContext (NULL, with the
 * WARNING or LOG given by quiet, when no slot is free).
 */
extern BackgroundWorkerHandle *duet_worker_start(const DuetWorkerSpec *spec, bool quiet);

/*
 * A scheduler's one-shot run in one database: starts function (of pg_duet) connected to dbname,
 * backend type type, and waits until it has finished. Nothing happens when no slot is free
 * (duet_worker_start says so).
 */
extern void duet_worker_run_in_database(const char *function, const char *type, const char *dbname);

/* In a worker's main: signals, then (when dbname or dboid) the connection and search path. */
extern void duet_worker_init(DuetWorkerStop stop);
extern void duet_worker_connect(const char *dbname, Oid dboid);	/* neither: shared catalogs only */

/*
 * Whether a database of duet.databases exists (any connection, no transaction open); who says
 * once, at LOG, that it skips one that does not, and again only after it existed meanwhile.
 */
extern bool duet_worker_database_exists(const char *dbname, const char *who);

/* The per-loop context, reset and made current by duet_worker_loop(). */
extern MemoryContext duet_worker_loop_context(const char *name);

/*
 * Top of every loop: serve interrupts (die ends here), reload the configuration on SIGHUP (true
 * in *reloaded), reset and switch to cxt. Returns false once a DRAIN worker was asked to stop.
 */
extern bool duet_worker_loop(MemoryContext cxt, bool *reloaded);

/* Waits for the latch or timeout_ms (exits on postmaster death), then serves interrupts. */
extern void duet_worker_wait(long timeout_ms);

/* Whether a DRAIN worker was asked to stop (always false for DIE workers, which just end). */
extern bool duet_worker_stopping(void);

#endif							/* DUET_WORKER_H */
