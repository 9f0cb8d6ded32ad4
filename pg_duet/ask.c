/*
 * ask.c — duet_ask(), duet_ask_run(), duet_ask_feedback() and the duet.ask_* settings.
 *
 * The loop: context (what the role may see) → cache → providers → guard; a guard or planning
 * error goes back to the model as a correction request, at most duet.ask_max_corrections times.
 * duet_ask_run then executes the accepted SQL as the calling role (RLS applies) through
 * read-only SPI, in a subtransaction marked read-only, with a row cap and a timeout.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/resowner.h"
#include "utils/numeric.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "catalog/pg_authid.h"

#include "ask.h"
#include "pg_duet.h"
#include "tenant.h"

#define MAX_QUESTION_LEN 4000

bool		duet_ask_enabled = true;
int			duet_ask_max_corrections = 2;
int			duet_ask_max_rows = 1000;
int			duet_ask_run_timeout_ms = 10000;
int			duet_ask_max_context_tables = 40;
int			duet_ask_max_retry_wait_ms = 30000;
int			duet_ask_cache_ttl_s = 86400;
int			duet_ask_log_retention = 30 * DUET_MINS_PER_DAY;	/* minutes */
char	   *duet_ask_extra_allowed_functions = NULL;

void
duet_ask_init(void)
{
	duet_guard_init();
	DefineCustomBoolVariable("duet.ask_enabled", "Allows duet_ask() to call language models.",
							 NULL, &duet_ask_enabled, true, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("duet.ask_max_corrections",
							"How many times duet_ask() sends a rejected query back to the model.",
							NULL, &duet_ask_max_corrections, 2, 0, 10, PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("duet.ask_max_rows", "Default row cap of duet_ask_run().",
							NULL, &duet_ask_max_rows, 1000, 1, 1000000, PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("duet.ask_run_timeout", "Time limit for the query duet_ask_run() executes.",
							NULL, &duet_ask_run_timeout_ms, 10000, 1, INT_MAX, PGC_USERSET,
							GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("duet.ask_max_context_tables",
							"Most tables described to the model; the most relevant are chosen when more are visible.",
							NULL, &duet_ask_max_context_tables, 40, 1, 10000, PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("duet.ask_max_retry_wait", "Longest wait before retrying a provider (caps Retry-After).",
							NULL, &duet_ask_max_retry_wait_ms, 30000, 0, 600000, PGC_SUSET,
							GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("duet.ask_cache_ttl", "How long duet_ask() reuses an answer; 0 disables the cache.",
							NULL, &duet_ask_cache_ttl_s, 86400, 0, INT_MAX, PGC_SUSET,
							GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("duet.ask_log_retention_days", "How long duet.ask_log keeps its rows.",
							"In minutes like every duration setting, at least one day: '30d'.",
							&duet_ask_log_retention, 30 * DUET_MINS_PER_DAY, 1, 36500 * DUET_MINS_PER_DAY,
							PGC_SUSET, GUC_UNIT_MIN, duet_check_retention, NULL, NULL);
	DefineCustomStringVariable("duet.ask_allowed_functions",
							   "Volatile functions the duet_ask guard allows in model output.",
							   "Comma-separated function names. Functions that read files or settings, "
							   "run SQL text, sleep or touch sequences stay refused.",
							   &duet_ask_extra_allowed_functions, "", PGC_SUSET, GUC_LIST_INPUT,
							   NULL, NULL, NULL);
	duet_audit_shmem_init();	/* the audit queue and its workers (ask_audit.c) */
	duet_budget_shmem_init();	/* per-tenant limits (ask_budget.c) */
	duet_ch_init();				/* ClickHouse settings (ask_clickhouse.c) */
}

typedef struct AskOptions
{
	bool		use_cache;
	int			max_corrections;
	char	   *target;			/* a ClickHouse server of duet.clickhouse_servers, or NULL */
} AskOptions;

static void
bad_option(const char *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid duet_ask option \"%s\"", key),
			 errhint("Options are \"cache\" (boolean), \"max_corrections\" (0 to 10) and \"target\" (a ClickHouse server name).")));
}

static void
parse_options(Jsonb *options, AskOptions *o)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	o->use_cache = true;
	o->max_corrections = duet_ask_max_corrections;
	o->target = NULL;
	if (options == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("duet_ask options must be a JSON object")));
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			if (strcmp(key, "cache") == 0 && v.type == jbvBool)
				o->use_cache = v.val.boolean;
			else if (strcmp(key, "max_corrections") == 0 && v.type == jbvNumeric)
			{
				int32		n = DatumGetInt32(DirectFunctionCall1(numeric_int4,
																  NumericGetDatum(v.val.numeric)));

				if (n < 0 || n > 10)
					bad_option(key);
				o->max_corrections = n;
			}
			else if (strcmp(key, "target") == 0 && v.type == jbvString)
				o->target = pnstrdup(v.val.string.val, v.val.string.len);
			else if (strcmp(key, "target") == 0 && v.type == jbvNull)
				o->target = NULL;
			else
				bad_option(key);
		}
	}
}

