/*
 * rules_query.c — query rules: duet_rules_evaluate(at timestamptz).
 *
 * Each enabled query rule's SQL runs read-only, as the role that wrote the rule, acting for the
 * rule's tenant (so its row-level security applies), inside a subtransaction: a failing query
 * becomes the rule's Error state and the other rules still run. Its rows are evaluated like a
 * row rule's; a result with no rows is No Data; an instance missing from the result is observed
 * as false (its series ended).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "tcop/pquery.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "storage/lock.h"
#include "catalog/namespace.h"

#include "pg_duet.h"
#include "monitor.h"
#include "rules.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(duet_rules_evaluate);

/*
 * Checks that query is one plain SELECT (PostgreSQL's parser decides) and returns its row shape.
 * Runs as the rule's author, on the privileged path with DUET_USER_SEARCH_PATH.
 */
TupleDesc
rules_query_describe(const char *query)
{
	List	   *stmts = raw_parser(query, RAW_PARSE_DEFAULT);
	RawStmt    *raw;
	SPIPlanPtr	plan;
	CachedPlanSource *src;
	CachedPlan *cplan;
	ListCell   *lc;

	if (list_length(stmts) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rule query must be exactly one SQL statement"),
				 errdetail("The query has %d statements.", list_length(stmts))));
	raw = linitial_node(RawStmt, stmts);
	if (!IsA(raw->stmt, SelectStmt) || ((SelectStmt *) raw->stmt)->intoClause != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rule query must be a SELECT"),
				 errhint("A query rule returns its label and metric columns from a SELECT.")));
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the rule query: %s", SPI_result_code_string(SPI_result));
	src = linitial(SPI_plan_get_plan_sources(plan));
	if (src->resultDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rule query returns no rows")));

	/* Planning flattens the range tables: check the caller may read everything the query reads. */
	cplan = SPI_plan_get_cached_plan(plan);
	foreach(lc, cplan->stmt_list)
	{
		PlannedStmt *ps = lfirst_node(PlannedStmt, lc);

		(void) ExecCheckRTPerms(ps->rtable, true);
	}
	ReleaseCachedPlan(cplan, NULL);	/* an unsaved plan is not tracked by a resource owner */
	return CreateTupleDescCopy(src->resultDesc);
}

typedef struct QueryRule
{
	int64		id;
	char	   *tenant;
	char	   *query;
	char	   *condition;
	char	   *value;
	Datum		labels;
	bool		labels_null;
	RuleContent content;
	Oid			owner;
} QueryRule;

/* Not inlined: its locals must not live in the caller's PG_TRY frame. */
pg_noinline static List *
load_query_rules(void)
{
	List	   *rules = NIL;
	uint64		i;
	int			ret;

	ret = SPI_execute(psprintf("SELECT id, tenant, query, condition, value, labels, message, owner, %s "
							   "FROM duet.rules WHERE query IS NOT NULL AND enabled ORDER BY id",
							   rules_content_columns()), true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read query rules: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	sdesc = SPI_tuptable->tupdesc;
		QueryRule  *r = palloc0(sizeof(QueryRule));
		bool		isnull;
		Datum		annotations;

		r->id = DatumGetInt64(SPI_getbinval(tup, sdesc, 1, &isnull));
		r->tenant = SPI_getvalue(tup, sdesc, 2);
		r->query = SPI_getvalue(tup, sdesc, 3);
		r->condition = SPI_getvalue(tup, sdesc, 4);
		r->value = SPI_getvalue(tup, sdesc, 5);
		r->labels = SPI_getbinval(tup, sdesc, 6, &r->labels_null);
		if (!r->labels_null)
			r->labels = datumCopy(r->labels, false, -1);
		r->content.message = SPI_getvalue(tup, sdesc, 7);
		r->owner = DatumGetObjectId(SPI_getbinval(tup, sdesc, 8, &isnull));
		annotations = SPI_getbinval(tup, sdesc, 9, &isnull);
		r->content.annotations = isnull ? NULL : DatumGetJsonbPCopy(annotations);
		r->content.resolve_message = SPI_getvalue(tup, sdesc, 10);
		rules = lappend(rules, r);
	}
	SPI_freetuptable(SPI_tuptable);
	return rules;
}

/*
 * exit_on_error turns every ERROR into FATAL: a rule's query that turned it on would end the
 * session that evaluates every tenant's rules before its error could be caught. PostgreSQL has
 * no other way to keep a role from a user-settable setting, so while a rule's query runs a check
 * hook on the setting (installed once, chained to any hook already there) refuses "on".
 */
