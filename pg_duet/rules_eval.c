/*
 * rules_eval.c — one evaluation of one rule over many rows, grouped into alert instances.
 *
 * Shared by row rules (the rows of an INSERT's transition table) and query rules (the rows of
 * the rule's query). Formulas are compiled once per run against the rows' shape; each row costs
 * one bind and one VM evaluation, plus the label key when the rule has labels. The state machine
 * (duet.duet_alert_observe) is called once per instance, not per row.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "monitor.h"
#include "metrics.h"
#include "pg_duet.h"
#include "rules.h"

typedef struct RuleInstance
{
	char	   *key;			/* hash key: label texts joined by \x1f; first field */
	Jsonb	   *labels;
	char		outcome;		/* 'f' false, 't' true, 'e' error */
	Jsonb	   *value;
	char	   *message;
	char	   *resolve;		/* not firing: the rendered resolve message */
	Jsonb	   *annotations;	/* firing: rendered annotations, NULL when the rule has none */
	char	   *error;
} RuleInstance;

static uint32
key_hash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	return hash_bytes((const unsigned char *) s, (int) strlen(s));
}

static int
key_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(char *const *) key1, *(char *const *) key2);
}

/* Compiles the rule for the rows' shape, in run->cxt. Raises on any problem. */
static void
prepare_run(RuleRun *run, const char *condition, const char *value, Datum labels_array,
			bool labels_null, const RuleContent *content, TupleDesc desc)
{
	int			i;
	int			nvars;

	/*
	 * The rule's tenant's metrics, whoever's statement fires it (metrics_resolve.c): for the
	 * condition, the value and the formulas of the message, resolve message and annotations.
	 */
	duet_metrics_rule_scope(true, run->tenant);
	PG_TRY();
	{
		run->cond = rules_formula_compile(condition, "condition", desc, true);
		run->value = value ? rules_formula_compile(value, "value", desc, false) : NULL;
		run->value_format = value ? rules_unit_formatter(value) : NULL;
		run->tmpl = rules_template_parse(content->message, desc, value != NULL);
		run->resolve_tmpl = rules_template_parse(content->resolve_message, desc, value != NULL);
		if (content->annotations && JB_ROOT_IS_OBJECT(content->annotations) &&
			JB_ROOT_COUNT(content->annotations) > 0)
		{
			JsonbIterator *it = JsonbIteratorInit(&content->annotations->root);
			JsonbValue	v;
			JsonbIteratorToken tok;
			int			cap = JB_ROOT_COUNT(content->annotations);
			char	   *key = NULL;

			run->annot_names = palloc(sizeof(char *) * cap);
			run->annot_tmpls = palloc(sizeof(RuleTemplate *) * cap);
			while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			{
				if (tok == WJB_KEY)
					key = pnstrdup(v.val.string.val, v.val.string.len);
				else if (tok == WJB_VALUE && v.type == jbvString && run->nannot < cap)
				{
					run->annot_names[run->nannot] = key;
					run->annot_tmpls[run->nannot++] =
						rules_template_parse(pnstrdup(v.val.string.val, v.val.string.len), desc, value != NULL);
				}
			}
		}
	}
	PG_FINALLY();
	{
		duet_metrics_rule_scope(false, NULL);
	}
	PG_END_TRY();
	if (!labels_null)
	{
		Datum	   *elems;
		bool	   *enulls;

		deconstruct_array(DatumGetArrayTypeP(labels_array), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &enulls, &run->nlabels);
		run->label_names = palloc(sizeof(char *) * Max(run->nlabels, 1));
		run->label_attnos = palloc(sizeof(AttrNumber) * Max(run->nlabels, 1));
		run->label_types = palloc(sizeof(Oid) * Max(run->nlabels, 1));
		for (i = 0; i < run->nlabels; i++)
		{
			if (enulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("rule labels must not contain NULL")));
			run->label_names[i] = TextDatumGetCString(elems[i]);
			run->label_attnos[i] = rules_column(desc, run->label_names[i]);
			if (run->label_attnos[i] == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("rule label \"%s\" is not a column of the rows the rule is evaluated on",
								run->label_names[i])));
			run->label_types[i] = getBaseType(TupleDescAttr(desc, run->label_attnos[i] - 1)->atttypid);
		}
	}
	initStringInfo(&run->keybuf);
	nvars = Max(run->cond->nvars, run->value ? run->value->nvars : 0);
	run->vars = palloc(sizeof(duet_value) * Max(nvars, 1));
}

