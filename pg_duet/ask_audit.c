/*
 * ask_audit.c — the ask audit that survives: a queue in shared memory, drained into duet.ask_log
 * by a background worker of the database, in transactions of its own.
 *
 * A row written by the asking backend would share the caller's transaction: a failed or rejected
 * ask ends in an ERROR and its row would roll back with it, and a ROLLBACK of the caller's
 * transaction, or the end of its session, would undo even a successful ask's row. So the backend
 * only copies the row into the queue (under an LWLock, no catalog access) and sets the worker's
 * latch; the worker inserts it and its usage (ask_store.c) and commits. What is recorded:
 *
 *   - every ask that returns (ok, cached): at its end;
 *   - every ask that raises (rejected, failed, over_budget, cancelled by pg_cancel_backend or a
 *     timeout): in the PG_CATCH of the SQL entry points (duet_audit_fail), before the re-throw;
 *   - an ask whose session ends during it (pg_terminate_backend, client gone: FATAL does not unwind
 *     through PG_CATCH): by a before_shmem_exit callback, as cancelled.
 *
 * The queue has AUDIT_SLOTS rings, one per database with a worker; duet.ask_audit_queue_size is
 * split between them. A worker is started on demand by the first backend that queues a row for its
 * database (a dynamic background worker, BackgroundWorkerInitializeConnectionByOid), stays while
 * rows come, exits after AUDIT_IDLE_EXIT_MS of idleness with its ring empty, and is started again
 * by the next row. A shutdown request makes it drain its ring before it exits. The ring's tail
 * moves only after the worker's transaction committed: a worker that fails leaves the rows for the
 * next one (a row that cannot be inserted at all is reported in the server log and skipped).
 *
 * Without shared memory (pg_duet not in shared_preload_libraries), with every ring taken by other
 * databases, or with the ring full, ask_store.c falls back to writing in the caller's transaction
 * (and, for an ask that raises, to the next write of the session), as before.
 *
 * A crash of the server (a backend killed with SIGKILL makes the postmaster reinitialize shared
 * memory) loses rows still queued: at most what arrived during the last batch's insert.
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ask.h"
#include "monitor.h"
#include "pg_duet.h"
#include "worker.h"

#define AUDIT_SLOTS			4
#define AUDIT_IDLE_EXIT_MS	(5 * 60 * 1000)
#define AUDIT_RESTART_MS	10000	/* a start not seen running after this is tried again */
#define AUDIT_BATCH_BYTES	(256 * 1024)
/* What of a row's long texts the queue carries; the question is at most 4000 bytes already. */
#define AUDIT_MAX_SQL		32768
#define AUDIT_MAX_ERROR		4096

PGDLLEXPORT void duet_ask_audit_main(Datum arg);

int			duet_ask_audit_queue_kb = 1024;

typedef struct AuditSlot
{
	Oid			dboid;			/* InvalidOid: free */
	pid_t		pid;			/* the worker, 0 when none runs */
	bool		starting;
	TimestampTz start_requested;
	Latch	   *latch;
	uint64		head;			/* bytes ever queued (monotonic, never reset) */
	uint64		tail;			/* bytes ever committed by the worker */
	uint64		rows_queued;
	uint64		rows_written;
	uint64		rows_skipped;
} AuditSlot;

typedef struct AuditShared
{
	LWLock	   *lock;
	ConditionVariable drained;	/* broadcast whenever a tail moves */
	Size		ring_bytes;
	AuditSlot	slots[AUDIT_SLOTS];
	char		data[FLEXIBLE_ARRAY_MEMBER];	/* AUDIT_SLOTS rings of ring_bytes */
} AuditShared;

static AuditShared *audit = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
audit_ring_bytes(void)
{
	return MAXALIGN(((Size) duet_ask_audit_queue_kb * 1024) / AUDIT_SLOTS);
}

static Size
audit_shmem_size(void)
{
	return add_size(offsetof(AuditShared, data), mul_size(audit_ring_bytes(), AUDIT_SLOTS));
}