static bool rule_query_running = false;
static GucBoolCheckHook prev_exit_on_error_check = NULL;

static bool
check_exit_on_error(bool *newval, void **extra, GucSource source)
{
	if (*newval && rule_query_running)
	{
		GUC_check_errdetail("A query rule may not turn it on: its error would end the evaluation of every tenant's rules.");
		return false;
	}
	return prev_exit_on_error_check ? prev_exit_on_error_check(newval, extra, source) : true;
}

void
rules_query_init(void)
{
	struct config_generic **vars = get_guc_variables();
	int			n = GetNumConfigOptions();

	for (int i = 0; i < n; i++)
		if (strcmp(vars[i]->name, "exit_on_error") == 0 && vars[i]->vartype == PGC_BOOL)
		{
			struct config_bool *b = (struct config_bool *) vars[i];

			prev_exit_on_error_check = b->check_hook;
			b->check_hook = check_exit_on_error;
			return;
		}
	elog(ERROR, "setting exit_on_error not found");
}

typedef struct RuleQueryRun
{
	QueryRule  *rule;
	RuleRun    *run;			/* out: the evaluated rows */
	bool		nodata;			/* out: the query returned no rows */
} RuleQueryRun;

/*
 * Runs one rule's query for its tenant and evaluates the rows, as the rule's owner (see
 * evaluate_query_rules). Raises on a failed query.
 */
static void
run_query_rule(void *arg)
{
	RuleQueryRun *qr = arg;
	QueryRule  *r = qr->rule;
	const char *tenant;
	TupleDesc	desc;
	duet_vm    *vm;
	MemoryContext rowcxt;
	uint64		i;
	int			ret;

	(void) set_config_option("duet.tenant", r->tenant, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rule_query_running = true;	/* until evaluate_query_rules ends this rule, error or not */
	tenant = duet_current_tenant_name();
	if (tenant == NULL || strcmp(tenant, r->tenant) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("rule owner \"%s\" may no longer act for tenant \"%s\"",
						GetUserNameFromId(r->owner, true) ? GetUserNameFromId(r->owner, true) : "?",
						r->tenant),
				 errhint("Alter the rule as a member of the tenant to make that role its owner.")));

	ret = SPI_execute(r->query, true, (long) duet_rules_max_rows + 1);
	if (ret != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rule query must be a SELECT")));
	if (SPI_processed > (uint64) duet_rules_max_rows)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg_plural("rule query returned more than %d row",
							   "rule query returned more than %d rows",
							   duet_rules_max_rows, duet_rules_max_rows),
				 errhint("Aggregate in the query, or raise duet.rules_max_rows.")));

	qr->nodata = (SPI_processed == 0);
	desc = SPI_tuptable->tupdesc;
	qr->run = rules_run_begin(r->id, r->tenant, r->condition, r->value, r->labels, r->labels_null,
							  &r->content, desc);
	vm = duet_vm_new();
	if (vm == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "duet rule row", ALLOCSET_SMALL_SIZES);
	PG_TRY();
	{
		Datum	   *values = palloc(sizeof(Datum) * Max(desc->natts, 1));
		bool	   *nulls = palloc(sizeof(bool) * Max(desc->natts, 1));

		for (i = 0; i < SPI_processed; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(rowcxt);

			CHECK_FOR_INTERRUPTS();
			heap_deform_tuple(SPI_tuptable->vals[i], desc, values, nulls);
			rules_run_row(qr->run, desc, values, nulls, vm);
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
		}
	}
	PG_FINALLY();
	{
		duet_vm_free(vm);
	}
	PG_END_TRY();
	MemoryContextDelete(rowcxt);
	SPI_freetuptable(SPI_tuptable);
}

typedef struct EvaluateRun
{
	TimestampTz at;
	int			n;				/* out: rules evaluated */
} EvaluateRun;

/*
 * Evaluates every enabled query rule, as the extension owner (SPI text is schema-qualified).
 *
 * Query rules of every tenant share this session, so each one is isolated from the next: its
 * query runs as its owner on the privileged path (restricted, fixed search_path: no temp object
 * can be made, no SET outlives it), in a subtransaction that is always rolled back once its rows
 * are evaluated (a NOTIFY, a set_config or a lock taken by the query's functions ends with it),
 * and session-level advisory locks it took are released before the next rule runs.
 */