RuleRun *
rules_run_begin(int64 rule_id, const char *tenant, const char *condition, const char *value,
				Datum labels_array, bool labels_null, const RuleContent *content, TupleDesc desc)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "duet rule run",
											  ALLOCSET_DEFAULT_SIZES);
	RuleRun    *run = MemoryContextAllocZero(cxt, sizeof(RuleRun));
	HASHCTL		ctl;

	run->cxt = cxt;
	run->rule_id = rule_id;
	run->tenant = MemoryContextStrdup(cxt, tenant);

	/* A rule broken by a schema change must not fail the statement: catch, keep as an Error. */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		prepare_run(run, condition, value, labels_array, labels_null, content, desc);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		run->setup_error = edata->message;
	}
	PG_END_TRY();

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(RuleInstance);
	ctl.hash = key_hash;
	ctl.match = key_match;
	ctl.hcxt = cxt;
	run->instances = hash_create("duet rule instances", 64, &ctl,
								 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	return run;
}

/* The label values of a row as jsonb text, e.g. {"campaign_id": "3"} (values are text). */
static Jsonb *
labels_jsonb(RuleRun *run, char **texts)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < run->nlabels; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, run->label_names[i]);
		appendStringInfoString(&buf, ": ");
		escape_json(&buf, texts[i]);
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* The rendered annotations of a row as a jsonb object of strings. */
static Jsonb *
render_annotations(RuleRun *run, TupleDesc desc, Datum *values, bool *nulls, const char *vtext,
				   duet_vm *vm)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < run->nannot; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, run->annot_names[i]);
		appendStringInfoString(&buf, ": ");
		escape_json(&buf, rules_template_render(run->annot_tmpls[i], desc, values, nulls, vtext, vm));
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * Value and rendered content of a row, into the instance: for a row meeting the condition
 * (firing) the message and annotations, for another the resolve message.
 */
static void
fill_report(RuleRun *run, RuleInstance *inst, TupleDesc desc, Datum *values, bool *nulls, duet_vm *vm,
			bool firing)
{
	duet_value	v;
	char	   *vtext = NULL;
	char	   *err = NULL;
	Jsonb	   *vjson = NULL;
	MemoryContext old;

	if (run->value)
	{
		rules_bind_row(run->value, values, nulls, run->vars);
		if (rules_eval(run->value, vm, run->vars, &v, &err))
		{
			old = MemoryContextSwitchTo(run->cxt);
			vjson = pgcalc_value_jsonb(&v);
			MemoryContextSwitchTo(old);
			vtext = rules_format(run->value_format, vm, &v);	/* the value computed once */
		}
		else
			vtext = psprintf("error: %s", err);
	}
	old = MemoryContextSwitchTo(run->cxt);
	inst->value = vjson;
	inst->message = rules_template_render(run->tmpl, desc, values, nulls, vtext, vm);
	inst->annotations = firing && run->nannot > 0 ?
		render_annotations(run, desc, values, nulls, vtext, vm) : NULL;
	inst->resolve = firing ? NULL : rules_template_render(run->resolve_tmpl, desc, values, nulls, vtext, vm);
	MemoryContextSwitchTo(old);
}

/*
 * The instance key of a row: each label's text, length-prefixed so that no value can imitate a
 * separator. Built in a buffer reused across rows; integers and text skip the output functions.
 */
static char *
label_key(RuleRun *run, TupleDesc desc, Datum *values, bool *nulls)
{
	StringInfo	kb = &run->keybuf;
	int			i;

	resetStringInfo(kb);
	for (i = 0; i < run->nlabels; i++)
	{
		AttrNumber	a = run->label_attnos[i];
		Datum		d = values[a - 1];
		char		num[MAXINT8LEN + 1];
		const char *p;
		int			len;

		if (nulls[a - 1])
		{
			appendStringInfoString(kb, "N;");
			continue;
		}
		switch (run->label_types[i])
		{
			case INT2OID:
				len = pg_ltoa(DatumGetInt16(d), num);
				p = num;
				break;
			case INT4OID:
				len = pg_ltoa(DatumGetInt32(d), num);
				p = num;
				break;
			case INT8OID:
				len = pg_lltoa(DatumGetInt64(d), num);
				p = num;
				break;
			case TEXTOID:
			case VARCHAROID:
				{
					text	   *t = DatumGetTextPP(d);

					p = VARDATA_ANY(t);
					len = VARSIZE_ANY_EXHDR(t);
					break;
				}
			default:
				p = rules_column_text(desc, a, d, false);
				len = strlen(p);
				break;
		}
		appendStringInfo(kb, "%d:", len);
		appendBinaryStringInfo(kb, p, len);
	}
	return kb->data;
}

