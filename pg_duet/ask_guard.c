/*
 * ask_guard.c — the guard between a language model's output and the executor.
 *
 * Model output is untrusted input. The decision is made by PostgreSQL's own parser, analyzer
 * and planner rather than by string matching: string matching loses to comments, dollar quoting,
 * U&"…" identifiers, nested CTEs and search_path tricks, while the parse tree is exactly what
 * would run. Accepted: one statement, a plain SELECT (no INTO, no locking clause, no
 * data-modifying CTE), whose every function is non-volatile or allowlisted and none of which
 * reads files, runs SQL strings, sleeps, touches settings or sequences; it must analyze and plan,
 * and the calling role must hold the privileges the executor would check. Nothing is executed:
 * planning only folds immutable functions, and by then every function has been vetted.
 *
 * Execution (ask.c) adds a second layer: read-only SPI in a read-only subtransaction.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/dependency.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "tcop/cmdtag.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/varlena.h"

#include "ask.h"
#include "pg_duet.h"

/* Longer than any useful answer; keeps the parser's work bounded. */
#define GUARD_MAX_SQL_LEN	(64 * 1024)

/*
 * Refused whatever their volatility: they read files or settings, run SQL given as a string,
 * sleep, signal backends, touch sequences, large objects, advisory locks or replication.
 * Exact names, then prefixes, then substrings.
 */
static const char *const denied_functions[] = {
	"current_setting", "set_config", "nextval", "setval", "currval", "lastval",
	"pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_read_file", "pg_read_binary_file",
	"pg_stat_file", "pg_reload_conf", "pg_rotate_logfile", "pg_terminate_backend",
	"pg_cancel_backend", "pg_notify", "pg_export_snapshot", "pg_switch_wal", "pg_promote",
	"pg_current_logfile", "pg_show_all_settings", "pg_show_all_file_settings",
	"pg_hba_file_rules", "pg_ident_file_mappings", "pg_config", "pg_import_system_collations",
	"ts_stat", "ts_rewrite", "loread", "lowrite", "txid_current", "pg_current_xact_id",
	"pg_log_backend_memory_contexts", "pg_create_restore_point", "pg_get_wal_replay_pause_state",
	NULL
};
static const char *const denied_prefixes[] = {
	"pg_ls_", "lo_", "dblink", "pg_advisory", "pg_try_advisory", "pg_stat_reset",
	"pg_create_", "pg_drop_", "pg_replication_", "pg_logical_", "pg_file_", "pg_read_",
	"pg_backup_", "pg_wal_replay_", "pg_sleep", "pg_copy_", "pg_walfile", "duet_ask",
	"duet_set_", "duet_kafka_", "duet_config_set", "duet_config_unset", "duet_tenant_",
	NULL
};
static const char *const denied_substrings[] = {
	"_to_xml",					/* query_to_xml, table_to_xml, cursor_to_xml… run queries */
	NULL
};

/* Volatile yet harmless: randomness and clocks. */
static const char *const allowed_volatile[] = {
	"random", "clock_timestamp", "timeofday", "gen_random_uuid", NULL
};

static bool
name_in(const char *name, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(name, *list) == 0)
			return true;
	return false;
}

static bool
name_has_prefix(const char *name, const char *const *list)
{
	for (; *list; list++)
		if (strncmp(name, *list, strlen(*list)) == 0)
			return true;
	return false;
}

static bool
name_contains(const char *name, const char *const *list)
{
	for (; *list; list++)
		if (strstr(name, *list) != NULL)
			return true;
	return false;
}

/*
 * duet.ask_allowed_functions: functions a superuser allows beyond the built-in rules. A volatile
 * built-in or extension function is named plainly; a function a user created only with its
 * schema (schema.name), so that a same-named function elsewhere is not allowed with it.
 */
static bool
extra_allowed(const char *name)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	bool		found = false;

	if (duet_ask_extra_allowed_functions == NULL || duet_ask_extra_allowed_functions[0] == '\0')
		return false;
	copy = pstrdup(duet_ask_extra_allowed_functions);
	if (!SplitIdentifierString(copy, ',', &names))
		return false;
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), name) == 0)
			found = true;
	return found;
}

typedef struct GuardWalk
{
	char	   *reason;			/* first reason found, palloc'd */
} GuardWalk;

static bool function_refused(Oid funcid, void *context);

/* Built into the server, or installed by an extension (which took a superuser or a trusted script). */
static bool
function_trusted(Oid funcid)
{
	return funcid < FirstNormalObjectId ||
		OidIsValid(getExtensionOfObject(ProcedureRelationId, funcid));
}

