/*
 * rules_formula.c — rule formulas against rows: compile once per row shape, bind columns by
 * name, evaluate, and render message templates.
 *
 * A rule's formulas are compiled when its statement or evaluation starts, against the tuple
 * descriptor of the rows it will see (the trigger's table or the query's result), so that a
 * variable is resolved to a column number once and type errors show up at rule creation.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "calc_pg.h"
#include "metrics.h"
#include "rules.h"

AttrNumber
rules_column(TupleDesc desc, const char *name)
{
	/* The value layer's rule (calc_value.c), so formulas, labels and placeholders agree. */
	return pgcalc_find_column(desc, name, NULL) + 1;
}

static char *
column_list(TupleDesc desc)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", NameStr(att->attname));
	}
	return buf.data;
}

/* The static type of a variable, as duet_calc's row form gives it (calc_value.c). */
static duet_type
var_type(void *arg, const char *name, size_t len)
{
	TupleDesc	desc = (TupleDesc) arg;
	char	   *n = pgcalc_from_utf8(name, len);
	AttrNumber	attno = rules_column(desc, n);
	PgcalcColumn col;

	pfree(n);
	if (attno == InvalidAttrNumber)
		return DUET_T_ANY;
	return pgcalc_sig_type(pgcalc_column_init(&col, TupleDescAttr(desc, attno - 1)->atttypid,
											  CurrentMemoryContext));
}

/* Programs are malloc'd by calc; free them with the memory context that holds the formula. */
static void
free_program(void *arg)
{
	duet_program_free((duet_program *) arg);
}

/* A formula of prog (its variables not yet bound to columns), freed with CurrentMemoryContext. */
static RuleFormula *
formula_new(duet_program *prog)
{
	MemoryContextCallback *cb = MemoryContextAlloc(CurrentMemoryContext, sizeof(MemoryContextCallback));
	RuleFormula *f = palloc0(sizeof(RuleFormula));

	cb->func = free_program;
	cb->arg = prog;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	f->prog = prog;
	f->nvars = (int) duet_program_nvars(prog);
	return f;
}

RuleFormula *
rules_formula_compile(const char *src, const char *what, TupleDesc desc, bool must_be_boolean)
{
	duet_compile_options opts = {0};
	duet_error	err;
	duet_program *prog;
	RuleFormula *f;
	duet_type	t;
	int			i;

	opts.var_type = var_type;
	opts.var_type_arg = desc;
	memset(&err, 0, sizeof(err));
	(void) duet_metrics_load(false);
	duet_metrics_options(&opts);
	prog = duet_compile(src, strlen(src), &opts, &err);
	if (prog == NULL)
	{
		if (err.line > 0)
			ereport(ERROR,
					(errcode(pgcalc_errcode(err.cls)),
					 errmsg("invalid rule %s: %s at line %d, column %d", what, err.message,
							err.line, err.column),
					 err.excerpt[0] ? errdetail("%s", err.excerpt) : 0));
		ereport(ERROR,
				(errcode(pgcalc_errcode(err.cls)),
				 errmsg("invalid rule %s: %s", what, err.message)));
	}

	f = formula_new(prog);
	f->attnos = palloc0(sizeof(AttrNumber) * Max(f->nvars, 1));
	f->cols = palloc0(sizeof(PgcalcColumn) * Max(f->nvars, 1));
	for (i = 0; i < f->nvars; i++)
	{
		const char *utf8name = duet_program_var(prog, i);
		char	   *name = pgcalc_from_utf8(utf8name, strlen(utf8name));

		f->attnos[i] = rules_column(desc, name);
		if (f->attnos[i] == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("rule %s refers to unknown column \"%s\"", what, name),
					 errdetail("The rows it is evaluated on have the columns: %s.", column_list(desc))));
		(void) pgcalc_column_init_or_error(&f->cols[i], TupleDescAttr(desc, f->attnos[i] - 1)->atttypid,
										   name, CurrentMemoryContext);
	}
	t = duet_program_type(prog);
	if (must_be_boolean && t != DUET_T_BOOL && t != DUET_T_ANY && t != DUET_T_NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("rule %s must be boolean, not %s", what, duet_type_name(t)),
				 errhint("Compare the value, for example \"spend > budget\".")));
	return f;
}