void
rules_run_row(RuleRun *run, TupleDesc desc, Datum *values, bool *nulls, duet_vm *vm)
{
	duet_value	out;
	char	   *err = NULL;
	char		outcome;
	char	   *key = "";
	char	  **texts = NULL;
	RuleInstance *inst;
	bool		found;
	MemoryContext old;

	run->nrows++;
	if (run->setup_error)
		return;

	rules_bind_row(run->cond, values, nulls, run->vars);
	if (!rules_eval(run->cond, vm, run->vars, &out, &err))
		outcome = 'e';
	else if (out.type == DUET_T_BOOL)
		outcome = out.u.boolean ? 't' : 'f';
	else if (out.type == DUET_T_NULL)
		outcome = 'f';			/* unknown is not a firing condition, as in a WHERE clause */
	else
	{
		outcome = 'e';
		err = psprintf("rule condition returned a %s, not a boolean", duet_type_name(out.type));
	}

	if (run->nlabels > 0)
		key = label_key(run, desc, values, nulls);
	inst = hash_search(run->instances, &key, HASH_ENTER, &found);
	old = MemoryContextSwitchTo(run->cxt);
	if (!found)
	{
		int			i;

		/* A new instance (rare): its label texts, as labels and messages show them. */
		texts = palloc(sizeof(char *) * Max(run->nlabels, 1));
		for (i = 0; i < run->nlabels; i++)
		{
			AttrNumber	a = run->label_attnos[i];

			texts[i] = rules_column_text(desc, a, values[a - 1], nulls[a - 1]);
		}
		inst->key = pstrdup(key);
		inst->labels = labels_jsonb(run, texts);
		inst->outcome = 'f';
		inst->value = NULL;
		inst->message = NULL;
		inst->annotations = NULL;
		inst->resolve = NULL;
		inst->error = NULL;
		run->order = lappend(run->order, inst);
	}
	MemoryContextSwitchTo(old);

	if (outcome == 't' && inst->outcome != 't')
	{
		/* The first row meeting the condition is the one the alert reports. */
		fill_report(run, inst, desc, values, nulls, vm, true);
		inst->outcome = 't';
		inst->error = NULL;
	}
	else if (!found)
		fill_report(run, inst, desc, values, nulls, vm, false);	/* what a recovery reports */
	if (outcome == 'e' && inst->outcome == 'f')
	{
		inst->outcome = 'e';
		inst->error = MemoryContextStrdup(run->cxt, err);
	}
}

/* duet_sql_is_current(), asked once per transaction: rules_observe runs once per instance. */
static bool
sql_current(void)
{
	static LocalTransactionId asked_in = InvalidLocalTransactionId;
	static bool current;

	if (MyProc->lxid != asked_in)
	{
		current = duet_sql_is_current();
		asked_in = MyProc->lxid;
	}
	return current;
}

const char *
rules_content_columns(void)
{
	/* Before ALTER EXTENSION pg_duet UPDATE the rules have no annotations (0.1.0). */
	return sql_current() ? "annotations, resolve_message"
		: "NULL::pg_catalog.jsonb, NULL::pg_catalog.text";
}