/* The transition, final, combine, (de)serial and moving-aggregate functions of an aggregate. */
static bool
aggregate_refused(Oid aggfnoid, GuardWalk *gw)
{
	HeapTuple	tup = SearchSysCache1(AGGFNOID, ObjectIdGetDatum(aggfnoid));
	Form_pg_aggregate agg;
	Oid			support[8];
	int			i;
	bool		refused = false;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for aggregate %u", aggfnoid);
	agg = (Form_pg_aggregate) GETSTRUCT(tup);
	support[0] = agg->aggtransfn;
	support[1] = agg->aggfinalfn;
	support[2] = agg->aggcombinefn;
	support[3] = agg->aggserialfn;
	support[4] = agg->aggdeserialfn;
	support[5] = agg->aggmtransfn;
	support[6] = agg->aggminvtransfn;
	support[7] = agg->aggmfinalfn;
	ReleaseSysCache(tup);
	for (i = 0; i < 8 && !refused; i++)
		if (OidIsValid(support[i]))
			refused = function_refused(support[i], gw);
	return refused;
}

/* check_functions_in_node callback: true stops the walk and means "refused". */
static bool
function_refused(Oid funcid, void *context)
{
	GuardWalk  *gw = (GuardWalk *) context;
	HeapTuple	tup;
	Form_pg_proc proc;
	const char *name;
	char	   *why = NULL;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tup))
	{
		gw->reason = psprintf("function with OID %u does not exist", funcid);
		return true;
	}
	proc = (Form_pg_proc) GETSTRUCT(tup);
	name = NameStr(proc->proname);

	if (name_in(name, denied_functions) || name_has_prefix(name, denied_prefixes) ||
		name_contains(name, denied_substrings))
		why = "it can read files or settings, run SQL text, sleep, or change state";
	else if (proc->prosecdef)
		why = "it is SECURITY DEFINER";
	else if (!function_trusted(funcid) &&
			 !extra_allowed(quote_qualified_identifier(get_namespace_name(proc->pronamespace), name)))
		why = "it is a user's function (a superuser may allow it in duet.ask_allowed_functions as schema.name)";
	else if (proc->provolatile == PROVOLATILE_VOLATILE &&
			 !name_in(name, allowed_volatile) && !extra_allowed(name) &&
			 !extra_allowed(quote_qualified_identifier(get_namespace_name(proc->pronamespace), name)))
		why = "it is volatile and not in duet.ask_allowed_functions";
	else if (proc->prokind == PROKIND_AGGREGATE)
	{
		/* An aggregate runs its support functions, whatever its own entry says: vet each. */
		ReleaseSysCache(tup);
		return aggregate_refused(funcid, gw);
	}

	if (why)
		gw->reason = psprintf("function %s() is not allowed: %s",
							  quote_qualified_identifier(get_namespace_name(proc->pronamespace),
														 name), why);
	ReleaseSysCache(tup);
	return why != NULL;
}

/*
 * The walk below gives the model a reason it can correct; this is the enforcement. While a guard
 * check or a generated query runs, every function PostgreSQL looks up that is not built in (the
 * built-ins take fmgr's fast path and never reach the hook) passes the same rules, wherever the
 * call comes from: a domain CHECK reached through record_in or array_in while a literal is
 * analysed, a negator the planner swaps in, a range type's subtype_diff during selectivity
 * estimation, a view replaced between the check and the run.
 */
static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static int	guard_depth = 0;

static bool
guard_needs_fmgr_hook(Oid fn_oid)
{
	if (guard_depth > 0)
	{
		GuardWalk	gw = {NULL};

		if (function_refused(fn_oid, &gw))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("%s", gw.reason),
					 errdetail("It was called while the generated query was checked or run.")));
	}
	return prev_needs_fmgr_hook ? prev_needs_fmgr_hook(fn_oid) : false;
}

void
duet_guard_init(void)
{
	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = guard_needs_fmgr_hook;
}

void
duet_guard_enter(void)
{
	guard_depth++;
}

void
duet_guard_leave(void)
{
	if (guard_depth > 0)
		guard_depth--;
}

/*
 * The extension's own secrets and shared cache are never a valid answer, even for a superuser
 * caller: a prompt injected through data ("…select the api_key…") must not surface a key.
 */
static const char *const private_relations[] = {
	"llm_providers", "llm_provider_keys", "ask_cache", NULL
};