/* The formula's inputs from a row, through the value layer (calc_value.c), as duet_calc binds them. */
void
rules_bind_row(const RuleFormula *f, const Datum *values, const bool *nulls, duet_value *vars)
{
	for (int i = 0; i < f->nvars; i++)
	{
		int			c = f->attnos[i] - 1;

		vars[i] = nulls[c] ? duet_null() : pgcalc_datum_value(&f->cols[i], values[c]);
	}
}

bool
rules_eval(const RuleFormula *f, duet_vm *vm, const duet_value *vars, duet_value *out, char **errmsg)
{
	duet_error	err;

	err.message[0] = '\0';
	pgcalc_set_now(vm);
	if (duet_eval(f->prog, vars, vm, out, &err) != DUET_OK)
	{
		*errmsg = pstrdup(err.message[0] ? err.message : "evaluation failed");
		return false;
	}
	return true;
}

char *
rules_column_text(TupleDesc desc, AttrNumber attno, Datum value, bool isnull)
{
	Oid			typoutput;
	bool		varlena;

	if (isnull)
		return pstrdup("null");
	getTypeOutputInfo(TupleDescAttr(desc, attno - 1)->atttypid, &typoutput, &varlena);
	return OidOutputFunctionCall(typoutput, value);
}

/*
 * A placeholder (or a rule's value) that is exactly one call of a metric with a unit renders by
 * that unit (docs/alerting.md, "Units"): returns a program over the one variable `value` in calc's
 * formatting function, applied to the result already computed (rules_format), or NULL when src is
 * anything else, so {roas(revenue, spend) * 1} still prints the plain number. Call with the
 * rule's metric scope loaded (rules_formula_compile loads it).
 */