static void
audit_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(audit_shmem_size()));
	RequestNamedLWLockTranche("pg_duet_ask_audit", 1);
}

static void
audit_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	audit = ShmemInitStruct("pg_duet_ask_audit", audit_shmem_size(), &found);
	if (!found)
	{
		memset(audit, 0, offsetof(AuditShared, data));
		audit->lock = &(GetNamedLWLockTranche("pg_duet_ask_audit"))->lock;
		ConditionVariableInit(&audit->drained);
		audit->ring_bytes = audit_ring_bytes();
	}
	LWLockRelease(AddinShmemInitLock);
}

void
duet_audit_shmem_init(void)
{
	/* A PGC_POSTMASTER setting and shared memory exist only when preloaded (else: no queue, no limits). */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("duet.ask_audit_queue_size",
							"Shared memory for ask audit rows on their way to duet.ask_log.",
							"Split between up to 4 databases; a full queue makes asks write their row "
							"in their own transaction instead.",
							&duet_ask_audit_queue_kb, 1024, 64, 1024 * 1024, PGC_POSTMASTER,
							GUC_UNIT_KB, NULL, NULL, NULL);
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = audit_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = audit_shmem_startup;
}

/* ---- serialization ------------------------------------------------------------------ */

static void
put_str(StringInfo buf, const char *s, int max)
{
	int32		len = s ? (int32) Min(strlen(s), (size_t) max) : -1;

	/* Cut at a character boundary: the row must stay valid in the database encoding. */
	if (s && len < (int32) strlen(s))
		len = pg_mbcliplen(s, len, len);
	appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
	if (len > 0)
		appendBinaryStringInfo(buf, s, len);
}

static char *
get_str(const char **p)
{
	int32		len;
	char	   *s;

	memcpy(&len, *p, sizeof(len));
	*p += sizeof(len);
	if (len < 0)
		return NULL;
	s = palloc(len + 1);
	memcpy(s, *p, len);
	s[len] = '\0';
	*p += len;
	return s;
}

#define PUT(buf, v) appendBinaryStringInfo((buf), (char *) &(v), sizeof(v))
#define GET(p, v) (memcpy(&(v), (p), sizeof(v)), (p) += sizeof(v))

static void
serialize(StringInfo buf, const AskLogRow *r)
{
	uint32		len = 0;

	PUT(buf, len);				/* patched below */
	PUT(buf, r->at);
	PUT(buf, r->attempts);
	PUT(buf, r->corrections);
	PUT(buf, r->tokens_in);
	PUT(buf, r->tokens_out);
	PUT(buf, r->latency_ms);
	PUT(buf, r->cost);
	put_str(buf, r->tenant, NAMEDATALEN * 4);
	put_str(buf, r->role, NAMEDATALEN);
	put_str(buf, r->target, NAMEDATALEN * 2);
	put_str(buf, r->question, AUDIT_MAX_SQL);
	put_str(buf, r->sql, AUDIT_MAX_SQL);
	put_str(buf, r->provider, NAMEDATALEN * 2);
	put_str(buf, r->model, NAMEDATALEN * 4);
	put_str(buf, r->status, 32);
	put_str(buf, r->error, AUDIT_MAX_ERROR);
	len = buf->len;
	memcpy(buf->data, &len, sizeof(len));
}

static AskLogRow *
deserialize(const char *p)
{
	AskLogRow  *r = palloc0(sizeof(AskLogRow));

	p += sizeof(uint32);
	GET(p, r->at);
	GET(p, r->attempts);
	GET(p, r->corrections);
	GET(p, r->tokens_in);
	GET(p, r->tokens_out);
	GET(p, r->latency_ms);
	GET(p, r->cost);
	r->tenant = get_str(&p);
	r->role = get_str(&p);
	r->target = get_str(&p);
	r->question = get_str(&p);
	r->sql = get_str(&p);
	r->provider = get_str(&p);
	r->model = get_str(&p);
	r->status = get_str(&p);
	r->error = get_str(&p);
	return r;
}