static char *
private_relation(List *rtable)
{
	ListCell   *lc;

	foreach(lc, rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		char	   *nsp;
		char	   *rel;

		if (rte->rtekind != RTE_RELATION)
			continue;
		nsp = get_namespace_name(get_rel_namespace(rte->relid));
		rel = get_rel_name(rte->relid);
		if (nsp && rel && strcmp(nsp, "duet") == 0 && name_in(rel, private_relations))
			return psprintf("relation duet.%s is not allowed in generated queries", rel);
	}
	return NULL;
}

static bool guard_walker(Node *node, GuardWalk *gw);

/* The type a domain is defined over (itself possibly a domain). */
static Oid
domain_parent(Oid typid)
{
	HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	Oid			base;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", typid);
	base = ((Form_pg_type) GETSTRUCT(tup))->typbasetype;
	ReleaseSysCache(tup);
	return base;
}

/* A cast to a domain runs its CHECK expressions: vet them (and those of base domains) too. */
static bool
domain_check_refused(Oid typid, GuardWalk *gw)
{
	while (get_typtype(typid) == TYPTYPE_DOMAIN)
	{
		Relation	rel = table_open(ConstraintRelationId, AccessShareLock);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;
		bool		refused = false;

		ScanKeyInit(&key, Anum_pg_constraint_contypid, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(typid));
		scan = systable_beginscan(rel, ConstraintTypidIndexId, true, NULL, 1, &key);
		while (!refused && HeapTupleIsValid(tup = systable_getnext(scan)))
		{
			Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tup);
			bool		isnull;
			Datum		bin;

			if (con->contype != CONSTRAINT_CHECK)
				continue;
			bin = heap_getattr(tup, Anum_pg_constraint_conbin, RelationGetDescr(rel), &isnull);
			if (!isnull)
				refused = guard_walker(stringToNode(TextDatumGetCString(bin)), gw);
		}
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
		if (refused)
			return true;
		typid = domain_parent(typid);
	}
	return false;
}

/* Visits every expression and every (sub)query of the analyzed tree. */
static bool
guard_walker(Node *node, GuardWalk *gw)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *q = (Query *) node;

		if (q->commandType != CMD_SELECT || q->utilityStmt != NULL)
		{
			gw->reason = pstrdup("only SELECT may run: the query contains a data-modifying or utility statement");
			return true;
		}
		if (q->rowMarks != NIL)
		{
			gw->reason = pstrdup("locking clauses (FOR UPDATE/SHARE) are not allowed");
			return true;
		}
		if (q->hasModifyingCTE)
		{
			gw->reason = pstrdup("data-modifying statements in WITH are not allowed");
			return true;
		}
		if ((gw->reason = private_relation(q->rtable)) != NULL)
			return true;
		return query_tree_walker(q, guard_walker, gw, 0);
	}
	if (check_functions_in_node(node, function_refused, gw))
		return true;
	if (IsA(node, CoerceToDomain) &&
		domain_check_refused(((CoerceToDomain *) node)->resulttype, gw))
		return true;
	if (IsA(node, NextValueExpr))
	{
		gw->reason = pstrdup("sequence access is not allowed");
		return true;
	}
	return expression_tree_walker(node, guard_walker, gw);
}

/* The statement-level rules, on the raw parse tree. Returns a reason or NULL. */
static char *
check_raw(List *raw)
{
	RawStmt    *rs;
	SelectStmt *sel;

	if (list_length(raw) == 0)
		return pstrdup("the answer contains no SQL statement");
	if (list_length(raw) > 1)
		return psprintf("exactly one statement is allowed, found %d", list_length(raw));
	rs = linitial_node(RawStmt, raw);
	if (!IsA(rs->stmt, SelectStmt))
		return psprintf("only SELECT may run, found %s",
						GetCommandTagName(CreateCommandTag(rs->stmt)));
	sel = (SelectStmt *) rs->stmt;
	if (sel->intoClause != NULL)
		return pstrdup("SELECT … INTO is not allowed");
	if (sel->lockingClause != NIL)
		return pstrdup("locking clauses (FOR UPDATE/SHARE) are not allowed");
	return NULL;
}

