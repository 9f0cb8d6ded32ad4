/*
 * rules_trigger.c — row rules: AFTER INSERT ... REFERENCING NEW TABLE ... FOR EACH STATEMENT.
 *
 * One trigger call per INSERT (or COPY, or Kafka batch) evaluates every enabled row rule of the
 * table over the transition table in a single pass, with each rule's formulas compiled once.
 * Evaluation problems never fail the user's insert: they become the Error state of the alert.
 *
 * When the table has a text column named "tenant", a rule sees only its own tenant's rows, so
 * that a table shared by tenants (a Kafka ingestion target, say) cannot leak rows across them.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "pg_duet.h"
#include "rules.h"

PG_FUNCTION_INFO_V1(duet_rules_row_trigger);

typedef struct RowRule
{
	RuleRun    *run;
	char	   *tenant;
} RowRule;

/* Loads and prepares the table's enabled row rules (SPI connected, as the owner). */
/* Not inlined: its locals must not live in the caller's PG_TRY frame. */
pg_noinline static List *
load_row_rules(Oid relid, TupleDesc desc)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	List	   *rules = NIL;
	uint64		i;
	int			ret;

	args[0] = ObjectIdGetDatum(relid);
	ret = SPI_execute_with_args(psprintf("SELECT id, tenant, condition, value, labels, message, %s "
										 "FROM duet.rules WHERE target OPERATOR(pg_catalog.=) $1 AND enabled ORDER BY id",
										 rules_content_columns()),
								1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read row rules: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	sdesc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		labels_null;
		int64		id = DatumGetInt64(SPI_getbinval(tup, sdesc, 1, &isnull));
		char	   *tenant = SPI_getvalue(tup, sdesc, 2);
		char	   *condition = SPI_getvalue(tup, sdesc, 3);
		char	   *value = SPI_getvalue(tup, sdesc, 4);
		Datum		labels = SPI_getbinval(tup, sdesc, 5, &labels_null);
		RuleContent content;
		RowRule    *r = palloc(sizeof(RowRule));
		Datum		annotations = SPI_getbinval(tup, sdesc, 7, &isnull);

		content.message = SPI_getvalue(tup, sdesc, 6);
		content.annotations = isnull ? NULL : DatumGetJsonbP(annotations);
		content.resolve_message = SPI_getvalue(tup, sdesc, 8);
		r->tenant = tenant;
		r->run = rules_run_begin(id, tenant, condition, value, labels, labels_null, &content, desc);
		rules = lappend(rules, r);
	}
	return rules;
}

typedef struct TriggerRun
{
	TriggerData *td;
	AttrNumber	tenant_att;
	TimestampTz at;
} TriggerRun;

/* Evaluates the table's row rules over the transition table (as the owner, see below). */
static void
evaluate_row_rules(void *arg)
{
	TriggerRun *tr = arg;
	Relation	rel = tr->td->tg_relation;
	TupleDesc	desc = RelationGetDescr(rel);
	Tuplestorestate *ts = tr->td->tg_newtable;
	AttrNumber	tenant_att = tr->tenant_att;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext rowcxt;
	TupleTableSlot *slot;
	List	   *rules;
	ListCell   *lc;
	duet_vm    *vm;
	int			readptr;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(callcxt);
	rules = load_row_rules(RelationGetRelid(rel), desc);
	if (rules == NIL)
	{
		SPI_finish();
		return;
	}

	vm = duet_vm_new();
	if (vm == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	/* Our own read pointer: other AFTER triggers may read the same transition table. */
	readptr = tuplestore_alloc_read_pointer(ts, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(ts, readptr);
	tuplestore_rescan(ts);
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	rowcxt = AllocSetContextCreate(callcxt, "duet rule row", ALLOCSET_SMALL_SIZES);

	PG_TRY();
	{
		while (tuplestore_gettupleslot(ts, true, false, slot))
		{
			MemoryContext old;

			CHECK_FOR_INTERRUPTS();
			slot_getallattrs(slot);
			old = MemoryContextSwitchTo(rowcxt);
			foreach(lc, rules)
			{
				RowRule    *r = lfirst(lc);

				if (tenant_att != InvalidAttrNumber)
				{
					text	   *t;

					if (slot->tts_isnull[tenant_att - 1])
						continue;
					t = DatumGetTextPP(slot->tts_values[tenant_att - 1]);
					if (VARSIZE_ANY_EXHDR(t) != strlen(r->tenant) ||
						memcmp(VARDATA_ANY(t), r->tenant, VARSIZE_ANY_EXHDR(t)) != 0)
						continue;
				}
				rules_run_row(r->run, desc, slot->tts_values, slot->tts_isnull, vm);
			}
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
		}
	}
	PG_FINALLY();
	{
		duet_vm_free(vm);
	}
	PG_END_TRY();
	ExecDropSingleTupleTableSlot(slot);
	tuplestore_select_read_pointer(ts, 0);

	foreach(lc, rules)
		rules_run_observe(((RowRule *) lfirst(lc))->run, tr->at);

	SPI_finish();
}

Datum
duet_rules_row_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	TriggerRun	tr;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("duet_rules_row_trigger() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event) || td->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("duet_rules_row_trigger() must be an AFTER INSERT statement trigger with a NEW TABLE")));

	desc = RelationGetDescr(td->tg_relation);
	tr.td = td;
	tr.at = GetCurrentStatementStartTimestamp();
	tr.tenant_att = rules_column(desc, "tenant");
	if (tr.tenant_att != InvalidAttrNumber &&
		getBaseType(TupleDescAttr(desc, tr.tenant_att - 1)->atttypid) != TEXTOID &&
		getBaseType(TupleDescAttr(desc, tr.tenant_att - 1)->atttypid) != VARCHAROID)
		tr.tenant_att = InvalidAttrNumber;

	/*
	 * The rule tables belong to the owner: whoever inserts, the rules are read and the alerts
	 * written as the owner, on the privileged path, so nothing the inserting role created on its
	 * search_path is resolved meanwhile.
	 */
	duet_run_privileged(duet_extension_owner(), NULL, evaluate_row_rules, &tr);
	return PointerGetDatum(NULL);
}
