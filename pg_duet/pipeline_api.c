/*
 * pipeline_api.c — the SQL API of pipelines and the checks of what a tenant writes into them.
 *
 * The pipeline tables are written only by the extension owner. Each entry point identifies the
 * caller and its verified tenant (duet_forward_as_owner, shared with rules) and runs the internal
 * duet.duet_pipeline_*_apply function as the owner. Transforms and predicates are tenant input
 * that becomes part of generated SQL: duet_pipeline_check_expr lets through only text that parses
 * as exactly one expression, and duet_pipeline_validate plans the generated statement as the
 * caller, so nothing is stored that the caller could not run itself.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "calc_pg.h"
#include "pg_duet.h"
#include "pipeline.h"

PG_FUNCTION_INFO_V1(duet_pipeline_create);
PG_FUNCTION_INFO_V1(duet_pipeline_alter);
PG_FUNCTION_INFO_V1(duet_pipeline_pause);
PG_FUNCTION_INFO_V1(duet_pipeline_resume);
PG_FUNCTION_INFO_V1(duet_pipeline_drop);
PG_FUNCTION_INFO_V1(duet_pipeline_run);
PG_FUNCTION_INFO_V1(duet_pipeline_backfill);
PG_FUNCTION_INFO_V1(duet_pipeline_replay);
PG_FUNCTION_INFO_V1(duet_pipeline_check_expr);
PG_FUNCTION_INFO_V1(duet_pipeline_validate);
PG_FUNCTION_INFO_V1(duet_pipeline_backlog);

#define forward(fcinfo, internal) duet_forward_as_owner(fcinfo, internal, 0, false, "Pipelines")

/* duet_pipeline_create(name, source, target, transform, order_by, partition_by, key, mode,
 * expectations, batch_size, topic, drift_column) → bigint */
Datum
duet_pipeline_create(PG_FUNCTION_ARGS)
{
	int64		id = forward(fcinfo, "duet_pipeline_create_apply");

	duet_workers_warn(psprintf("pipeline \"%s\"", text_to_cstring(PG_GETARG_TEXT_PP(0))));
	PG_RETURN_INT64(id);
}

/* duet_pipeline_alter(name, changes jsonb) → void */
Datum
duet_pipeline_alter(PG_FUNCTION_ARGS)
{
	(void) forward(fcinfo, "duet_pipeline_alter_apply");
	PG_RETURN_VOID();
}

/* Pause, resume and drop: duet.duet_pipeline_state_apply through a wrapper each. */
Datum
duet_pipeline_pause(PG_FUNCTION_ARGS)
{
	(void) forward(fcinfo, "duet_pipeline_pause_apply");
	PG_RETURN_VOID();
}

Datum
duet_pipeline_resume(PG_FUNCTION_ARGS)
{
	(void) forward(fcinfo, "duet_pipeline_resume_apply");
	PG_RETURN_VOID();
}

Datum
duet_pipeline_drop(PG_FUNCTION_ARGS)
{
	(void) forward(fcinfo, "duet_pipeline_drop_apply");
	PG_RETURN_VOID();
}

/*
 * The id of the caller's pipeline argument 0 names (an error unless it may change it), through
 * duet.<internal>(tenant, caller, <the function's arguments>).
 */
static int64
pipeline_id(FunctionCallInfo fcinfo, const char *internal)
{
	return forward(fcinfo, internal);
}

static char *
text_arg(FunctionCallInfo fcinfo, int i)
{
	return PG_ARGISNULL(i) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(i));
}

/* duet_pipeline_run(name) → bigint: batches until caught up; a failed run stops the pipeline. */
Datum
duet_pipeline_run(PG_FUNCTION_ARGS)
{
	int64		id = pipeline_id(fcinfo, "duet_pipeline_run_apply");
	int64		total = 0;
	bool		full = true;

	while (full)
	{
		char	   *error;
		int64		n;

		CHECK_FOR_INTERRUPTS();
		n = pipeline_run(id, PIPELINE_INCREMENTAL, NULL, NULL, NULL, false, PIPELINE_RECORD, &full, &error);
		if (n < 0)
		{
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pipeline \"%s\" stopped in state error", text_arg(fcinfo, 0)),
					 errdetail("%s", error),
					 errhint("duet.pipeline_status shows the error; fix its cause, then call duet_pipeline_resume().")));
			break;
		}
		total += n;
	}
	PG_RETURN_INT64(total);
}