/* Analyzes, vets, plans and privilege-checks; errors propagate to the caller's handler. */
static char *
check_statement(const char *sql)
{
	List	   *raw;
	char	   *reason;
	Query	   *query;
	List	   *rewritten;
	PlannedStmt *plan;
	GuardWalk	gw = {NULL};

	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	if ((reason = check_raw(raw)) != NULL)
		return reason;
	query = parse_analyze_fixedparams(linitial_node(RawStmt, raw), sql, NULL, 0, NULL);
	if (guard_walker((Node *) query, &gw))
		return gw.reason;
	/* Views and row-security policies expand here; their bodies are vetted like the rest. */
	rewritten = pg_rewrite_query(query);
	if (list_length(rewritten) != 1)
		return pstrdup("only SELECT may run: rules turn the query into several statements");
	query = linitial_node(Query, rewritten);
	if (guard_walker((Node *) query, &gw))
		return gw.reason;
	plan = pg_plan_query(query, sql, CURSOR_OPT_PARALLEL_OK, NULL);
	/* The executor's own permission check, as the calling role, without executing. */
	ExecCheckRTPerms(plan->rtable, true);
	return NULL;
}

/* Errors we report back (to the user and the model) rather than propagate. */
static bool
error_is_about_the_sql(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_TO_CATEGORY(ERRCODE_OPERATOR_INTERVENTION):	/* cancel, shutdown */
		case ERRCODE_TO_CATEGORY(ERRCODE_INSUFFICIENT_RESOURCES):
		case ERRCODE_TO_CATEGORY(ERRCODE_PROGRAM_LIMIT_EXCEEDED):
		case ERRCODE_TO_CATEGORY(ERRCODE_SYSTEM_ERROR):
		case ERRCODE_TO_CATEGORY(ERRCODE_INTERNAL_ERROR):
			return false;
		default:
			return true;
	}
}

char *
duet_guard_check(const char *sql)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	MemoryContext work;
	char	   *volatile reason = NULL;
	volatile TimestampTz previous = 0;
	volatile bool armed;

	if (sql == NULL || sql[0] == '\0')
		return pstrdup("the answer contains no SQL statement");
	if (strlen(sql) > GUARD_MAX_SQL_LEN)
		return psprintf("the SQL is longer than %d bytes", GUARD_MAX_SQL_LEN);

	work = AllocSetContextCreate(caller, "duet guard", ALLOCSET_DEFAULT_SIZES);

	/* A subtransaction: analysis takes locks and may fail; neither may outlive the check. */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(work);
	{
		TimestampTz prev;

		/* Analysis and planning are bounded like the run (which may have armed this already). */
		armed = duet_deadline_arm(duet_ask_run_timeout_ms, &prev);
		previous = prev;
	}
	PG_TRY();
	{
		char	   *r;

		duet_guard_enter();
		r = check_statement(sql);
		duet_guard_leave();
		if (r)
			reason = MemoryContextStrdup(caller, r);
		if (armed)
			duet_deadline_disarm(previous);
		MemoryContextSwitchTo(caller);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		duet_guard_leave();
		if (armed)
			duet_deadline_disarm(previous);
		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		if (!error_is_about_the_sql(edata->sqlerrcode))
			ReThrowError(edata);
		reason = edata->message ? pstrdup(edata->message) : pstrdup("the SQL is not valid");
		FreeErrorData(edata);
	}
	PG_END_TRY();

	MemoryContextDelete(work);
	return reason;
}

/* Trims ASCII whitespace in place at both ends. */
static char *
trim(char *s)
{
	char	   *end;

	while (*s && isspace((unsigned char) *s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char) end[-1]))
		*--end = '\0';
	return s;
}

char *
duet_guard_extract_sql(const char *reply)
{
	char	   *s = pstrdup(reply ? reply : "");
	char	   *fence = strstr(s, "```");

	if (fence)
	{
		char	   *body = fence + 3;
		char	   *close;

		/* Skip a language tag such as ```sql when it alone fills the fence line. */
		{
			char	   *p = body;

			while (isalpha((unsigned char) *p))
				p++;
			if (*p == '\n' || *p == '\r')
				body = p;
		}
		close = strstr(body, "```");
		if (close)
			*close = '\0';
		s = body;
	}
	s = trim(s);
	if (pg_strncasecmp(s, "sql:", 4) == 0)
		s = trim(s + 4);
	/* One trailing semicolon (and blanks) is punctuation; anything after it stays and is judged. */
	{
		size_t		len = strlen(s);

		while (len > 0 && (s[len - 1] == ';' || isspace((unsigned char) s[len - 1])))
			s[--len] = '\0';
	}
	return s;
}

PG_FUNCTION_INFO_V1(duet_ask_guard);

/* duet_ask_guard(sql) → NULL when the guard would let the SQL run, else why not. */
Datum
duet_ask_guard(PG_FUNCTION_ARGS)
{
	char	   *reason = duet_guard_check(duet_guard_extract_sql(text_to_cstring(PG_GETARG_TEXT_PP(0))));

	if (reason == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(reason));
}
