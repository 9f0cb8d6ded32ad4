/*
 * calc_support.c — planner support for duet_calc(formula, row) and duet_calc_number(formula, row).
 *
 * A whole-row reference (SELECT duet_calc('revenue / spend', s) FROM stats s) makes the executor
 * build a composite datum of every column for every row, which costs more than the formula. When
 * the formula is a constant and the row is a plain table's whole row, the planner call is rewritten
 * to duet_calc_args(formula, revenue, spend): only the columns the formula reads, already deformed
 * by the scan. Same semantics, so the rewrite is skipped whenever they could differ:
 *
 *   - an outer join at the query level: a missing row must stay a NULL row (SQL NULL result), not
 *     a row of NULL columns;
 *   - a formula that does not compile, a variable that is not a column, a column of a type that
 *     cannot be a variable: left to run time, so the error appears exactly as without the rewrite
 *     (and not at all when no row is evaluated);
 *   - a formula without variables (a variadic call needs one argument).
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pathnodes.h"
#include "nodes/supportnodes.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "calc_pg.h"

PG_FUNCTION_INFO_V1(duet_calc_support);

static bool
query_has_outer_join(Query *parse)
{
	ListCell   *lc;

	foreach(lc, parse->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_JOIN && rte->jointype != JOIN_INNER)
			return true;
	}
	return false;
}

/* The positional twin of the row function fcall (same schema, "_args" name, (text, "any")). */
static Oid
args_function(FuncExpr *fcall)
{
	Oid			argtypes[2] = {TEXTOID, ANYOID};
	char	   *nsp = get_namespace_name(get_func_namespace(fcall->funcid));
	const char *name = fcall->funcresulttype == FLOAT8OID ? "duet_calc_number_args" : "duet_calc_args";

	if (nsp == NULL)
		return InvalidOid;
	return LookupFuncName(list_make2(makeString(nsp), makeString(pstrdup(name))), 2, argtypes, true);
}

static Node *
simplify(SupportRequestSimplify *req)
{
	FuncExpr   *fcall = req->fcall;
	Const	   *formula;
	Var		   *row;
	RangeTblEntry *rte;
	TupleDesc	td;
	duet_program *prog;
	duet_error	err;
	const char *src;
	size_t		len;
	List	   *args;
	Oid			target;
	size_t		nvars;
	bool		ok = true;

	if (req->root == NULL || list_length(fcall->args) != 2)
		return NULL;
	formula = linitial(fcall->args);
	row = lsecond(fcall->args);
	if (!IsA(formula, Const) || formula->constisnull || formula->consttype != TEXTOID ||
		!IsA(row, Var) || row->varattno != InvalidAttrNumber || row->varlevelsup != 0)
		return NULL;
	if (query_has_outer_join(req->root->parse))
		return NULL;
	rte = planner_rt_fetch(row->varno, req->root);
	if (rte->rtekind != RTE_RELATION || !type_is_rowtype(row->vartype) || row->vartype == RECORDOID)
		return NULL;

	src = pgcalc_to_utf8(VARDATA_ANY(DatumGetTextPP(formula->constvalue)),
						 VARSIZE_ANY_EXHDR(DatumGetTextPP(formula->constvalue)), &len);
	prog = duet_compile(src, len, NULL, &err);
	if (prog == NULL)
		return NULL;
	nvars = duet_program_nvars(prog);
	target = nvars > 0 ? args_function(fcall) : InvalidOid;
	if (!OidIsValid(target))
	{
		duet_program_free(prog);
		return NULL;
	}

	args = list_make1(formula);
	td = lookup_rowtype_tupdesc(row->vartype, -1);
	for (size_t i = 0; i < nvars && ok; i++)
	{
		const char *utf8name = duet_program_var(prog, i);
		char	   *name = pgcalc_from_utf8(utf8name, strlen(utf8name));
		int			a;
		PgcalcColumn col;

		a = pgcalc_find_column(td, name, NULL);
		ok = a >= 0 && pgcalc_column_init(&col, TupleDescAttr(td, a)->atttypid, CurrentMemoryContext) != '\0';
		if (ok)
		{
			Form_pg_attribute att = TupleDescAttr(td, a);

			args = lappend(args, makeVar(row->varno, att->attnum, att->atttypid, att->atttypmod,
										 att->attcollation, 0));
		}
	}
	ReleaseTupleDesc(td);
	duet_program_free(prog);
	if (!ok)
		return NULL;

	return (Node *) makeFuncExpr(target, fcall->funcresulttype, args, fcall->funccollid,
								 fcall->inputcollid, COERCE_EXPLICIT_CALL);
}

Datum
duet_calc_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);

	if (IsA(rawreq, SupportRequestSimplify))
		PG_RETURN_POINTER(simplify((SupportRequestSimplify *) rawreq));
	PG_RETURN_POINTER(NULL);
}
