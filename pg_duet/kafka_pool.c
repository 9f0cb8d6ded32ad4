/*
 * kafka_pool.c — a pool worker: serves its share of a database's consumer partition groups.
 *
 * Consumers are not processes. The supervisor runs up to duet.kafka_pool_size pool workers per
 * database (kafka_launcher.c); each reads the enabled consumers' partition groups, ordered by
 * (consumer id, group), and serves unit i when i % pool_size is its index — or, when that worker
 * is not running (no background worker slot, or it died and is not restarted yet), the next
 * running index after it. So the assignment is deterministic, a new consumer moves nobody, and a
 * dead worker's groups are taken over as soon as the supervisor sees it gone and given back when
 * it runs again: the workers re-read the assignment when woken — by the commit of a consumer change
 * (kafka_wake.c) or a change of the pool (duet_kafka_pool_supervise) — and every
 * duet.kafka_poll_interval as the fallback. Two workers never read one group at once, even while they disagree
 * about the assignment: a group is read only by the holder of its shared-memory slot.
 *
 * Fairness: a turn gives each due group at most one batch (batch_size messages), round robin.
 * Isolation: before a batch runs a target's code (triggers, defaults) that belongs to another
 * consumer than the previous batch's, the session is reset as by DISCARD ALL (settings, temporary
 * objects, prepared statements, cursors, advisory locks, sequence state, LISTEN), so nothing one
 * tenant's code leaves in the session reaches another's. Each batch runs as the consumer's owner
 * through duet_run_privileged() (kafka_ingest.c).
 *
 * The worker sleeps on its latch and on every group's queue event pipe (kafka_handle.c), with a
 * timeout only for what is due (a batch's flush interval, a retry, the fallback assignment read).
 */
#include "postgres.h"

#include <sys/resource.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/discard.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "pg_duet.h"
#include "privileged.h"
#include "worker.h"
#include "kafka_consumer.h"

#define OPEN_ERROR_BACKOFF_MS	5000

static int	my_index;
static List *consumers = NIL;	/* Consumer *, in TopMemoryContext */
static bool wait_set_stale = true;
static int32 session_consumer = 0;	/* whose target code ran last in this session */

/*
 * A library newer than the database's pg_duet SQL (a rolling restart, before ALTER EXTENSION
 * pg_duet UPDATE) writes columns and tables the old SQL lacks: wait for the update, saying so
 * once. Nothing is lost meanwhile: the offsets stay where they are.
 */
static void
wait_for_current_sql(void)
{
	bool		logged = false;

	for (;;)
	{
		bool		current;

		StartTransactionCommand();
		current = duet_sql_is_current();
		CommitTransactionCommand();
		if (current)
			return;
		if (!logged)
			ereport(LOG,
					(errmsg("Kafka consumer pool worker %d waits for ALTER EXTENSION pg_duet UPDATE: the database's pg_duet SQL is older than the library (%s)",
							my_index, PG_DUET_VERSION)));
		logged = true;
		duet_worker_wait(5000);
	}
}

/*
 * Each partition group's librdkafka client holds about ten file descriptors (its broker sockets,
 * its threads' wake-up pipes, the queue event pipe), none of them PostgreSQL's: raise the soft
 * limit to the hard one, or a worker serving a hundred groups runs out. PostgreSQL's own files stay
 * within max_files_per_process, as before.
 */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		ereport(LOG,
				(errmsg("Kafka consumer pool worker %d could not raise its open files limit: %m", my_index)));
}

void
duet_kafka_pool_session_for(Consumer *c)
{
	if (session_consumer != 0 && session_consumer != c->args.consumer_id)
	{
		DiscardStmt stmt = {.type = T_DiscardStmt,.target = DISCARD_ALL};

		StartTransactionCommand();
		DiscardCommand(&stmt, true);
		CommitTransactionCommand();
	}
	session_consumer = c->args.consumer_id;
}