static void
evaluate_query_rules(void *arg)
{
	EvaluateRun *ev = arg;
	TimestampTz at = ev->at;
	MemoryContext callcxt = CurrentMemoryContext;
	List	   *rules;
	ListCell   *lc;
	Jsonb	   *empty = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(callcxt);
	rules = load_query_rules();

	foreach(lc, rules)
	{
		QueryRule  *r = lfirst(lc);
		ResourceOwner oldowner = CurrentResourceOwner;
		RuleQueryRun qr = {r, NULL, false};
		char	   *volatile failure = NULL;
		ErrorData  *volatile cancel = NULL;
		volatile TimestampTz previous = 0;
		volatile bool armed;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(callcxt);
		{
			TimestampTz prev;

			/* One rule's time limit, so that no rule (a sleep, a lock wait) stalls the others. */
			armed = duet_deadline_arm(duet_rules_query_timeout_ms, &prev);
			previous = prev;
		}
		PG_TRY();
		{
			/* The query is the rule author's: it runs with that role's rights, not the owner's. */
			duet_run_privileged(r->owner, DUET_USER_SEARCH_PATH, run_query_rule, &qr);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(callcxt);
			edata = CopyErrorData();
			FlushErrorState();
			if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED && armed && duet_deadline_fired())
				failure = psprintf("rule query ran longer than duet.rules_query_timeout (%d ms)",
								   duet_rules_query_timeout_ms);
			else if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION)
				cancel = edata; /* a cancel or shutdown of the whole evaluation, not this rule's */
			else
				failure = edata->message;
		}
		PG_END_TRY();
		rule_query_running = false;
		if (armed)
			duet_deadline_disarm(previous);
		/* Nothing the query did survives: its subtransaction ends in a rollback either way. */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callcxt);
		CurrentResourceOwner = oldowner;
		LockReleaseSession(USER_LOCKMETHOD);
		if (cancel)
			ReThrowError(cancel);

		if (failure)
		{
			duet_monitor_count_rule(r->id, 0, true);
			rules_observe(r->id, empty, "error", NULL, NULL, failure, at, NULL);
		}
		else
		{
			RuleRun    *run = qr.run;
			Oid			types[3] = {INT8OID, JSONBARRAYOID, TIMESTAMPTZOID};
			Datum		args[3];
			int			ret;

			rules_run_observe(run, at);
			if (run->setup_error == NULL)
			{
				/*
				 * Instances the result did not contain are observed as false; with no rows at all,
				 * the rule's {} instance is No Data instead (and is kept out of the sweep).
				 */
				if (qr.nodata)
				{
					Datum		e = JsonbPGetDatum(empty);

					rules_observe(r->id, empty, "nodata", NULL, NULL, NULL, at, NULL);
					args[1] = PointerGetDatum(construct_array(&e, 1, JSONBOID, -1, false, TYPALIGN_INT));
				}
				else
					args[1] = rules_run_seen(run);
				args[0] = Int64GetDatum(r->id);
				args[2] = TimestampTzGetDatum(at);
				ret = SPI_execute_with_args("SELECT duet.duet_alert_sweep($1, $2, $3)", 3, types, args,
											NULL, false, 0);
				if (ret != SPI_OK_SELECT)
					elog(ERROR, "alert sweep failed: %s", SPI_result_code_string(ret));
			}
			MemoryContextDelete(run->cxt);
		}
		ev->n++;
	}

	SPI_finish();
}

/*
 * duet_rules_evaluate(at timestamptz DEFAULT now()) → integer
 *
 * Evaluates every tenant's enabled query rules as of `at`; returns how many were evaluated.
 * Ends every session-level advisory lock of the session (see evaluate_query_rules).
 */
Datum
duet_rules_evaluate(PG_FUNCTION_ARGS)
{
	EvaluateRun ev = {PG_ARGISNULL(0) ? GetCurrentTransactionStartTimestamp() : PG_GETARG_TIMESTAMPTZ(0), 0};
	Oid			tempns;
	Oid			temptoastns;

	/* A temp schema of this session would be on every rule's search_path (last, but there). */
	GetTempNamespaceState(&tempns, &temptoastns);
	if (OidIsValid(tempns))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("duet_rules_evaluate() cannot run in a session that has used temporary objects"),
				 errdetail("Every tenant's rule queries run in this session, and its temporary schema would be visible to them."),
				 errhint("Call it from a new session, or leave it to the rules worker (duet.rules_interval).")));
	duet_run_privileged(duet_extension_owner(), NULL, evaluate_query_rules, &ev);
	PG_RETURN_INT32(ev.n);
}