/* duet_pipeline_backfill(name, from_position, to_position, partition) → bigint */
Datum
duet_pipeline_backfill(PG_FUNCTION_ARGS)
{
	int64		id = pipeline_id(fcinfo, "duet_pipeline_backfill_apply");

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("backfill range must not be NULL"),
				 errhint("Give the first and last order value to run again, e.g. duet_pipeline_backfill('silver', '1000', '1999').")));
	PG_RETURN_INT64(pipeline_run(id, PIPELINE_BACKFILL, text_arg(fcinfo, 1), text_arg(fcinfo, 2),
								 text_arg(fcinfo, 3), false, PIPELINE_RAISE, NULL, NULL));
}

/* duet_pipeline_replay(name) → bigint */
Datum
duet_pipeline_replay(PG_FUNCTION_ARGS)
{
	int64		id = pipeline_id(fcinfo, "duet_pipeline_replay_apply");

	PG_RETURN_INT64(pipeline_run(id, PIPELINE_REPLAY, NULL, NULL, NULL, false, PIPELINE_RAISE, NULL, NULL));
}

/*
 * duet.duet_pipeline_check_expr(expr, what) → void. A SQL expression must parse, wrapped as
 * "SELECT (expr)", to one SELECT of one target and nothing else: text that closes the parenthesis
 * to add columns, clauses, statements or a comment swallowing the rest is refused. A "=" formula
 * must compile.
 */
Datum
duet_pipeline_check_expr(PG_FUNCTION_ARGS)
{
	char	   *expr = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *what = text_to_cstring(PG_GETARG_TEXT_PP(1));
	List	   *parsed = NIL;
	SelectStmt *sel = NULL;
	MemoryContext cxt = CurrentMemoryContext;
	int			nest;

	if (expr[0] == '=')
	{
		size_t		len;
		const char *utf8 = pgcalc_to_utf8(expr + 1, strlen(expr + 1), &len);
		PgcalcProgram *prog;

		prog = pgcalc_program_get(utf8, len, NULL, "", 0);
		pgcalc_program_unpin(prog);
		PG_RETURN_VOID();
	}

	nest = NewGUCNestLevel();
	pipeline_pin_parse_settings();
	PG_TRY();
	{
		parsed = raw_parser(psprintf("SELECT (%s)", expr), RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("invalid pipeline %s: %s", what, edata->message),
				 errdetail("The text is \"%s\".", expr)));
	}
	PG_END_TRY();
	AtEOXact_GUC(false, nest);

	if (list_length(parsed) == 1 && IsA(linitial_node(RawStmt, parsed)->stmt, SelectStmt))
		sel = (SelectStmt *) linitial_node(RawStmt, parsed)->stmt;
	if (sel == NULL || list_length(sel->targetList) != 1 || sel->fromClause || sel->whereClause ||
		sel->groupClause || sel->havingClause || sel->windowClause || sel->valuesLists ||
		sel->sortClause || sel->limitOffset || sel->limitCount || sel->lockingClause ||
		sel->withClause || sel->distinctClause || sel->intoClause || sel->op != SETOP_NONE ||
		((ResTarget *) linitial(sel->targetList))->name != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("invalid pipeline %s: not a single SQL expression", what),
				 errdetail("The text is \"%s\".", expr),
				 errhint("Write one expression over the columns, e.g. (payload->>'amount')::numeric; a Duet formula starts with \"=\".")));
	PG_RETURN_VOID();
}

typedef struct ValidateCall
{
	const char *sql;
} ValidateCall;

