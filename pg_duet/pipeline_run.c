/*
 * pipeline_run.c — one run of a pipeline, exactly once.
 *
 * A run is three steps in one transaction (a subtransaction of the caller's, so a failure can be
 * recorded after it was rolled back):
 *
 *   1. as the extension owner: lock the pipeline's row (FOR UPDATE: runs of one pipeline are
 *      serialized, so a target sequence assigned during a run is commit-ordered for the next
 *      stage) and, inside the subtransaction, generate the run's statement
 *      (duet.duet_pipeline_sql: a pipeline whose table was dropped fails alone, recorded);
 *   2. as the pipeline's owner, restricted, under its tenant (duet.tenant) and row-level
 *      security, within duet.pipeline_run_timeout: the statement reads the rows past the
 *      position, transforms, checks and writes them, and returns the figures, the new position
 *      and the quarantined rows;
 *   3. as the extension owner: duet.duet_pipeline_commit stores the position, the quarantine,
 *      the outbox rows and the history.
 *
 * Everything commits together or not at all: a crash (kill -9) at any moment leaves the
 * position where the target is, so no row is lost or written twice. A fail expectation raises in
 * step 2, which rolls back steps 2 and 3; duet.duet_pipeline_failed then records why.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "pg_duet.h"
#include "pipeline.h"

/* The statement's result columns (duet.duet_pipeline_sql). */
enum
{
	R_IN, R_OUT, R_DROPPED, R_FAILURES, R_POSITION, R_QUARANTINE, R_FAIL, R_REPLAYED,
	R_PUBLISHED, R_DRIFT, R_SCHEMA, R_MEMBERS, R_NCOLS
};

static const char *const kind_names[] = {"incremental", "backfill", "replay"};

typedef struct Run
{
	int64		id;
	PipelineKind kind;
	const char *lo,
			   *hi,
			   *part;
	bool		skip_locked;
	MemoryContext cxt;			/* what outlives SPI */
	/* step 1 */
	bool		found;
	Oid			owner;
	char	   *tenant;
	char	   *name;
	char	   *state;
	int			batch_size;
	Datum		position;
	Datum		schema;
	bool		schema_null;
	char	   *sql;
	char	   *tail_sql;		/* incremental: the statement when the backlog fits one batch */
	char	   *count_sql;		/* incremental: counts the backlog up to one batch and one */
	/* step 2 */
	Datum		result[R_NCOLS];
	bool		result_null[R_NCOLS];
} Run;

static char *
getvalue_copy(Run *r, int col)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(r->cxt, v) : NULL;
}

/* Step 1, as the extension owner. */
static void
fetch_pipeline(void *arg)
{
	Run		   *r = arg;
	Datum		values[1] = {Int64GetDatum(r->id)};
	Oid			types[1] = {INT8OID};
	bool		isnull;
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(psprintf("SELECT (p.owner)::pg_catalog.oid, p.tenant, p.name, p.state, p.batch_size, "
										 "p.position, p.drift_schema "
										 "FROM duet.pipelines p WHERE p.id OPERATOR(pg_catalog.=) $1 FOR UPDATE%s",
										 r->skip_locked ? " SKIP LOCKED" : ""),
								1, types, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pipeline lookup failed: %s", SPI_result_code_string(ret));
	r->found = SPI_processed == 1;
	if (r->found)
	{
		MemoryContext old;

		r->owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		r->tenant = getvalue_copy(r, 2);
		r->name = getvalue_copy(r, 3);
		r->state = getvalue_copy(r, 4);
		r->batch_size = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
		old = MemoryContextSwitchTo(r->cxt);
		r->position = datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull), false, -1);
		r->schema = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &r->schema_null);
		if (!r->schema_null)
			r->schema = datumCopy(r->schema, false, -1);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

/*
 * The run's statement, as the extension owner: generated from the pipeline's current definition
 * (inside the run's subtransaction, so a pipeline whose table was dropped or changed fails alone).
 */