/* The pool index serving unit i: i % size, or the next running one. -1 when none runs. */
static int
unit_worker(int i, int size, const bool *live)
{
	for (int j = 0; j < size; j++)
	{
		int			k = (i + j) % size;

		if (live[k])
			return k;
	}
	return -1;
}

static bool
same_unit(const DuetKafkaWorkerArgs *a, const DuetKafkaWorkerArgs *b)
{
	return a->consumer_id == b->consumer_id && a->group == b->group && a->generation == b->generation;
}

/* Reads the units, opens the ones now ours, closes the ones no longer ours. */
static void
reassign(void)
{
	bool		live[DUET_KAFKA_MAX_POOL] = {0};
	int			size = duet_kafka_pool_members(MyDatabaseId, live);
	List	   *mine = NIL;
	List	   *kept = NIL;
	int			unit = 0;
	ListCell   *lc;
	MemoryContext loopcxt = CurrentMemoryContext;	/* reset by the caller; not SPI's */
	MemoryContext oldcxt;

	if (size <= my_index)
		size = my_index + 1;	/* the supervisor has not published this size yet */
	live[my_index] = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute("SELECT id, generation, parallelism FROM duet.kafka_consumers WHERE enabled ORDER BY id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read duet.kafka_consumers");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		DuetKafkaWorkerArgs a = {0};
		int			parallelism = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3, &isnull));

		a.dboid = MyDatabaseId;
		a.consumer_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
		a.generation = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull));
		for (int g = 0; g < parallelism; g++, unit++)
		{
			a.group = g;
			if (unit_worker(unit, size, live) == my_index)
			{
				DuetKafkaWorkerArgs *copy;

				oldcxt = MemoryContextSwitchTo(loopcxt);
				copy = palloc(sizeof(a));
				*copy = a;
				mine = lappend(mine, copy);
				MemoryContextSwitchTo(oldcxt);
			}
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	/* Close what is no longer ours (uncommitted messages are read again by the next reader). */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	foreach(lc, consumers)
	{
		Consumer   *c = lfirst(lc);
		bool		wanted = false;
		ListCell   *m;

		foreach(m, mine)
			if (same_unit(&c->args, lfirst(m)))
				wanted = true;
		if (wanted)
			kept = lappend(kept, c);
		else
		{
			duet_kafka_consumer_close(c);
			wait_set_stale = true;
		}
	}
	list_free(consumers);
	consumers = kept;
	foreach(lc, mine)
	{
		DuetKafkaWorkerArgs *a = lfirst(lc);
		bool		have = false;
		ListCell   *k;

		foreach(k, consumers)
			if (same_unit(&((Consumer *) lfirst(k))->args, a))
				have = true;
		if (!have)
		{
			consumers = lappend(consumers, duet_kafka_consumer_new(a, my_index));
			wait_set_stale = true;
		}
	}
	MemoryContextSwitchTo(loopcxt);
}

/*
 * One group's turn. An error outside a batch (reading its row, assigning its partitions) is
 * the group's, not the pool's: it is reported in its status and the group is retried later.
 */
static void
turn(Consumer *c, MemoryContext loopcxt)
{
	bool		had_fd = c->event_fd[0] >= 0;

	MemoryContextSwitchTo(loopcxt);
	PG_TRY();
	{
		duet_kafka_consumer_turn(c);
	}
	PG_CATCH();
	{
		duet_kafka_consumer_failed(c, loopcxt, "turn",
								   psprintf("It is tried again in %d seconds.", OPEN_ERROR_BACKOFF_MS / 1000));
		c->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), OPEN_ERROR_BACKOFF_MS);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(loopcxt);
	MemoryContextReset(loopcxt);
	if ((c->event_fd[0] >= 0) != had_fd)
		wait_set_stale = true;
}

/*
 * Waits for the latch, a group's queue event, or what is due first; true when the latch was set
 * (a committed consumer change or a change of the pool: reassign).
 */