/* Plans the statement (EXPLAIN: names, types, privileges, the arbiter index) without running it. */
static void
validate_as_caller(void *arg)
{
	ValidateCall *v = arg;
	Oid			types[7] = {JSONBOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, JSONBOID};
	Datum		values[7] = {0};
	char		nulls[7] = {'n', 'n', 'n', 'n', 'n', 'n', 'n'};
	int			ret;

	pipeline_pin_parse_settings();	/* in duet_run_privileged's nest level */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(psprintf("EXPLAIN (COSTS OFF) %s", v->sql), 7, types, values, nulls,
								false, 0);
	if (ret < 0)
		elog(ERROR, "pipeline statement could not be planned: %s", SPI_result_code_string(ret));
	SPI_finish();
}

/* duet.duet_pipeline_validate(caller oid, sql text) → void, as the caller. */
Datum
duet_pipeline_validate(PG_FUNCTION_ARGS)
{
	ValidateCall v = {text_to_cstring(PG_GETARG_TEXT_PP(1))};
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		duet_run_privileged(PG_GETARG_OID(0), DUET_USER_SEARCH_PATH, validate_as_caller, &v);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* The problem is the user's column or expression, not the generated statement around it. */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		edata->internalquery = NULL;
		edata->internalpos = 0;
		edata->cursorpos = 0;
		edata->context = NULL;
		ReThrowError(edata);
	}
	PG_END_TRY();
	PG_RETURN_VOID();
}

typedef struct BacklogCount
{
	Datum		id;
	char	   *sql;			/* the count, made as the extension owner; NULL: nothing to count */
	Datum		position;
	int64		n;
} BacklogCount;

/* As the extension owner: the statement and the position of the stored pipeline. */
static void
backlog_sql(void *arg)
{
	BacklogCount *b = arg;
	MemoryContext cxt = CurrentMemoryContext;
	Oid			types[1] = {INT8OID};
	bool		isnull;
	Datum		d;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT duet.duet_pipeline_backlog_sql(p), p.position FROM duet.pipelines p "
							  "WHERE p.id OPERATOR(pg_catalog.=) $1", 1, types, &b->id, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the pipeline's backlog statement");
	if (SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			b->sql = TextDatumGetCString(d);
			MemoryContextSwitchTo(old);
			b->position = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
														  &isnull), false, -1);
		}
	}
	SPI_finish();
	MemoryContextSwitchTo(cxt);
}

/* As the pipeline's owner, restricted: the count. */
static void
backlog_count(void *arg)
{
	BacklogCount *b = arg;
	Oid			types[1] = {JSONBOID};
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(b->sql, 1, types, &b->position, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pipeline backlog count failed");
	b->n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
}

/*
 * duet_pipeline_backlog(p duet.pipelines) → bigint: the rows of p's source past its position,
 * counted as the pipeline's owner, whoever reads duet.pipeline_status. Reading a tenant's table
 * runs that tenant's code (a domain CHECK on its order column, an operator of its types): counted
 * as the caller, it ran as a superuser or the extension owner looking at every tenant's pipelines.
 * Only p's id is taken from the argument, and only if the caller sees that pipeline (row-level
 * security): a forged row names no other owner or source.
 */
Datum
duet_pipeline_backlog(PG_FUNCTION_ARGS)
{
	BacklogCount b = {0};
	Oid			types[1] = {INT8OID};
	bool		isnull;
	Oid			owner;
	MemoryContext cxt = CurrentMemoryContext;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	b.id = GetAttributeByName(PG_GETARG_HEAPTUPLEHEADER(0), "id", &isnull);
	if (isnull)
		PG_RETURN_NULL();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT (p.owner)::pg_catalog.oid FROM duet.pipelines p "
							  "WHERE p.id OPERATOR(pg_catalog.=) $1", 1, types, &b.id, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the pipeline");
	if (SPI_processed != 1)
	{
		SPI_finish();
		PG_RETURN_NULL();
	}
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	MemoryContextSwitchTo(cxt);

	duet_run_privileged(duet_extension_owner(), NULL, backlog_sql, &b);
	if (b.sql == NULL)
		PG_RETURN_NULL();
	duet_run_privileged(owner, DUET_USER_SEARCH_PATH, backlog_count, &b);
	PG_RETURN_INT64(b.n);
}