static void
check_question(const char *question)
{
	const char *s = question;

	while (*s && isspace((unsigned char) *s))
		s++;
	if (*s == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("question must not be empty")));
	if (strlen(question) > MAX_QUESTION_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("question is too long"),
				 errdetail("A question has at most %d bytes.", MAX_QUESTION_LEN)));
}

static double
ms_since(TimestampTz start)
{
	return (double) (GetCurrentTimestamp() - start) / 1000.0;
}

/* The guard of the target: PostgreSQL's (as the calling role) or the ClickHouse server's. */
static char *
guard(ChServer *ch, const char *sql)
{
	return ch ? duet_ch_guard_check(ch, sql, NULL) : duet_guard_check(sql);
}

/* Asks, guards and corrects; returns accepted SQL or raises an error. */
static char *
ask_sql_tracked(const char *question, const AskOptions *opt, ChServer *ch, AskLogEntry *entry,
				AskReply *reply, TimestampTz start, const char *tenant)
{
	List	   *providers;
	AskContext *ctx;
	const char *model;
	StringInfoData system;
	List	   *messages;
	char	   *reason = NULL;
	char	   *sql = NULL;
	int			round;

	providers = duet_providers_load();
	if (providers == NIL)
	{
		entry->status = "failed";
		entry->error = "no language-model provider is configured";
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no language-model provider is configured"),
				 errhint("A superuser adds one to duet.llm_providers (see README, \"duet_ask\").")));
	}
	ctx = ch ? duet_ch_context_build(ch, question) : duet_context_build(question);
	model = duet_provider_model(linitial(providers));
	entry->model = model;

	if (opt->use_cache)
	{
		List	   *models = NIL;
		ListCell   *lc;
		char	   *cached;

		foreach(lc, providers)
			models = lappend(models, (char *) duet_provider_model(lfirst(lc)));
		cached = duet_cache_lookup(question, ctx->fingerprint, tenant, models);

		/* Privileges may have changed since: a cached answer passes the guard again. */
		if (cached && guard(ch, cached) == NULL)
		{
			entry->sql = cached;
			entry->status = "cached";
			entry->latency_ms = ms_since(start);
			duet_audit_untrack();
			duet_log_write(entry, tenant);
			return cached;
		}
	}

	initStringInfo(&system);
	appendStringInfoString(&system, ch ? duet_ch_system_prompt() : duet_context_system_prompt());
	appendStringInfo(&system, "\nSchema (%d of %d tables shown):\n%s", ctx->tables_sent,
					 ctx->tables_visible, ctx->schema_text);
	{
		char	   *examples = duet_context_examples(question, opt->target);

		if (examples[0])
			appendStringInfo(&system, "\nVerified examples:\n%s", examples);
	}
	messages = list_make1(palloc(sizeof(AskMessage)));
	*(AskMessage *) linitial(messages) = (AskMessage) {"user", question};

	for (round = 0; round <= opt->max_corrections; round++)
	{
		AskMessage *m;

		entry->corrections = round;
		duet_provider_complete(providers, system.data, messages, reply);
		if (reply->text == NULL)
			break;
		sql = duet_guard_extract_sql(reply->text);
		entry->sql = sql;
		reason = guard(ch, sql);
		if (reason == NULL)
			break;
		ereport(DEBUG1, (errmsg_internal("duet_ask: rejected (round %d): %s", round + 1, reason)));
		if (round == opt->max_corrections)
			break;
		m = palloc(sizeof(AskMessage));
		*m = (AskMessage) {"assistant", reply->text};
		messages = lappend(messages, m);
		m = palloc(sizeof(AskMessage));
		*m = (AskMessage) {"user", psprintf("%s rejected that query: %s\n"
											"Answer the original question again with one corrected "
											"SELECT statement, SQL only.",
											ch ? "ClickHouse" : "PostgreSQL", reason)};
		messages = lappend(messages, m);
	}

	entry->provider = reply->provider;
	entry->model = reply->model ? reply->model : model;
	entry->attempts = reply->http_attempts;
	entry->corrections = Max(round, 0);
	entry->tokens_in = reply->tokens_in;
	entry->tokens_out = reply->tokens_out;
	entry->cost = reply->cost;
	entry->latency_ms = ms_since(start);

	if (reply->text == NULL)
	{
		/* Recorded by the PG_CATCH of ask_sql (ask_audit.c), which survives this ERROR. */
		entry->status = "failed";
		entry->error = reply->error;
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("no language-model provider answered"),
				 errdetail("Last error: %s", reply->error ? reply->error : "none"),
				 errhint("Check duet.llm_providers and the server log.")));
	}
	entry->sql = sql;
	if (reason != NULL)
	{
		entry->status = "rejected";
		entry->error = reason;
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION),
				 errmsg("the model did not produce an acceptable query"),
				 errdetail("After %d correction(s) the guard still refused it: %s",
						   entry->corrections, reason),
				 errhint("Rephrase the question, or add a verified example with duet_ask_feedback().")));
	}
	entry->status = "ok";
	duet_audit_untrack();
	duet_log_write(entry, tenant);
	if (opt->use_cache)
		duet_cache_store(question, ctx->fingerprint, tenant, reply->model, sql);
	return sql;
}