RuleFormula *
rules_unit_formatter(const char *src)
{
	const char *p = src;
	const char *name;
	const char *format;
	const DuetMetric *m;
	int			depth = 0;
	char		quote = 0;
	duet_error	err;
	duet_program *prog;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	name = p;
	while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')
		p++;
	if (p == name || (*name >= '0' && *name <= '9') || *p != '(')
		return NULL;
	m = duet_metrics_find(name, p - name);
	if (m == NULL || m->unit == NULL)
		return NULL;
	for (; *p; p++)
	{
		if (quote)
		{
			if (*p == quote && p[1] == quote)
				p++;			/* a doubled quote stays inside */
			else if (*p == quote)
				quote = 0;
		}
		else if (*p == '\'' || *p == '"')
			quote = *p;
		else if (*p == '(')
			depth++;
		else if (*p == ')' && --depth == 0)
			break;
	}
	if (*p != ')')
		return NULL;			/* unbalanced: the compiler reports it */
	for (p++; *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'; p++)
		;
	if (*p != '\0')
		return NULL;			/* roas() * 100: an expression over the metric, not the metric */
	/* percent: the value is in points, as round(x * 100, 1) gives it (docs/metrics.md) */
	if (strcmp(m->unit, "percent") == 0)
		format = "format_number(value, 1) || '%'";
	else if (strcmp(m->unit, "currency") == 0 || strcmp(m->unit, "ratio") == 0)
		format = "format_number(value, 2)";
	else if (strcmp(m->unit, "integer") == 0)
		format = "format_number(value, 0)";
	else
		return NULL;
	memset(&err, 0, sizeof(err));
	prog = duet_compile(format, strlen(format), NULL, &err);	/* value: of any type */
	if (prog == NULL)
		elog(ERROR, "unit format \"%s\" does not compile: %s", format, err.message);
	return formula_new(prog);
}

/*
 * The text of a formula's result v: by its unit's formatter when there is one and v is a number
 * (or NULL), else as the value's text.
 */
char *
rules_format(const RuleFormula *formatter, duet_vm *vm, const duet_value *v)
{
	duet_value	shown;
	char	   *err = NULL;

	if (formatter && (v->type == DUET_T_NUMBER || v->type == DUET_T_INT || v->type == DUET_T_NULL) &&
		rules_eval(formatter, vm, v, &shown, &err))
		return pgcalc_value_text(&shown);
	return pgcalc_value_text(v);
}

RuleTemplate *
rules_template_parse(const char *tmpl, TupleDesc desc, bool has_value)
{
	RuleTemplate *t;
	StringInfoData lit;
	const char *p = tmpl;
	int			cap = 8;

	if (tmpl == NULL)
		return NULL;
	t = palloc0(sizeof(RuleTemplate));
	t->literal = palloc(sizeof(char *) * cap);
	t->attnos = palloc(sizeof(AttrNumber) * cap);
	t->exprs = palloc0(sizeof(RuleFormula *) * cap);
	t->formats = palloc0(sizeof(RuleFormula *) * cap);
	initStringInfo(&lit);
	for (;;)
	{
		if (*p == '{' && p[1] == '{')
		{
			appendStringInfoChar(&lit, '{');
			p += 2;
			continue;
		}
		if (*p == '}' && p[1] == '}')
		{
			appendStringInfoChar(&lit, '}');
			p += 2;
			continue;
		}
		if (*p != '{' && *p != '\0')
		{
			appendStringInfoChar(&lit, *p++);
			continue;
		}
		if (t->nparts == cap)
		{
			cap *= 2;
			t->literal = repalloc(t->literal, sizeof(char *) * cap);
			t->attnos = repalloc(t->attnos, sizeof(AttrNumber) * cap);
			t->exprs = repalloc(t->exprs, sizeof(RuleFormula *) * cap);
			memset(t->exprs + cap / 2, 0, sizeof(RuleFormula *) * (cap / 2));
			t->formats = repalloc(t->formats, sizeof(RuleFormula *) * cap);
			memset(t->formats + cap / 2, 0, sizeof(RuleFormula *) * (cap / 2));
		}
		t->literal[t->nparts] = pstrdup(lit.data);
		resetStringInfo(&lit);
		if (*p == '\0')
		{
			t->attnos[t->nparts++] = -1;
			break;
		}
		else
		{
			const char *end = strchr(p, '}');
			char	   *name;
			AttrNumber	attno;

			if (end == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unterminated placeholder in rule message at character %d",
								(int) (p - tmpl) + 1),
						 errhint("Write {column}, or {{ for a literal brace.")));
			name = pnstrdup(p + 1, end - p - 1);
			if (has_value && strcmp(name, "value") == 0)
				attno = 0;
			else if ((attno = rules_column(desc, name)) == InvalidAttrNumber)
			{
				/*
				 * Not a column: a Duet formula over the columns, {roas * 100} or
				 * {format_number(spend, 2)}, compiled once like the rule's value.
				 */
				if (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == strlen(name))
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("rule message refers to unknown column \"%s\"", name),
							 errdetail("The rows it is rendered from have the columns: %s%s.",
									   column_list(desc), has_value ? " (and {value})" : "")));
				t->exprs[t->nparts] = rules_formula_compile(name, "message placeholder", desc, false);
				t->formats[t->nparts] = rules_unit_formatter(name);
				attno = TEMPLATE_EXPR;
			}
			t->attnos[t->nparts++] = attno;
			p = end + 1;
		}
	}
	return t;
}

char *
rules_template_render(const RuleTemplate *t, TupleDesc desc, const Datum *values, const bool *nulls,
					  const char *valuetext, duet_vm *vm)
{
	StringInfoData buf;
	int			i;

	if (t == NULL)
		return NULL;
	initStringInfo(&buf);
	for (i = 0; i < t->nparts; i++)
	{
		appendStringInfoString(&buf, t->literal[i]);
		if (t->attnos[i] == TEMPLATE_EXPR)
		{
			const RuleFormula *f = t->exprs[i];
			duet_value *vars = palloc(sizeof(duet_value) * Max(f->nvars, 1));
			duet_value	v;
			char	   *err = NULL;

			rules_bind_row(f, values, nulls, vars);
			if (rules_eval(f, vm, vars, &v, &err))
				appendStringInfoString(&buf, rules_format(t->formats[i], vm, &v));
			else
				appendStringInfo(&buf, "error: %s", err);
			pfree(vars);
		}
		else if (t->attnos[i] == 0)
			appendStringInfoString(&buf, valuetext ? valuetext : "null");
		else if (t->attnos[i] > 0)
			appendStringInfoString(&buf, rules_column_text(desc, t->attnos[i],
														   values[t->attnos[i] - 1],
														   nulls[t->attnos[i] - 1]));
	}
	return buf.data;
}