static char *
ring(int slot)
{
	return audit->data + (Size) slot * audit->ring_bytes;
}

/* Copies n bytes into / out of a ring at a monotonic position, wrapping. */
static void
ring_write(int slot, uint64 pos, const char *src, Size n)
{
	Size		off = pos % audit->ring_bytes;
	Size		first = Min(n, audit->ring_bytes - off);

	memcpy(ring(slot) + off, src, first);
	if (first < n)
		memcpy(ring(slot), src + first, n - first);
}

static void
ring_read(int slot, uint64 pos, char *dst, Size n)
{
	Size		off = pos % audit->ring_bytes;
	Size		first = Min(n, audit->ring_bytes - off);

	memcpy(dst, ring(slot) + off, first);
	if (first < n)
		memcpy(dst + first, ring(slot), n - first);
}

/* ---- queueing (backends) ------------------------------------------------------------ */

static void
start_worker(int slot)
{
	BackgroundWorkerHandle *handle;
	char		name[BGW_MAXLEN];
	DuetWorkerSpec spec = {
		.function = "duet_ask_audit_main",
		.name = name,
		.type = "pg_duet ask audit",
		.connect = true,
		.restart_s = BGW_NEVER_RESTART,
		.main_arg = Int32GetDatum(slot),
		.extra = &MyDatabaseId,
		.extra_len = sizeof(Oid),
	};

	snprintf(name, sizeof(name), "pg_duet ask audit for database %u", MyDatabaseId);
	handle = duet_worker_start(&spec, true);
	if (handle != NULL)
		pfree(handle);			/* the worker finds its ring through the slot, not the handle */
	else
	{
		LWLockAcquire(audit->lock, LW_EXCLUSIVE);
		audit->slots[slot].starting = false;
		LWLockRelease(audit->lock);
		ereport(WARNING,
				(errmsg("could not start the pg_duet ask audit worker"),
				 errdetail("Audit rows stay queued until a worker starts."),
				 errhint("Raise max_worker_processes.")));
	}
}

bool
duet_audit_enqueue(const AskLogRow *r)
{
	StringInfoData buf;
	int			slot = -1;
	int			free_slot = -1;
	bool		need_start = false;
	Latch	   *latch = NULL;
	TimestampTz now = GetCurrentTimestamp();

	if (audit == NULL || !IsUnderPostmaster || MyDatabaseId == InvalidOid)
		return false;
	initStringInfo(&buf);
	serialize(&buf, r);
	if ((Size) buf.len > audit->ring_bytes / 2)
		return false;

	LWLockAcquire(audit->lock, LW_EXCLUSIVE);
	for (int i = 0; i < AUDIT_SLOTS && slot < 0; i++)
	{
		if (audit->slots[i].dboid == MyDatabaseId)
			slot = i;
		else if (audit->slots[i].dboid == InvalidOid && free_slot < 0)
			free_slot = i;
	}
	if (slot < 0 && free_slot >= 0)
	{
		AuditSlot  *s = &audit->slots[free_slot];

		slot = free_slot;
		s->dboid = MyDatabaseId;
		s->pid = 0;
		s->starting = false;
		s->latch = NULL;
		s->tail = s->head;		/* empty; positions stay monotonic */
	}
	if (slot >= 0)
	{
		AuditSlot  *s = &audit->slots[slot];

		if (audit->ring_bytes - (s->head - s->tail) < (Size) buf.len)
			slot = -1;			/* full: the caller falls back */
		else
		{
			ring_write(slot, s->head, buf.data, buf.len);
			s->head += buf.len;
			s->rows_queued++;
			latch = s->latch;
			if (s->pid == 0 &&
				(!s->starting || TimestampDifferenceExceeds(s->start_requested, now, AUDIT_RESTART_MS)))
			{
				s->starting = true;
				s->start_requested = now;
				need_start = true;
			}
		}
	}
	LWLockRelease(audit->lock);
	pfree(buf.data);
	if (slot < 0)
		return false;
	if (latch)
		SetLatch(latch);
	if (need_start)
		start_worker(slot);
	return true;
}