/*
 * The ask, tracked by the audit from here on: whatever ends it (an answer, the guard, the
 * providers, a budget, a cancel, the session's end) leaves a row in duet.ask_log.
 */
static char *
ask_sql(const char *question, const AskOptions *opt, ChServer **ch_out)
{
	TimestampTz start = GetCurrentTimestamp();
	MemoryContext cxt = CurrentMemoryContext;
	AskLogEntry *entry = palloc0(sizeof(AskLogEntry));
	AskReply   *reply = palloc0(sizeof(AskReply));
	const char *tenant_now;
	char	   *tenant;
	char	   *volatile sql = NULL;
	ChServer   *volatile ch = NULL;

	if (!duet_ask_enabled)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("duet_ask is disabled"),
				 errhint("A superuser can enable it with duet.ask_enabled.")));
	check_question(question);
	tenant_now = duet_current_tenant_name();
	tenant = tenant_now ? pstrdup(tenant_now) : NULL;
	entry->question = question;
	entry->target = opt->target;
	entry->role = pstrdup(GetUserNameFromId(GetUserId(), false));
	reply->tenant = tenant;
	duet_audit_track(entry, reply, tenant, start);
	PG_TRY();
	{
		if (opt->target)
			ch = duet_ch_server_for_tenant(opt->target, tenant);
		sql = ask_sql_tracked(question, opt, ch, entry, reply, start, tenant);
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		duet_audit_fail(ed);
		FreeErrorData(ed);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (ch_out)
		*ch_out = ch;
	return sql;
}

PG_FUNCTION_INFO_V1(duet_ask);

/* duet_ask(question text, options jsonb) → SQL the guard accepted, not executed. */
Datum
duet_ask(PG_FUNCTION_ARGS)
{
	AskOptions	opt;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	parse_options(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1), &opt);
	PG_RETURN_TEXT_P(cstring_to_text(ask_sql(text_to_cstring(PG_GETARG_TEXT_PP(0)), &opt, NULL)));
}

/* Executes sql read-only as the calling role; appends each row as jsonb to the tuplestore. */
static void
run_read_only(const char *sql, int max_rows, Tuplestorestate *store, TupleDesc store_desc,
			  MemoryContext store_cxt)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		was_read_only = XactReadOnly;
	volatile TimestampTz previous = 0;
	volatile bool armed;
	FmgrInfo	to_jsonb;

	fmgr_info(F_TO_JSONB, &to_jsonb);
	fmgr_info_set_expr((Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
											 list_make1(makeNullConst(RECORDOID, -1, InvalidOid)),
											 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL), &to_jsonb);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	{
		TimestampTz prev;

		armed = duet_deadline_arm(duet_ask_run_timeout_ms, &prev);
		previous = prev;
	}
	PG_TRY();
	{
		int			rc;
		uint64		i;
		TupleDesc	desc;

		char	   *reason;

		/* Guard, plan and run, all under the one deadline armed above. */
		reason = duet_guard_check(sql);
		if (reason)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("the generated SQL is not allowed to run"),
					 errdetail("%s", reason)));
		/* Second layer behind the guard: nothing can write, whatever slipped through. */
		XactReadOnly = true;
		duet_guard_enter();
		SPI_connect();
		rc = SPI_execute(sql, true, max_rows);
		if (rc != SPI_OK_SELECT)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("duet_ask_run executes only SELECT")));
		desc = BlessTupleDesc(CreateTupleDescCopy(SPI_tuptable->tupdesc));
		for (i = 0; i < SPI_processed; i++)
		{
			Datum		row = heap_copy_tuple_as_datum(SPI_tuptable->vals[i], desc);
			Datum		value = FunctionCall1(&to_jsonb, row);
			bool		isnull = false;
			MemoryContext old = MemoryContextSwitchTo(store_cxt);

			tuplestore_putvalues(store, store_desc, &value, &isnull);
			MemoryContextSwitchTo(old);
			CHECK_FOR_INTERRUPTS();
		}
		SPI_finish();
		duet_guard_leave();
		if (armed)
			duet_deadline_disarm(previous);
		XactReadOnly = was_read_only;
		/* The rows are in the store: nothing else the query did (set_config, NOTIFY) survives. */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		duet_guard_leave();
		if (armed)
			duet_deadline_disarm(previous);
		XactReadOnly = was_read_only;
		MemoryContextSwitchTo(caller);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