static bool
wait_for_work(WaitEventSet **wes, long timeout_ms)
{
	bool		latch_set = false;
	WaitEvent	events[64];
	int			n;
	int			own_clients = 0;

	if (wait_set_stale || duet_kafka_clients_changed || *wes == NULL)
	{
		ListCell   *lc;

		if (*wes)
			FreeWaitEventSet(*wes);
		*wes = CreateWaitEventSet(TopMemoryContext, 2 + list_length(consumers) + duet_kafka_client_event_count());
		AddWaitEventToSet(*wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(*wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		foreach(lc, consumers)
		{
			Consumer   *c = lfirst(lc);

			if (c->event_fd[0] >= 0)
				AddWaitEventToSet(*wes, WL_SOCKET_READABLE, c->event_fd[0], NULL, c);
			if (c->group_mode && c->rk)
				own_clients++;	/* a group member's own client */
		}
		duet_kafka_client_wait_events(*wes);
		wait_set_stale = false;
		duet_kafka_pool_set_clients(duet_kafka_client_count() + own_clients);
	}
	n = WaitEventSetWait(*wes, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch_set = true;
		}
		if ((events[i].events & WL_SOCKET_READABLE) && events[i].user_data &&
			!duet_kafka_client_event(events[i].user_data) &&	/* a client's or a lane's */
			list_member_ptr(consumers, events[i].user_data))
			duet_kafka_handle_event(events[i].user_data);	/* a group member's queue */
	}
	return latch_set;
}

void
duet_kafka_pool_main(Datum arg)
{
	DuetKafkaWorkerArgs self;
	MemoryContext loopcxt;
	WaitEventSet *wes = NULL;
	TimestampTz reassigned_at = 0;
	bool		reassign_now = true;

	memcpy(&self, MyBgworkerEntry->bgw_extra, sizeof(self));
	my_index = self.group;
	/*
	 * SIGTERM is die(): it ends the worker at the next CHECK_FOR_INTERRUPTS, inside a batch too
	 * (COPY checks per row); the batch's transaction aborts with its offsets, so the next reader
	 * reads those messages again and nothing is lost or doubled.
	 */
	duet_worker_init(DUET_WORKER_DIE);
	duet_worker_connect(NULL, self.dboid);
	raise_fd_limit();
	wait_for_current_sql();
	duet_kafka_pool_join(my_index);
	/* woken when a consumer change commits (kafka_wake.c) or the pool's membership changes */
	duet_kafka_waiter_register(DUET_WAIT_CONSUMERS | DUET_WAIT_POOL);
	loopcxt = duet_worker_loop_context("duet kafka pool");

	while (duet_worker_loop(loopcxt, NULL))
	{
		TimestampTz now = GetCurrentTimestamp();
		long		timeout;
		ListCell   *lc;

		if (reassign_now || TimestampDifferenceExceeds(reassigned_at, now, duet_kafka_poll_ms))
		{
			reassign();
			reassigned_at = now;
			reassign_now = false;
			MemoryContextReset(loopcxt);
		}
		foreach(lc, consumers)
		{
			Consumer   *c = lfirst(lc);

			if (duet_kafka_consumer_timeout(c, GetCurrentTimestamp()) == 0)
				turn(c, loopcxt);
			if (c->phase == CONSUMER_DONE)
			{
				consumers = foreach_delete_current(consumers, lc);
				duet_kafka_consumer_close(c);
				wait_set_stale = true;
			}
		}
		pgstat_report_stat(false);

		now = GetCurrentTimestamp();
		timeout = duet_kafka_poll_ms -
			(long) ((now - reassigned_at) / 1000);
		foreach(lc, consumers)
		{
			long		t = duet_kafka_consumer_timeout(lfirst(lc), now);

			if (t >= 0 && t < timeout)
				timeout = t;
		}
		if (timeout > 0)
			reassign_now = wait_for_work(&wes, timeout);	/* exits on postmaster death */
		else
		{
			if (!PostmasterIsAlive())
				proc_exit(1);	/* busy: the wait does not come round to notice it */
			if (MyLatch->is_set)	/* nor a wake-up: consumer or pool changes */
			{
				ResetLatch(MyLatch);
				reassign_now = true;
			}
		}
	}
	proc_exit(0);
}