/* ---- the ask in progress ------------------------------------------------------------ */

static AskLogEntry *tracked = NULL;
static AskReply *tracked_reply = NULL;
static char *tracked_tenant = NULL;
static char *tracked_role = NULL;
static TimestampTz tracked_start = 0;
static bool exit_callback_registered = false;

static void record_tracked(const char *status, const char *error);

static void
audit_at_exit(int code, Datum arg)
{
	/* The session ends during an ask (FATAL does not pass through PG_CATCH). */
	if (tracked != NULL)
		record_tracked("cancelled", "the session ended during the ask");
}

void
duet_audit_track(AskLogEntry *e, AskReply *reply, const char *tenant, TimestampTz start)
{
	if (!exit_callback_registered)
	{
		before_shmem_exit(audit_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}
	tracked = e;
	tracked_reply = reply;
	tracked_tenant = tenant ? MemoryContextStrdup(TopMemoryContext, tenant) : NULL;
	tracked_role = MemoryContextStrdup(TopMemoryContext, GetUserNameFromId(GetUserId(), false));
	tracked_start = start;
}

void
duet_audit_untrack(void)
{
	tracked = NULL;
	tracked_reply = NULL;
	if (tracked_tenant)
		pfree(tracked_tenant);
	if (tracked_role)
		pfree(tracked_role);
	tracked_tenant = tracked_role = NULL;
}

/* No catalog access here: this runs in error recovery and at process exit. */
static void
record_tracked(const char *status, const char *error)
{
	AskLogEntry *e = tracked;
	AskReply   *rp = tracked_reply;
	AskLogRow	row = {0};

	tracked = NULL;				/* never twice, whatever happens below */
	row.at = GetCurrentTimestamp();
	row.tenant = tracked_tenant;
	row.role = tracked_role;
	row.target = (char *) e->target;
	row.question = (char *) e->question;
	row.sql = (char *) e->sql;
	row.provider = (char *) (rp && rp->provider ? rp->provider : e->provider);
	row.model = (char *) (rp && rp->model ? rp->model : e->model);
	row.attempts = rp ? rp->http_attempts : e->attempts;
	row.corrections = e->corrections;
	row.tokens_in = rp ? rp->tokens_in : e->tokens_in;
	row.tokens_out = rp ? rp->tokens_out : e->tokens_out;
	row.cost = rp ? rp->cost : e->cost;
	row.latency_ms = (double) (row.at - tracked_start) / 1000.0;
	row.status = (char *) (e->status ? e->status : status);
	row.error = (char *) (e->error ? e->error : error);
	duet_monitor_count_ask(row.tenant, row.status, row.attempts, row.corrections, row.tokens_in,
						   row.tokens_out, row.latency_ms);
	if (!duet_audit_enqueue(&row))
	{
		AskLogEntry copy = *e;

		/* No queue: the session's next log write records it (ask_store.c), if there is one. */
		copy.status = row.status;
		copy.error = row.error;
		copy.attempts = row.attempts;
		copy.tokens_in = row.tokens_in;
		copy.tokens_out = row.tokens_out;
		copy.cost = row.cost;
		copy.provider = row.provider;
		copy.model = row.model;
		copy.latency_ms = row.latency_ms;
		if (!proc_exit_inprogress)
			duet_log_defer(&copy, tracked_tenant);
	}
	duet_audit_untrack();
}

void
duet_audit_mark(const char *status)
{
	if (tracked)
		tracked->status = status;
}

void
duet_audit_fail(ErrorData *edata)
{
	const char *status = "failed";

	if (tracked == NULL)
		return;
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED || edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
		status = "cancelled";
	/* Statuses set by the ask itself (rejected, failed, over_budget) take precedence. */
	record_tracked(status, edata->message);
}

/* ---- the worker --------------------------------------------------------------------- */

static int	worker_slot = -1;

static void
worker_detach(int code, Datum arg)
{
	AuditSlot  *s;

	if (worker_slot < 0)
		return;
	s = &audit->slots[worker_slot];
	LWLockAcquire(audit->lock, LW_EXCLUSIVE);
	if (s->pid == MyProcPid)
	{
		s->pid = 0;
		s->latch = NULL;
		s->starting = false;
		if (s->head == s->tail)
			s->dboid = InvalidOid;	/* free for any database */
	}
	LWLockRelease(audit->lock);
	ConditionVariableBroadcast(&audit->drained);
}

/* Writes one batch in a transaction of its own; returns whether there was anything. */
static bool
drain_batch(void)
{
	AuditSlot  *s = &audit->slots[worker_slot];
	uint64		from,
				to;
	char	   *batch;
	MemoryContext cxt = CurrentMemoryContext;
	volatile int written = 0;
	volatile int skipped = 0;

	LWLockAcquire(audit->lock, LW_SHARED);
	from = s->tail;
	to = from;
	while (to < s->head)
	{
		uint32		len;

		ring_read(worker_slot, to, (char *) &len, sizeof(len));
		if (to > from && to + len - from > AUDIT_BATCH_BYTES)
			break;
		to += len;
	}
	batch = palloc(to - from + 1);
	ring_read(worker_slot, from, batch, to - from);
	LWLockRelease(audit->lock);
	if (to == from)
	{
		pfree(batch);
		return false;
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "writing pg_duet ask audit rows");
	for (uint64 pos = from; pos < to;)
	{
		uint32		len;
		AskLogRow  *row;

		memcpy(&len, batch + (pos - from), sizeof(len));
		row = deserialize(batch + (pos - from));
		pos += len;
		/* A row that cannot be inserted must not hold back the others: a subtransaction each. */
		BeginInternalSubTransaction(NULL);
		PG_TRY();
		{
			duet_log_insert(row);
			ReleaseCurrentSubTransaction();
			written++;
		}
		PG_CATCH();
		{
			ErrorData  *ed;

			MemoryContextSwitchTo(cxt);
			ed = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			ereport(LOG,
					(errmsg("pg_duet ask audit skipped a row of role \"%s\": %s",
							row->role ? row->role : "?", ed->message)));
			FreeErrorData(ed);
			skipped++;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
	}
	duet_log_prune_spi();
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	pfree(batch);

	LWLockAcquire(audit->lock, LW_EXCLUSIVE);
	s->tail = to;
	s->rows_written += written;
	s->rows_skipped += skipped;
	LWLockRelease(audit->lock);
	ConditionVariableBroadcast(&audit->drained);
	return true;
}

void
duet_ask_audit_main(Datum arg)
{
	Oid			dboid;
	AuditSlot  *s;
	TimestampTz idle_since;
	MemoryContext loopcxt;

	worker_slot = DatumGetInt32(arg);
	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	/*
	 * SIGTERM asks for a drain, then exit (a shutdown must not drop queued rows); interrupts are
	 * still served between batches (CHECK_FOR_INTERRUPTS) for cancels and pg_terminate_backend.
	 */
	duet_worker_init(DUET_WORKER_DRAIN);

	s = &audit->slots[worker_slot];
	LWLockAcquire(audit->lock, LW_EXCLUSIVE);
	if (s->dboid != dboid || s->pid != 0)
	{
		/* Taken over meanwhile (another worker runs, or another database now owns the ring). */
		LWLockRelease(audit->lock);
		proc_exit(0);
	}
	s->pid = MyProcPid;
	s->latch = MyLatch;
	s->starting = false;
	LWLockRelease(audit->lock);
	before_shmem_exit(worker_detach, (Datum) 0);

	duet_worker_connect(NULL, dboid);
	pgstat_report_appname("pg_duet ask audit");
	loopcxt = duet_worker_loop_context("duet ask audit");

	idle_since = GetCurrentTimestamp();
	for (;;)
	{
		bool		wrote;

		/* A drain: SIGTERM only sets duet_worker_stopping(), checked once the ring is empty. */
		(void) duet_worker_loop(loopcxt, NULL);
		ResetLatch(MyLatch);
		wrote = drain_batch();
		if (wrote)
		{
			idle_since = GetCurrentTimestamp();
			continue;
		}
		if (duet_worker_stopping())
			break;
		if (TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(), AUDIT_IDLE_EXIT_MS))
		{
			bool		empty;

			/* Leave only with the ring empty, so no row waits for a worker that will not come. */
			LWLockAcquire(audit->lock, LW_EXCLUSIVE);
			empty = s->head == s->tail;
			if (empty)
			{
				s->pid = 0;
				s->latch = NULL;
				s->dboid = InvalidOid;
			}
			LWLockRelease(audit->lock);
			if (empty)
				break;
			continue;
		}
		duet_worker_wait(AUDIT_IDLE_EXIT_MS);
	}
	proc_exit(0);
}

/* ---- SQL ---------------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(duet_ask_audit_flush);

/*
 * duet_ask_audit_flush(timeout) → boolean: waits until every audit row queued in this database
 * before the call (by any session) is committed to duet.ask_log (true), or the timeout passes
 * (false). True at once without a queue.
 */
Datum
duet_ask_audit_flush(PG_FUNCTION_ARGS)
{
	int32		timeout_ms = PG_ARGISNULL(0) ? 10000 : PG_GETARG_INT32(0);
	TimestampTz deadline;
	bool		done = false;
	int			slot = -1;
	uint64		target = 0;

	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	if (audit == NULL)
		PG_RETURN_BOOL(true);
	LWLockAcquire(audit->lock, LW_SHARED);
	for (int i = 0; i < AUDIT_SLOTS; i++)
		if (audit->slots[i].dboid == MyDatabaseId)
		{
			slot = i;
			target = audit->slots[i].head;
		}
	LWLockRelease(audit->lock);
	if (slot < 0)
		PG_RETURN_BOOL(true);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	ConditionVariablePrepareToSleep(&audit->drained);
	for (;;)
	{
		AuditSlot  *s = &audit->slots[slot];
		long		left;

		LWLockAcquire(audit->lock, LW_SHARED);
		done = s->dboid != MyDatabaseId || s->tail >= target;
		LWLockRelease(audit->lock);
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (done || left <= 0)
			break;
		(void) ConditionVariableTimedSleep(&audit->drained, Min(left, 1000), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_BOOL(done);
}

PG_FUNCTION_INFO_V1(duet_ask_audit_status);

/* duet_ask_audit_status() → the queue of this database: worker, rows queued/written/skipped, bytes waiting. */
Datum
duet_ask_audit_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[6] = {0};
	bool		nulls[6] = {true, true, true, true, true, true};
	HeapTuple	tup;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = BoolGetDatum(audit != NULL);
	nulls[0] = false;
	if (audit)
	{
		LWLockAcquire(audit->lock, LW_SHARED);
		for (int i = 0; i < AUDIT_SLOTS; i++)
		{
			AuditSlot  *s = &audit->slots[i];

			if (s->dboid != MyDatabaseId)
				continue;
			values[1] = Int32GetDatum(s->pid);
			values[2] = Int64GetDatum((int64) s->rows_queued);
			values[3] = Int64GetDatum((int64) s->rows_written);
			values[4] = Int64GetDatum((int64) s->rows_skipped);
			values[5] = Int64GetDatum((int64) (s->head - s->tail));
			nulls[1] = s->pid == 0;
			nulls[2] = nulls[3] = nulls[4] = nulls[5] = false;
		}
		LWLockRelease(audit->lock);
	}
	tup = heap_form_tuple(desc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tup));
}