PG_FUNCTION_INFO_V1(duet_ask_run);

/* duet_ask_run(question text, max_rows int, options jsonb) → setof jsonb: the answer's rows, one object each. */
Datum
duet_ask_run(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AskOptions	opt;
	int			max_rows = PG_ARGISNULL(1) ? duet_ask_max_rows : PG_GETARG_INT32(1);
	ChServer   *ch = NULL;
	MemoryContext per_query;
	MemoryContext old;
	TupleDesc	desc;
	Tuplestorestate *store;
	char	   *sql;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("duet_ask_run must be called in a context that accepts a set")));
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (max_rows < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be at least 1")));

	parse_options(PG_NARGS() > 2 && !PG_ARGISNULL(2) ? PG_GETARG_JSONB_P(2) : NULL, &opt);
	per_query = rsinfo->econtext->ecxt_per_query_memory;
	old = MemoryContextSwitchTo(per_query);
	desc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(desc, (AttrNumber) 1, "row", JSONBOID, -1, 0);
	store = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(old);

	sql = ask_sql(text_to_cstring(PG_GETARG_TEXT_PP(0)), &opt, &ch);
	if (ch)
		duet_ch_run(ch, sql, max_rows, store, desc, per_query);
	else
		run_read_only(sql, max_rows, store, desc, per_query);

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = desc;
	return (Datum) 0;
}

typedef struct FeedbackArgs
{
	const char *tenant;
	const char *question;
	const char *sql;
	const char *target;
} FeedbackArgs;

static void
feedback_su(void *arg)
{
	FeedbackArgs *fa = (FeedbackArgs *) arg;
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = "     ";

	values[0] = fa->tenant ? CStringGetTextDatum(fa->tenant) : (Datum) 0;
	nulls[0] = fa->tenant ? ' ' : 'n';
	values[1] = CStringGetTextDatum(fa->question);
	values[2] = CStringGetTextDatum(fa->sql);
	values[3] = CStringGetTextDatum(GetUserNameFromId(GetOuterUserId(), false));
	values[4] = fa->target ? CStringGetTextDatum(fa->target) : (Datum) 0;
	nulls[4] = fa->target ? ' ' : 'n';
	SPI_connect();
	/* Without a target the 0.1.0 statement: the 0.2.0 library also serves a not yet updated schema. */
	if (SPI_execute_with_args(fa->target ? "INSERT INTO duet.ask_examples (tenant, question, sql, created_by, target)"
							  " VALUES ($1, $2, $3, $4, $5)" :
							  "INSERT INTO duet.ask_examples (tenant, question, sql, created_by)"
							  " VALUES ($1, $2, $3, $4)", fa->target ? 5 : 4, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write duet.ask_examples");
	/* The cached answer to this question is superseded by the verified one. */
	SPI_execute_with_args("DELETE FROM duet.ask_cache WHERE tenant IS NOT DISTINCT FROM $1"
						  " AND question OPERATOR(pg_catalog.=) $2", 2, types, values, nulls, false, 0);
	SPI_finish();
}

PG_FUNCTION_INFO_V1(duet_ask_feedback);

/* duet_ask_feedback(question, sql, target) → void: a verified pair becomes a few-shot example. */
Datum
duet_ask_feedback(PG_FUNCTION_ARGS)
{
	FeedbackArgs fa;
	const char *tenant;
	char	   *sql;
	char	   *reason;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("question and sql must not be NULL")));
	fa.question = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_question(fa.question);
	sql = duet_guard_extract_sql(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	fa.target = PG_NARGS() > 2 && !PG_ARGISNULL(2) ? text_to_cstring(PG_GETARG_TEXT_PP(2)) : NULL;
	tenant = duet_current_tenant_name();
	/* Checked as the calling role: an example must be something the guard would run. */
	if (fa.target)
		reason = duet_ch_guard_check(duet_ch_server_for_tenant(fa.target, tenant), sql, NULL);
	else
		reason = duet_guard_check(sql);
	if (reason)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION),
				 errmsg("example SQL is not acceptable"),
				 errdetail("%s", reason)));
	/* An example without a tenant is shown to every role without one: only a superuser adds it. */
	if (tenant == NULL && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may add an example without a tenant"),
				 errhint("Select your tenant with duet_set_tenant() first.")));
	fa.tenant = tenant ? pstrdup(tenant) : NULL;
	fa.sql = sql;
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot add an example in a read-only transaction")));
	duet_run_privileged(BOOTSTRAP_SUPERUSERID, NULL, feedback_su, &fa);
	PG_RETURN_VOID();
}
