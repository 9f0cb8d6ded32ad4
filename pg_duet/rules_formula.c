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
#include "rules.h"

/* How a column becomes a formula value. */
typedef enum ColumnKind
{
	COL_NUMBER,
	COL_BOOL,
	COL_TEXT,					/* text-like: the bytes themselves */
	COL_OTHER					/* any other type: its text output, as a string */
} ColumnKind;

static ColumnKind
column_kind(Oid typid)
{
	switch (getBaseType(typid))
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
		case OIDOID:
			return COL_NUMBER;
		case BOOLOID:
			return COL_BOOL;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NAMEOID:
			return COL_TEXT;
		default:
			return COL_OTHER;
	}
}

AttrNumber
rules_column(TupleDesc desc, const char *name)
{
	int			i;

	/* Exact name first; then case-insensitively, as an unquoted SQL identifier would match. */
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i + 1;
	}
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && pg_strcasecmp(NameStr(att->attname), name) == 0)
			return i + 1;
	}
	return InvalidAttrNumber;
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

static duet_type
var_type(void *arg, const char *name, size_t len)
{
	TupleDesc	desc = (TupleDesc) arg;
	char	   *n = pnstrdup(name, len);
	AttrNumber	attno = rules_column(desc, n);

	pfree(n);
	if (attno == InvalidAttrNumber)
		return DUET_T_ANY;
	if (TupleDescAttr(desc, attno - 1)->atttypid == UNKNOWNOID)
		return DUET_T_ANY;		/* duet_rule_test: a null whose type the row does not say */
	switch (column_kind(TupleDescAttr(desc, attno - 1)->atttypid))
	{
		case COL_NUMBER:
			return DUET_T_NUMBER;
		case COL_BOOL:
			return DUET_T_BOOL;
		default:
			return DUET_T_STRING;
	}
}

/* Programs are malloc'd by calc; free them with the memory context that holds the formula. */
static void
free_program(void *arg)
{
	duet_program_free((duet_program *) arg);
}

RuleFormula *
rules_formula_compile(const char *src, const char *what, TupleDesc desc, bool must_be_boolean)
{
	duet_compile_options opts = {0};
	duet_error	err;
	duet_program *prog;
	RuleFormula *f;
	MemoryContextCallback *cb;
	duet_type	t;
	int			i;

	opts.var_type = var_type;
	opts.var_type_arg = desc;
	memset(&err, 0, sizeof(err));
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

	cb = MemoryContextAlloc(CurrentMemoryContext, sizeof(MemoryContextCallback));
	cb->func = free_program;
	cb->arg = prog;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);

	f = palloc0(sizeof(RuleFormula));
	f->prog = prog;
	f->nvars = (int) duet_program_nvars(prog);
	f->attnos = palloc0(sizeof(AttrNumber) * Max(f->nvars, 1));
	f->basetypes = palloc0(sizeof(Oid) * Max(f->nvars, 1));
	for (i = 0; i < f->nvars; i++)
	{
		const char *name = duet_program_var(prog, i);

		f->attnos[i] = rules_column(desc, name);
		if (f->attnos[i] == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("rule %s refers to unknown column \"%s\"", what, name),
					 errdetail("The rows it is evaluated on have the columns: %s.", column_list(desc))));
		f->basetypes[i] = getBaseType(TupleDescAttr(desc, f->attnos[i] - 1)->atttypid);
	}
	t = duet_program_type(prog);
	if (must_be_boolean && t != DUET_T_BOOL && t != DUET_T_ANY && t != DUET_T_NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("rule %s must be boolean, not %s", what, duet_type_name(t)),
				 errhint("Compare the value, for example \"spend > budget\".")));
	return f;
}

void
rules_bind_row(const RuleFormula *f, TupleDesc desc, const Datum *values, const bool *nulls,
			   duet_value *vars)
{
	int			i;

	for (i = 0; i < f->nvars; i++)
	{
		int			c = f->attnos[i] - 1;
		Oid			typid = f->basetypes[i];
		Datum		d = values[c];

		if (nulls[c])
		{
			vars[i] = duet_null();
			continue;
		}
		switch (typid)
		{
			case INT2OID:
				vars[i] = duet_number(DatumGetInt16(d));
				break;
			case INT4OID:
				vars[i] = duet_number(DatumGetInt32(d));
				break;
			case INT8OID:
				vars[i] = duet_number((double) DatumGetInt64(d));
				break;
			case OIDOID:
				vars[i] = duet_number(DatumGetObjectId(d));
				break;
			case FLOAT4OID:
			case FLOAT8OID:
			case NUMERICOID:
				{
					double		x;

					if (typid == FLOAT4OID)
						x = DatumGetFloat4(d);
					else if (typid == FLOAT8OID)
						x = DatumGetFloat8(d);
					else
						x = DatumGetFloat8(DirectFunctionCall1(numeric_float8, d));
					/* Duet numbers are finite: NaN and infinities are NULL. */
					vars[i] = isfinite(x) ? duet_number(x) : duet_null();
					break;
				}
			case BOOLOID:
				vars[i] = duet_bool(DatumGetBool(d));
				break;
			case TEXTOID:
			case VARCHAROID:
			case BPCHAROID:
				{
					text	   *t = DatumGetTextPP(d);

					vars[i] = duet_string(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
					break;
				}
			case NAMEOID:
				vars[i] = duet_string(NameStr(*DatumGetName(d)), strlen(NameStr(*DatumGetName(d))));
				break;
			default:
				{
					char	   *s = rules_column_text(desc, c + 1, d, false);

					vars[i] = duet_string(s, strlen(s));
					break;
				}
		}
	}
}

bool
rules_eval(const RuleFormula *f, duet_vm *vm, const duet_value *vars, duet_value *out, char **errmsg)
{
	duet_error	err;

	err.message[0] = '\0';
	if (duet_eval(f->prog, vars, vm, out, &err) != DUET_OK)
	{
		*errmsg = pstrdup(err.message[0] ? err.message : "evaluation failed");
		return false;
	}
	return true;
}

char *
rules_value_text(const duet_value *v)
{
	char		buf[64];

	switch (v->type)
	{
		case DUET_T_NUMBER:
			duet_format_number(v->u.num, buf, sizeof(buf));
			return pstrdup(buf);
		case DUET_T_BOOL:
			return pstrdup(v->u.boolean ? "true" : "false");
		case DUET_T_STRING:
			return pnstrdup(v->u.str.ptr, v->u.str.len);
		default:
			return pstrdup("null");
	}
}

Jsonb *
rules_value_jsonb(const duet_value *v)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (v->type == DUET_T_STRING)
	{
		char	   *s = pnstrdup(v->u.str.ptr, v->u.str.len);

		escape_json(&buf, s);
	}
	else
		appendStringInfoString(&buf, rules_value_text(v));
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
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

			rules_bind_row(f, desc, values, nulls, vars);
			if (rules_eval(f, vm, vars, &v, &err))
				appendStringInfoString(&buf, rules_value_text(&v));
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