void
rules_observe(int64 rule_id, Jsonb *labels, const char *outcome, Jsonb *value, const char *message,
			  const char *error, TimestampTz at, Jsonb *annotations)
{
	static SPIPlanPtr plans[2];	/* the previous version's SQL, the current one's */
	bool		current = sql_current();
	SPIPlanPtr	plan;
	Datum		args[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int			ret;

	plan = duet_spi_plan(&plans[current], current ? "SELECT duet.duet_alert_observe($1, $2, $3, $4, $5, $6, $7, $8)"
						 : "SELECT duet.duet_alert_observe($1, $2, $3, $4, $5, $6, $7)", current ? 8 : 7,
						 (Oid[]) {INT8OID, JSONBOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, JSONBOID});
	args[0] = Int64GetDatum(rule_id);
	args[1] = JsonbPGetDatum(labels);
	args[2] = CStringGetTextDatum(outcome);
	if (value)
		args[3] = JsonbPGetDatum(value);
	else
		nulls[3] = 'n';
	if (message)
		args[4] = CStringGetTextDatum(message);
	else
		nulls[4] = 'n';
	if (error)
		args[5] = CStringGetTextDatum(error);
	else
		nulls[5] = 'n';
	args[6] = TimestampTzGetDatum(at);
	if (annotations)
		args[7] = JsonbPGetDatum(annotations);
	else
		nulls[7] = 'n';
	ret = SPI_execute_plan(plan, args, nulls, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "alert observation failed: %s", SPI_result_code_string(ret));
}

/*
 * Label sets (as jsonb text) of the rule's instances that a false observation would change:
 * pending, firing, recovering, error, no data. A false observation of any other instance is a
 * no-op (normal stays normal, resolved stays resolved), so it is not written at all: the cost of
 * a statement follows its active alerts, not the number of label values it touched.
 */
static HTAB *
load_active_labels(int64 rule_id)
{
	static SPIPlanPtr plan = NULL;
	HTAB	   *set;
	HASHCTL		ctl;
	Datum		arg = Int64GetDatum(rule_id);
	uint64		i;
	int			ret;

	duet_spi_plan(&plan, "SELECT labels::pg_catalog.text FROM duet.alerts WHERE rule_id OPERATOR(pg_catalog.=) $1 "
				  "AND state IN ('pending', 'firing', 'recovering', 'error', 'nodata')", 1, (Oid[]) {INT8OID});
	ret = SPI_execute_plan(plan, &arg, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read active alerts: %s", SPI_result_code_string(ret));

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(char *);
	ctl.hash = key_hash;
	ctl.match = key_match;
	ctl.hcxt = CurrentMemoryContext;
	set = hash_create("duet active alerts", Max(SPI_processed, 16), &ctl,
					  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *labels = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	  **entry = hash_search(set, &labels, HASH_ENTER, NULL);

		*entry = labels;
	}
	SPI_freetuptable(SPI_tuptable);
	return set;
}

static int
instance_cmp(const ListCell *a, const ListCell *b)
{
	return strcmp(((RuleInstance *) lfirst(a))->key, ((RuleInstance *) lfirst(b))->key);
}

void
rules_run_observe(RuleRun *run, TimestampTz at)
{
	ListCell   *lc;
	HTAB	   *active = NULL;
	bool		failed = run->setup_error != NULL;

	foreach(lc, run->order)
		failed |= ((RuleInstance *) lfirst(lc))->outcome == 'e';
	/* One evaluation of the rule, whatever its outcome (monitor_stats.c). */
	duet_monitor_count_rule(run->rule_id, run->nrows, failed);

	if (run->setup_error)
	{
		rules_observe(run->rule_id,
					  DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))),
					  "error", NULL, NULL, run->setup_error, at, NULL);
		return;
	}

	/*
	 * Observing locks each alert row; concurrent statements lock in the same (key) order, so two
	 * inserts touching the same campaigns queue instead of deadlocking.
	 */
	list_sort(run->order, instance_cmp);
	foreach(lc, run->order)
	{
		RuleInstance *inst = lfirst(lc);

		if (inst->outcome == 'f')
		{
			char	   *text;

			if (active == NULL)
				active = load_active_labels(run->rule_id);
			text = JsonbToCString(NULL, &inst->labels->root, VARSIZE(inst->labels));
			if (hash_search(active, &text, HASH_FIND, NULL) == NULL)
				continue;
		}
		rules_observe(run->rule_id, inst->labels,
					  inst->outcome == 't' ? "true" : inst->outcome == 'e' ? "error" : "false",
					  inst->value, inst->outcome == 't' ? inst->message : inst->resolve, inst->error, at,
					  inst->annotations);
	}
}

Datum
rules_run_seen(RuleRun *run)
{
	int			n = list_length(run->order);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	ListCell   *lc;
	int			i = 0;

	foreach(lc, run->order)
		elems[i++] = JsonbPGetDatum(((RuleInstance *) lfirst(lc))->labels);
	return PointerGetDatum(construct_array(elems, n, JSONBOID, -1, false, TYPALIGN_INT));
}

Jsonb *
rules_run_describe(RuleRun *run)
{
	RuleInstance *inst = linitial(run->order);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"fires\": %s, \"outcome\": \"%s\", \"labels\": %s, \"value\": %s, "
					 "\"message\": ",
					 inst->outcome == 't' ? "true" : "false",
					 inst->outcome == 't' ? "true" : inst->outcome == 'e' ? "error" : "false",
					 JsonbToCString(NULL, &inst->labels->root, VARSIZE(inst->labels)),
					 inst->value ? JsonbToCString(NULL, &inst->value->root, VARSIZE(inst->value)) : "null");
	if (inst->message)
		escape_json(&buf, inst->message);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"error\": ");
	if (inst->error)
		escape_json(&buf, inst->error);
	else
		appendStringInfoString(&buf, "null");
	/* Only for rules that have them, so the answer for other rules stays as it was. */
	if (inst->annotations)
		appendStringInfo(&buf, ", \"annotations\": %s",
						 JsonbToCString(NULL, &inst->annotations->root, VARSIZE(inst->annotations)));
	if (inst->resolve)
	{
		appendStringInfoString(&buf, ", \"resolve_message\": ");
		escape_json(&buf, inst->resolve);
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