static void
generate_sql(void *arg)
{
	Run		   *r = arg;
	Datum		values[2] = {Int64GetDatum(r->id), CStringGetTextDatum(kind_names[r->kind])};
	Oid			types[2] = {INT8OID, TEXTOID};
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("SELECT duet.duet_pipeline_sql(p, $2), "
								"CASE WHEN $2 OPERATOR(pg_catalog.=) 'incremental' THEN duet.duet_pipeline_sql(p, 'tail') END, "
								"CASE WHEN $2 OPERATOR(pg_catalog.=) 'incremental' THEN duet.duet_pipeline_sql(p, 'count') END "
								"FROM duet.pipelines p WHERE p.id OPERATOR(pg_catalog.=) $1",
								2, types, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pipeline statement generation failed: %s", SPI_result_code_string(ret));
	r->sql = getvalue_copy(r, 1);
	r->tail_sql = getvalue_copy(r, 2);
	r->count_sql = getvalue_copy(r, 3);
	SPI_finish();
}

/* Step 2, as the pipeline's owner under its tenant. */
void
pipeline_pin_parse_settings(void)
{
	(void) set_config_option("standard_conforming_strings", "on", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static void
execute_run(void *arg)
{
	Run		   *r = arg;
	Oid			types[7] = {JSONBOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, JSONBOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', 'n', 'n', 'n', ' ', 'n'};
	MemoryContext old;
	const char *sql;
	int			ret;
	int			i;

	/* Inside duet_run_privileged's GUC nest level: undone when the section ends. */
	(void) set_config_option("duet.tenant", r->tenant, PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	pipeline_pin_parse_settings();

	values[0] = r->position;
	values[1] = Int32GetDatum(r->batch_size);
	if (r->kind != PIPELINE_INCREMENTAL)
		nulls[1] = 'n';			/* a backfill reads its whole range, a replay every entry */
	if (r->lo)
	{
		values[2] = CStringGetTextDatum(r->lo);
		nulls[2] = ' ';
	}
	if (r->hi)
	{
		values[3] = CStringGetTextDatum(r->hi);
		nulls[3] = ' ';
	}
	if (r->part)
	{
		values[4] = CStringGetTextDatum(r->part);
		nulls[4] = ' ';
	}
	values[5] = Int64GetDatum(r->id);
	if (!r->schema_null)
	{
		values[6] = r->schema;
		nulls[6] = ' ';
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	sql = r->sql;
	if (r->count_sql)
	{
		/*
		 * A backlog that fits one batch is read whole, without sorting it to cut a batch: the
		 * same rows, since every row past the position is read (one committed meanwhile too).
		 */
		bool		isnull;

		ret = SPI_execute_with_args(r->count_sql, 2, types, values, nulls, true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "pipeline \"%s\" backlog count failed: %s", r->name, SPI_result_code_string(ret));
		if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) <= r->batch_size)
			sql = r->tail_sql;
	}
	ret = SPI_execute_with_args(sql, 7, types, values, nulls, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1 || SPI_tuptable->tupdesc->natts != R_NCOLS)
		elog(ERROR, "pipeline \"%s\" statement failed: %s", r->name, SPI_result_code_string(ret));
	old = MemoryContextSwitchTo(r->cxt);
	for (i = 0; i < R_NCOLS; i++)
	{
		Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, i);
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1,
									  &r->result_null[i]);

		r->result[i] = r->result_null[i] ? (Datum) 0 : datumCopy(d, att->attbyval, att->attlen);
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
}

static int64
result_int8(Run *r, int col)
{
	return r->result_null[col] ? 0 : DatumGetInt64(r->result[col]);
}

/* Step 3, as the extension owner. */
static void
commit_run(Run *r, TimestampTz started)
{
	Oid			types[14] = {INT8OID, TEXTOID, TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID, JSONBOID,
	JSONBOID, JSONBOID, INT8ARRAYOID, JSONBOID, JSONBOID, JSONBOID, JSONBOID};
	Datum		values[14];
	char		nulls[14];
	static const int cols[] = {R_FAILURES, R_POSITION, R_QUARANTINE, R_REPLAYED, R_PUBLISHED,
	R_DRIFT, R_SCHEMA, R_MEMBERS};
	int			i;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(r->id);
	values[1] = CStringGetTextDatum(kind_names[r->kind]);
	values[2] = TimestampTzGetDatum(started);
	values[3] = Int64GetDatum(result_int8(r, R_IN));
	values[4] = Int64GetDatum(result_int8(r, R_OUT));
	values[5] = Int64GetDatum(result_int8(r, R_DROPPED));
	for (i = 0; i < lengthof(cols); i++)
	{
		values[6 + i] = r->result[cols[i]];
		nulls[6 + i] = r->result_null[cols[i]] ? 'n' : ' ';
	}
	(void) duet_run_as_owner("SELECT duet.duet_pipeline_commit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
							 "$11, $12, $13, $14)", 14, types, values, nulls);
}

int64
pipeline_run(int64 id, PipelineKind kind, const char *lo, const char *hi, const char *part,
			 bool skip_locked, PipelineOnError on_error, bool *full, char **error)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Run		   *r = palloc0(sizeof(Run));
	TimestampTz started = GetCurrentTimestamp();
	volatile TimestampTz previous = 0;
	volatile bool armed = false;
	int64		rows_in;

	r->id = id;
	r->kind = kind;
	r->lo = lo;
	r->hi = hi;
	r->part = part;
	r->skip_locked = skip_locked;
	r->cxt = caller;
	if (full)
		*full = false;
	if (error)
		*error = NULL;

	duet_run_privileged(duet_extension_owner(), NULL, fetch_pipeline, r);
	if (!r->found || (kind == PIPELINE_INCREMENTAL && strcmp(r->state, "active") != 0))
		return 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	if (duet_pipeline_run_timeout_ms > 0)
	{
		TimestampTz prev;

		armed = duet_deadline_arm(duet_pipeline_run_timeout_ms, &prev);
		previous = prev;
	}
	PG_TRY();
	{
		duet_run_privileged(duet_extension_owner(), NULL, generate_sql, r);
		duet_run_privileged(r->owner, DUET_USER_SEARCH_PATH, execute_run, r);
		if (!r->result_null[R_FAIL])
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("pipeline \"%s\" stopped: %s", r->name, TextDatumGetCString(r->result[R_FAIL])),
					 errdetail("A fail expectation rejects the batch; nothing of it was written."),
					 errhint("Fix the source row or the expectation (duet_pipeline_alter), then duet_pipeline_resume().")));
		commit_run(r, started);
		if (armed)
			duet_deadline_disarm(previous);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		if (armed)
			duet_deadline_disarm(previous);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		if (on_error == PIPELINE_RAISE)
		{
			edata->context = NULL;
			ReThrowError(edata);
		}
		{
			Oid			types[4] = {INT8OID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
			Datum		values[4] = {Int64GetDatum(id), CStringGetTextDatum(kind_names[kind]),
			TimestampTzGetDatum(started), CStringGetTextDatum(edata->message)};

			(void) duet_run_as_owner("SELECT duet.duet_pipeline_failed($1, $2, $3, $4)", 4, types,
									 values, NULL);
		}
		if (error)
			*error = edata->message;
		return -1;
	}
	PG_END_TRY();

	rows_in = result_int8(r, R_IN);
	if (full)
		*full = kind == PIPELINE_INCREMENTAL && rows_in >= r->batch_size;
	return rows_in;
}
