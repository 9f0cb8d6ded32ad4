/*
 * compile.c — from AST to an immutable program: resolves variables and functions, checks types
 * (statically where known, leaving DUET_T_ANY for the VM to check), folds constant subtrees by
 * running the VM on them (one implementation of every operator), and emits stack bytecode.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

const duet_limits duet_default_limits = {65536, 256, 4096, 1024 * 1024};

/* ---- compiler state ---- */
typedef struct compiler
{
	const char *src;
	size_t		srclen;
	const duet_compile_options *opts;
	const duet_limits *lim;
	calc_arena	ar;
	duet_error *err;
	/* program under construction */
	instr	   *code;
	operand_pos *opnd;
	int			ncode,
				capcode;
	duet_value *consts;
	int			nconsts,
				capconsts;
	char	  **vars;
	size_t		nvars,
				capvars;
	int			depth,
				max_depth;
	bool		uses_arena;
	duet_vm    *fold_vm;
	/* metrics being expanded (outermost first), and expansions so far (metric.c) */
	const char *expanding[DUET_METRIC_MAX_NESTING];
	int			nexpanding;
	int			nexpansions;
	/* constant patterns of like/regexp_* calls: consts index, compiled regex (pattern.c) */
	struct
	{
		int			idx;
		bool		is_regex;
		void	   *code;
	}		   *rx;
	int			nrx,
				caprx;
	bool		folding;		/* a constant-folding sub-compiler: patterns go through the vm */
} compiler;

static bool
nomem(compiler *c)
{
	duet_set_runtime_error(c->err, DUET_ERR_NOMEM, 0, 0, "out of memory");
	return false;
}

static bool
type_error(compiler *c, const node *n, const char *fmt, const char *a, const char *b)
{
	duet_set_error(c->err, DUET_ERR_TYPE, c->src, c->srclen, n->line, n->col, "", fmt, a, b);
	return false;
}

static int
var_index(compiler *c, const char *name)
{
	size_t		i;

	for (i = 0; i < c->nvars; i++)
		if (strcmp(c->vars[i], name) == 0)
			return (int) i;
	if (c->nvars == c->capvars)
	{
		size_t		cap = c->capvars ? c->capvars * 2 : 8;
		char	  **grown = realloc(c->vars, cap * sizeof(char *));

		if (!grown)
			return -1;
		c->vars = grown;
		c->capvars = cap;
	}
	if (!(c->vars[c->nvars] = malloc(strlen(name) + 1)))
		return -1;
	strcpy(c->vars[c->nvars], name);
	return (int) c->nvars++;
}

static bool
numeric_ok(duet_type t)
{
	return t == DUET_T_NUMBER || t == DUET_T_NULL || t == DUET_T_ANY;
}

static bool
bool_ok(duet_type t)
{
	return t == DUET_T_BOOL || t == DUET_T_NULL || t == DUET_T_ANY;
}

/* The common type of two branches; false when they cannot agree. */
static bool
unify(duet_type *acc, duet_type t)
{
	if (t == DUET_T_NULL || *acc == t)
		return true;
	if (*acc == DUET_T_NULL)
	{
		*acc = t;
		return true;
	}
	if (*acc == DUET_T_ANY || t == DUET_T_ANY)
	{
		*acc = DUET_T_ANY;
		return true;
	}
	return false;
}

static const char *
op_text(int op)
{
	return tok_describe((tok_kind) op);
}

static bool check(compiler *c, node *n);

static bool
param_type_ok(duet_type want, duet_type t)
{
	switch (want)
	{
		case DUET_T_NUMBER: return numeric_ok(t);
		case DUET_T_BOOL: return bool_ok(t);
		case DUET_T_STRING: return t == DUET_T_STRING || t == DUET_T_NULL || t == DUET_T_ANY;
		default: return true;
	}
}

/* Nodes of the tree under n, a shared subtree counted at each use; stops counting past cap. */
static size_t
tree_size(const node *n, size_t cap)
{
	size_t		size = 1;

	for (int i = 0; i < n->nkids && size <= cap; i++)
		size += tree_size(n->kids[i], cap - size + 1);
	return size;
}

static bool
metric_size_ok(compiler *c, const node *tree, const node *at)
{
	if (tree_size(tree, DUET_METRIC_MAX_NODES) <= DUET_METRIC_MAX_NODES)
		return true;
	duet_set_error(c->err, DUET_ERR_LIMIT, c->src, c->srclen, at->line, at->col, "",
				   "metrics expand to more than %d operations (limit)", DUET_METRIC_MAX_NODES);
	return false;
}

/*
 * A call of metric m: checks arity and argument types against its parameters, then replaces
 * the call by the metric's formula (metric.c) and checks that, with the metric on the stack of
 * expansions so that a cycle is an error naming it.
 */
static bool
check_metric(compiler *c, node *n, const duet_metric *m)
{
	const char *name = n->value.u.str.ptr;
	node	   *body;
	bool		ok;

	if (n->nkids != 0 && (size_t) n->nkids != m->nparams)
	{
		char		params[160] = "";

		for (size_t i = 0; i < m->nparams && strlen(params) < sizeof(params) - 70; i++)
			snprintf(params + strlen(params), sizeof(params) - strlen(params), "%s%s",
					 i ? ", " : "", m->params[i]);
		duet_set_error(c->err, DUET_ERR_ARITY, c->src, c->srclen, n->line, n->col, "",
					   "metric %s takes %zu argument%s (%s), got %d", name, m->nparams,
					   m->nparams == 1 ? "" : "s", params, n->nkids);
		return false;
	}
	for (int i = 0; i < c->nexpanding; i++)
		if (strcmp(c->expanding[i], name) == 0)
		{
			char		path[200] = "";

			for (int k = i; k < c->nexpanding && strlen(path) < sizeof(path) - 70; k++)
				snprintf(path + strlen(path), sizeof(path) - strlen(path), "%s -> ", c->expanding[k]);
			duet_set_error(c->err, DUET_ERR_LIMIT, c->src, c->srclen, n->line, n->col, "",
						   "metric cycle: %s%s", path, name);
			return false;
		}
	if (c->nexpanding == DUET_METRIC_MAX_NESTING || c->nexpansions == DUET_METRIC_MAX_EXPANSIONS)
	{
		duet_set_error(c->err, DUET_ERR_LIMIT, c->src, c->srclen, n->line, n->col, "",
					   "metrics nested too deeply (limit %d levels, %d expansions)",
					   DUET_METRIC_MAX_NESTING, DUET_METRIC_MAX_EXPANSIONS);
		return false;
	}
	for (size_t i = 0; i < m->nparams; i++)
	{
		duet_type	t;

		if (n->nkids > 0)
		{
			if (!check(c, n->kids[i]))
				return false;
			t = n->kids[i]->type;
		}
		else
			t = c->opts->var_type ?
				c->opts->var_type(c->opts->var_type_arg, m->params[i], strlen(m->params[i])) :
				DUET_T_ANY;
		if (!param_type_ok(m->param_types[i], t))
		{
			const node *at = n->nkids > 0 ? n->kids[i] : n;

			duet_set_error(c->err, DUET_ERR_TYPE, c->src, c->srclen, at->line, at->col, "",
						   "metric %s expects %s for %s, not %s", name,
						   m->param_types[i] == DUET_T_NUMBER ? "a number" :
						   m->param_types[i] == DUET_T_STRING ? "a string" : "a boolean",
						   m->params[i], duet_type_name(t));
			return false;
		}
	}
	if (!(body = duet_metric_body(c->src, c->srclen, n, name, m, c->lim, &c->ar, c->err)))
		return false;
	/* before checking it: an argument the metric uses k times is k subtrees to check and emit */
	if (!metric_size_ok(c, body, n))
		return false;
	c->expanding[c->nexpanding++] = name;
	c->nexpansions++;
	*n = *body;
	ok = check(c, n);
	c->nexpanding--;
	return ok;
}

static bool
check_call(compiler *c, node *n)
{
	const char *name = n->value.u.str.ptr;
	const builtin *fn = duet_builtin_lookup(name, n->value.u.str.len);
	duet_type	common = DUET_T_NULL;
	duet_metric m;
	int			i;

	if (!fn && c->opts && c->opts->metric)
	{
		memset(&m, 0, sizeof(m));
		if (c->opts->metric(c->opts->metric_arg, name, n->value.u.str.len, &m))
			return check_metric(c, n, &m);
	}
	if (!fn)
	{
		duet_set_error(c->err, DUET_ERR_UNKNOWN_FUNCTION, c->src, c->srclen, n->line, n->col,
					   "a function name", "unknown function \"%s\"", name);
		return false;
	}
	if (n->nkids < fn->min_args || (fn->max_args >= 0 && n->nkids > fn->max_args))
	{
		char		want[32];

		if (fn->max_args < 0)
			snprintf(want, sizeof(want), "at least %d", fn->min_args);
		else if (fn->min_args == fn->max_args)
			snprintf(want, sizeof(want), "%d", fn->min_args);
		else
			snprintf(want, sizeof(want), "%d to %d", fn->min_args, fn->max_args);
		duet_set_error(c->err, DUET_ERR_ARITY, c->src, c->srclen, n->line, n->col, "",
					   "function %s takes %s argument%s, got %d", fn->name, want,
					   strcmp(want, "1") == 0 ? "" : "s", n->nkids);
		return false;
	}
	n->fn = fn;
	for (i = 0; i < n->nkids; i++)
	{
		size_t		np = strlen(fn->params);
		char		kind = fn->params[(size_t) i < np ? (size_t) i : np - 1];
		duet_type	t;

		if (!check(c, n->kids[i]))
			return false;
		t = n->kids[i]->type;
		if ((kind == 'n' && !numeric_ok(t)) ||
			(kind == 's' && t != DUET_T_STRING && t != DUET_T_NULL && t != DUET_T_ANY) ||
			(kind == 'b' && !bool_ok(t)) ||
			(kind == 'T' && !duet_is_time(t) && t != DUET_T_NULL && t != DUET_T_ANY))
			return type_error(c, n->kids[i], "function %s expects %s here",
							  fn->name, kind == 'n' ? "a number" : kind == 's' ? "a string" :
							  kind == 'b' ? "a boolean" : "a date or timestamp");
		if (kind == 'T' && fn->result == 'T' && !unify(&common, t))
			common = DUET_T_ANY;
		if (kind == 'x' && !unify(&common, t))
			return type_error(c, n->kids[i], "arguments of %s must have one type, not %s",
							  fn->name, duet_type_name(t));
	}
	switch (fn->result)
	{
		case 'n': n->type = DUET_T_NUMBER; break;
		case 's': n->type = DUET_T_STRING; break;
		case 'b': n->type = DUET_T_BOOL; break;
		case 'd': n->type = DUET_T_DATE; break;
		case 't': n->type = DUET_T_TIMESTAMP; break;
		default: n->type = common; break;
	}
	return true;
}

/* Resolves names and computes static types; type errors are compile errors when types are known. */
static bool
check(compiler *c, node *n)
{
	int			i;

	switch (n->kind)
	{
		case N_CONST:
			n->type = duet_type_family(n->value.type);
			return true;
		case N_VAR:
			n->var = var_index(c, n->value.u.str.ptr);
			if (n->var < 0)
				return nomem(c);
			n->type = c->opts && c->opts->var_type ?
				c->opts->var_type(c->opts->var_type_arg, n->value.u.str.ptr, n->value.u.str.len) :
				DUET_T_ANY;
			n->type = duet_type_family(n->type);	/* an integer input is a number */
			if (n->type != DUET_T_NUMBER && n->type != DUET_T_STRING && n->type != DUET_T_BOOL &&
				n->type != DUET_T_NULL && !duet_is_time(n->type))
				n->type = DUET_T_ANY;
			return true;
		case N_CALL:
			if (n->value.u.str.len == 2 && (n->value.u.str.ptr[0] | 0x20) == 'i' &&
				(n->value.u.str.ptr[1] | 0x20) == 'f')
			{
				/* if(c, a, b) is case when c then a else b end */
				if (n->nkids != 3)
				{
					duet_set_error(c->err, DUET_ERR_ARITY, c->src, c->srclen, n->line, n->col, "",
								   "function if takes 3 arguments, got %d", n->nkids);
					return false;
				}
				n->kind = N_CASE;
				n->op = 1;
				return check(c, n);
			}
			return check_call(c, n);
		default:
			break;
	}
	for (i = 0; i < n->nkids; i++)
		if (!check(c, n->kids[i]))
			return false;
	switch (n->kind)
	{
		case N_NEG:
			if (!numeric_ok(n->kids[0]->type))
				return type_error(c, n, "operator %s cannot be applied to %s", "-",
								  duet_type_name(n->kids[0]->type));
			n->type = DUET_T_NUMBER;
			break;
		case N_BINOP:
			if (n->op == T_CONCAT)
				n->type = DUET_T_STRING;
			else
			{
				if (!numeric_ok(n->kids[0]->type) || !numeric_ok(n->kids[1]->type))
				{
					char		types[64];

					snprintf(types, sizeof(types), "%s and %s", duet_type_name(n->kids[0]->type),
							 duet_type_name(n->kids[1]->type));
					return type_error(c, n, "operator %s cannot be applied to %s",
									  op_text(n->op), types);
				}
				n->type = DUET_T_NUMBER;
			}
			break;
		case N_CMP:
		case N_BETWEEN:
		case N_IN:
			for (i = 1; i < n->nkids; i++)
				if (!duet_value_comparable(n->kids[0]->type, n->kids[i]->type))
					return type_error(c, n->kids[i], "cannot compare %s with %s",
									  duet_type_name(n->kids[0]->type),
									  duet_type_name(n->kids[i]->type));
			n->type = DUET_T_BOOL;
			break;
		case N_AND:
		case N_OR:
		case N_NOT:
			for (i = 0; i < n->nkids; i++)
				if (!bool_ok(n->kids[i]->type))
					return type_error(c, n->kids[i], "operator %s expects a boolean, not %s",
									  n->kind == N_AND ? "and" : n->kind == N_OR ? "or" : "not",
									  duet_type_name(n->kids[i]->type));
			n->type = DUET_T_BOOL;
			break;
		case N_ISNULL:
			n->type = DUET_T_BOOL;
			break;
		case N_CASE:
			{
				duet_type	t = DUET_T_NULL;
				int			narms = n->nkids - n->op;

				for (i = 0; i < narms; i += 2)
				{
					if (!bool_ok(n->kids[i]->type))
						return type_error(c, n->kids[i], "a %s condition must be a boolean, not %s",
										  "when", duet_type_name(n->kids[i]->type));
					if (!unify(&t, n->kids[i + 1]->type))
						return type_error(c, n->kids[i + 1], "case branches must have one type, "
										  "not %s and %s", duet_type_name(t),
										  duet_type_name(n->kids[i + 1]->type));
				}
				if (n->op && !unify(&t, n->kids[n->nkids - 1]->type))
					return type_error(c, n->kids[n->nkids - 1], "case branches must have one type, "
									  "not %s and %s", duet_type_name(t),
									  duet_type_name(n->kids[n->nkids - 1]->type));
				n->type = t;
				break;
			}
		default:
			break;
	}
	return true;
}

/* ---- emission ---- */
static bool
emit(compiler *c, const node *at, opcode op, int arg, int argc, int flags, int stack_effect)
{
	instr	   *in;

	if (c->ncode == c->capcode)
	{
		int			cap = c->capcode ? c->capcode * 2 : 32;
		instr	   *grown = realloc(c->code, (size_t) cap * sizeof(instr));
		operand_pos *pgrown;

		if (!grown)
			return nomem(c);
		c->code = grown;
		if (!(pgrown = realloc(c->opnd, (size_t) cap * sizeof(operand_pos))))
			return nomem(c);
		c->opnd = pgrown;
		c->capcode = cap;
	}
	memset(&c->opnd[c->ncode], 0, sizeof(operand_pos));
	in = &c->code[c->ncode++];
	in->op = (uint8_t) op;
	in->flags = (uint8_t) flags;
	in->argc = (uint16_t) argc;
	in->line = (uint16_t) (at->line > UINT16_MAX ? UINT16_MAX : at->line);
	in->col = (uint16_t) (at->col > UINT16_MAX ? UINT16_MAX : at->col);
	in->arg = arg;
	c->depth += stack_effect;
	if (c->depth > c->max_depth)
		c->max_depth = c->depth;
	return true;
}

static bool
add_const(compiler *c, const node *n, int *idx)
{
	int			i;

	for (i = 0; i < c->nconsts; i++)
	{
		const duet_value *v = &c->consts[i];

		if (v->type != n->value.type)
			continue;
		if ((v->type == DUET_T_NULL) ||
			(v->type == DUET_T_BOOL && v->u.boolean == n->value.u.boolean) ||
			(v->type == DUET_T_NUMBER && memcmp(&v->u.num, &n->value.u.num, sizeof(double)) == 0) ||
			((v->type == DUET_T_INT || duet_is_time(v->type)) && v->u.i == n->value.u.i) ||
			(v->type == DUET_T_STRING && v->u.str.len == n->value.u.str.len &&
			 memcmp(v->u.str.ptr, n->value.u.str.ptr, v->u.str.len) == 0))
		{
			*idx = i;
			return true;
		}
	}
	if (c->nconsts >= c->lim->max_constants)
	{
		duet_set_error(c->err, DUET_ERR_LIMIT, c->src, c->srclen, n->line, n->col, "",
					   "too many constants in formula (limit %d)", c->lim->max_constants);
		return false;
	}
	if (c->nconsts == c->capconsts)
	{
		int			cap = c->capconsts ? c->capconsts * 2 : 16;
		duet_value *grown = realloc(c->consts, (size_t) cap * sizeof(duet_value));

		if (!grown)
			return nomem(c);
		c->consts = grown;
		c->capconsts = cap;
	}
	c->consts[c->nconsts] = n->value;
	*idx = c->nconsts++;
	return true;
}

static uint16_t
sat16(int v)
{
	return (uint16_t) (v > UINT16_MAX ? UINT16_MAX : v);
}

/* Records the source positions of the last instruction's variable operands. */
static bool
operands(compiler *c, const node *a, const node *b)
{
	operand_pos *o = &c->opnd[c->ncode - 1];

	if (a)
		o->line[0] = sat16(a->line), o->col[0] = sat16(a->col);
	if (b)
		o->line[1] = sat16(b->line), o->col[1] = sat16(b->col);
	return true;
}

/* + - * / as an index into a superinstruction family, or -1 */
static int
arith_index(int tok)
{
	switch (tok)
	{
		case T_PLUS: return 0;
		case T_MINUS: return 1;
		case T_STAR: return 2;
		case T_SLASH: return 3;
		default: return -1;
	}
}

/*
 * A number constant a superinstruction can take: it reads the constant as a double (cnum) when
 * the other operand is a double, which is what mixing an integer with a double means; any other
 * operand takes the generic path with the constant itself.
 */
static bool
is_num_const(const node *n)
{
	return n->kind == N_CONST && (n->value.type == DUET_T_NUMBER || n->value.type == DUET_T_INT);
}

/* ... and one a double comparison gets exactly right: integers within ±2^53 */
bool
duet_exact_num_const(const node *n)
{
	return is_num_const(n) &&
		(n->value.type == DUET_T_NUMBER || (n->value.u.i >= -(INT64_C(1) << 53) && n->value.u.i <= (INT64_C(1) << 53)));
}

/* round(x[, n]) with n absent or a number constant: n as fn_round takes it, else INT32_MIN */
int
duet_round_const_digits(const node *call)
{
	double		d;

	if (call->nkids > 1 && !is_num_const(call->kids[1]))
		return INT32_MIN;
	d = call->nkids == 1 ? 0 : trunc(duet_num(&call->kids[1]->value));
	return d < -400 ? -400 : d > 400 ? 400 : (int) d;	/* as fn_round */
}

/* Operands a superinstruction can address: a variable or constant index that fits in argc. */
static bool
small_var(const node *n)
{
	return n->kind == N_VAR && n->var <= UINT16_MAX;
}

static bool
gen(compiler *c, const node *n);
static bool gen_rx_const(compiler *c, const node *n);

/*
 * Emits a superinstruction for var/const op var/const, x op var and x op const (docs/calc.md);
 * *done is false when none applies and the generic code must be generated.
 */
static bool
gen_super(compiler *c, const node *n, bool *done)
{
	const node *l,
			   *r;
	int			k,
				idx;

	*done = false;
	if (n->nkids != 2)
		return true;
	l = n->kids[0];
	r = n->kids[1];
	if (n->kind == N_BINOP && (k = arith_index(n->op)) >= 0)
	{
		if (small_var(l) && small_var(r))
			return (*done = true) && emit(c, n, OP_ADD_VV + k, l->var, r->var, 0, 1) &&
				operands(c, l, r);
		if (small_var(l) && is_num_const(r))
		{
			if (!add_const(c, r, &idx))
				return false;
			if (idx <= UINT16_MAX)
				return (*done = true) && emit(c, n, OP_ADD_VC + k, l->var, idx, 0, 1) &&
					operands(c, l, NULL);
		}
		if (is_num_const(l) && small_var(r))
		{
			if (!add_const(c, l, &idx))
				return false;
			return (*done = true) && emit(c, n, OP_ADD_CV + k, idx, r->var, 0, 1) &&
				operands(c, NULL, r);
		}
		if (r->kind == N_VAR)
			return (*done = true) && gen(c, l) && emit(c, n, OP_ADD_SV + k, r->var, 0, 0, 0) &&
				operands(c, r, NULL);
		if (is_num_const(r))
			return (*done = true) && gen(c, l) && add_const(c, r, &idx) &&
				emit(c, n, OP_ADD_SC + k, idx, 0, 0, 0);
	}
	if (n->kind == N_CMP && small_var(l) && duet_exact_num_const(r))
	{
		opcode		op;

		switch (n->op)
		{
			case T_EQ: op = OP_EQ; break;
			case T_NE: op = OP_NE; break;
			case T_LT: op = OP_LT; break;
			case T_LE: op = OP_LE; break;
			case T_GT: op = OP_GT; break;
			default: op = OP_GE; break;
		}
		if (!add_const(c, r, &idx))
			return false;
		if (idx <= UINT16_MAX)
			return (*done = true) && emit(c, n, OP_CMP_VC, l->var, idx, op, 1) && operands(c, l, NULL);
	}
	return true;
}

/* lower(x) / upper(x): 0 / 1 for OP_CASEMAP's flags, -1 for anything else */
static int
casemap_of(const node *n)
{
	if (n->kind != N_CALL || n->nkids != 1 || !n->fn)
		return -1;
	return strcmp(n->fn->name, "lower") == 0 ? 0 : strcmp(n->fn->name, "upper") == 0 ? 1 : -1;
}

/*
 * (a || b) || c with c a constant or a variable, and a || b with a lower()/upper() operand: the
 * operands (a case-mapped one as its argument and OP_CASEMAP), then OP_CONCAT_N, which keeps the
 * inner ||'s position as its first operand's. A variable c is loaded by OP_CONCAT_N itself after
 * the first || (flags 1, arg = the variable, its position the second operand's), so that errors
 * come in the nested form's order (docs/calc.md). *done is false when none of this applies.
 */
static bool
gen_concat(compiler *c, const node *n, bool *done)
{
	const node *ops[3];
	int			k = 0,
				last_var = -1;
	bool		any_map = false;

	*done = false;
	if (n->kind != N_BINOP || n->op != T_CONCAT)
		return true;
	if (n->kids[0]->kind == N_BINOP && n->kids[0]->op == T_CONCAT &&
		(n->kids[1]->kind == N_CONST || small_var(n->kids[1])))
	{
		ops[k++] = n->kids[0]->kids[0];
		ops[k++] = n->kids[0]->kids[1];
		if (n->kids[1]->kind == N_VAR)
			last_var = n->kids[1]->var;
	}
	else
		ops[k++] = n->kids[0];
	ops[k++] = n->kids[1];
	for (int i = 0; i < k; i++)
		any_map |= casemap_of(ops[i]) >= 0;
	if (k == 2 && !any_map)
		return true;
	*done = true;
	for (int i = 0; i < k - (last_var >= 0); i++)
	{
		int			map = casemap_of(ops[i]);

		if (map < 0 ? !gen(c, ops[i]) :
			!gen(c, ops[i]->kids[0]) ||
			!emit(c, ops[i], OP_CASEMAP, (int) (ops[i]->fn - duet_builtins), 0, map, 0))
			return false;
	}
	c->uses_arena = true;
	if (last_var >= 0)
	{
		/* the variable is loaded into the slot above the two operands: room for it */
		if (c->depth + 1 > c->max_depth)
			c->max_depth = c->depth + 1;
		return emit(c, n, OP_CONCAT_N, last_var, k, 1, 2 - k) && operands(c, n->kids[0], n->kids[1]);
	}
	return emit(c, n, OP_CONCAT_N, 0, k, 0, 1 - k) && operands(c, k == 3 ? n->kids[0] : NULL, NULL);
}

static bool
gen(compiler *c, const node *n)
{
	int			i,
				idx = 0;
	bool		done;

	if (!gen_super(c, n, &done))
		return false;
	if (!done && !gen_concat(c, n, &done))
		return false;
	if (done)
		return true;
	/* typed fast paths: clamp(x, lo, hi) and round(x [, n]) with number constants */
	if (n->kind == N_CALL && strcmp(n->fn->name, "clamp") == 0 && is_num_const(n->kids[1]) &&
		is_num_const(n->kids[2]))
	{
		int			lo,
					hi;

		if (!add_const(c, n->kids[1], &lo) || !add_const(c, n->kids[2], &hi))
			return false;
		if (hi <= UINT16_MAX)
			return gen(c, n->kids[0]) && emit(c, n, OP_CLAMP_CC, lo, hi, 0, 0);
	}
	if (n->kind == N_CALL && strcmp(n->fn->name, "round") == 0 &&
		duet_round_const_digits(n) != INT32_MIN)
		return gen(c, n->kids[0]) && emit(c, n, OP_ROUND_C, duet_round_const_digits(n), 0, 0, 0);
	if (n->kind == N_ISNULL && n->kids[0]->kind == N_VAR)
		return emit(c, n, OP_ISNULL_V, n->kids[0]->var, 0, n->op ? 1 : 0, 1) &&
			operands(c, n->kids[0], NULL);

	switch (n->kind)
	{
		case N_CONST:
			return add_const(c, n, &idx) && emit(c, n, OP_CONST, idx, 0, 0, 1);
		case N_VAR:
			return emit(c, n, OP_VAR, n->var, 0, 0, 1);
		case N_CASE:
			{
				int			narms = n->nkids - n->op;
				int			first_end = -1;	/* the arms' exit jumps, chained through arg */
				node		nullnode;

				for (i = 0; i < narms; i += 2)
				{
					int			skip;

					if (!gen(c, n->kids[i]))
						return false;
					skip = c->ncode;
					if (!emit(c, n->kids[i], OP_JUMP_UNLESS_TRUE, 0, 0, 0, -1) ||
						!gen(c, n->kids[i + 1]))
						return false;
					if (!emit(c, n, OP_JUMP, first_end, 0, 0, -1))
						return false;
					first_end = c->ncode - 1;
					c->code[skip].arg = c->ncode;
				}
				if (n->op)
				{
					if (!gen(c, n->kids[n->nkids - 1]))
						return false;
				}
				else
				{
					nullnode = *n;
					nullnode.kind = N_CONST;
					nullnode.value = duet_null();
					if (!gen(c, &nullnode))
						return false;
				}
				while (first_end >= 0)
				{
					int			prev = c->code[first_end].arg;

					c->code[first_end].arg = c->ncode;
					first_end = prev;
				}
				return true;
			}
		default:
			break;
	}
	for (i = 0; i < n->nkids; i++)
		if (!gen(c, n->kids[i]))
			return false;
	switch (n->kind)
	{
		case N_NEG:
			return emit(c, n, OP_NEG, 0, 0, 0, 0);
		case N_BINOP:
		case N_CMP:
			{
				opcode		op;

				switch (n->op)
				{
					case T_PLUS: op = OP_ADD; break;
					case T_MINUS: op = OP_SUB; break;
					case T_STAR: op = OP_MUL; break;
					case T_SLASH: op = OP_DIV; break;
					case T_PERCENT: op = OP_MOD; break;
					case T_CARET: op = OP_POW; break;
					case T_CONCAT: op = OP_CONCAT; break;
					case T_EQ: op = OP_EQ; break;
					case T_NE: op = OP_NE; break;
					case T_LT: op = OP_LT; break;
					case T_LE: op = OP_LE; break;
					case T_GT: op = OP_GT; break;
					default: op = OP_GE; break;
				}
				if (op == OP_CONCAT)
					c->uses_arena = true;
				return emit(c, n, op, 0, 0, 0, -1);
			}
		case N_AND:
			return emit(c, n, OP_AND, 0, 0, 0, -1);
		case N_OR:
			return emit(c, n, OP_OR, 0, 0, 0, -1);
		case N_NOT:
			return emit(c, n, OP_NOT, 0, 0, 0, 0);
		case N_ISNULL:
			return emit(c, n, n->op ? OP_ISNOTNULL : OP_ISNULL, 0, 0, 0, 0);
		case N_BETWEEN:
			return emit(c, n, OP_BETWEEN, 0, 0, n->op, -2);
		case N_IN:
			return emit(c, n, OP_IN, 0, n->nkids - 1, n->op, -(n->nkids - 1));
		case N_CALL:
			if (!gen_rx_const(c, n))
				return false;
			{
				/* all-number parameters: the VM checks the argument types inline */
				int			flags = strspn(n->fn->params, "n") == strlen(n->fn->params) ? CALL_NUMERIC : 0;

				if (!n->fn->ints && strchr(n->fn->params, 'n'))
					flags |= CALL_INT_ARGS;

				bool		is_regex;

				/* strings, and pattern calls: these read the program through the vm (prepare) */
				if (n->fn->result == 's' || n->fn->clock || duet_rx_pattern_fn(n->fn, &is_regex))
					c->uses_arena = true;
				return emit(c, n, OP_CALL, (int) (n->fn - duet_builtins), n->nkids, flags,
							1 - n->nkids);
			}
		default:
			return false;
	}
}

/*
 * A like/regexp_* call whose pattern is a constant: the pattern is checked (a compile error at its
 * position when invalid) and, for a regex, compiled once for the program (pattern.c).
 */
static bool
gen_rx_const(compiler *c, const node *n)
{
	const node *pat = n->nkids > 1 ? n->kids[1] : NULL;
	bool		is_regex;
	void	   *code;
	char		msg[200];
	int			idx;

	if (c->folding || !duet_rx_pattern_fn(n->fn, &is_regex) || !pat || pat->kind != N_CONST ||
		pat->value.type != DUET_T_STRING)
		return true;
	if (!add_const(c, pat, &idx))
		return false;
	for (int i = 0; i < c->nrx; i++)
		if (c->rx[i].idx == idx && c->rx[i].is_regex == is_regex)
			return true;
	if (!duet_rx_compile_const(pat->value.u.str.ptr, pat->value.u.str.len, is_regex, &code, msg,
							   sizeof(msg)))
	{
		if (strcmp(msg, "out of memory") == 0)
			return nomem(c);
		duet_set_error(c->err, DUET_ERR_SYNTAX, c->src, c->srclen, pat->line, pat->col, "",
					   "%s: %s", n->fn->name, msg);
		return false;
	}
	if (c->nrx == c->caprx)
	{
		int			cap = c->caprx ? 2 * c->caprx : 4;
		void	   *grown = realloc(c->rx, (size_t) cap * sizeof(*c->rx));

		if (!grown)
		{
			duet_rx_code_free(code);
			return nomem(c);
		}
		c->rx = grown;
		c->caprx = cap;
	}
	c->rx[c->nrx].idx = idx;
	c->rx[c->nrx].is_regex = is_regex;
	c->rx[c->nrx].code = code;
	c->nrx++;
	return true;
}

/* Hands the compiled constant patterns to p, after pool_strings placed the constants. */
static bool
take_rx(compiler *c, duet_program *p)
{
	if (c->nrx == 0)
		return true;
	if (!(p->rx = malloc((size_t) c->nrx * sizeof(duet_rx_const))))
		return false;
	for (int i = 0; i < c->nrx; i++)
	{
		p->rx[i].ptr = c->consts[c->rx[i].idx].u.str.ptr;
		p->rx[i].len = c->consts[c->rx[i].idx].u.str.len;
		p->rx[i].code = c->rx[i].code;
	}
	p->nrx = c->nrx;
	c->nrx = 0;
	return true;
}

/* The constants as doubles, for the superinstructions' double fast paths (NULL when none). */
static bool
make_cnum(duet_program *p)
{
	p->cnum = NULL;
	if (p->nconsts == 0)
		return true;
	if (!(p->cnum = malloc((size_t) p->nconsts * sizeof(double))))
		return false;
	for (int i = 0; i < p->nconsts; i++)
		p->cnum[i] = p->consts[i].type == DUET_T_INT || p->consts[i].type == DUET_T_NUMBER
			? duet_num(&p->consts[i]) : 0;
	return true;
}

/* ---- constant folding: evaluate constant subtrees with the VM itself ---- */
static bool
is_const(const node *n)
{
	return n->kind == N_CONST;
}

static bool
fold(compiler *c, node *n)
{
	int			i;
	bool		all_const = n->nkids > 0 || n->kind == N_CALL;
	compiler	sub;
	duet_program prog;
	duet_value	result;
	duet_error	suberr;

	if (n->kind == N_CONST || n->kind == N_VAR)
		return true;
	if (n->kind == N_CALL && n->fn && n->fn->clock)
		return true;			/* now(), today(): the time of each evaluation */
	for (i = 0; i < n->nkids; i++)
	{
		if (!fold(c, n->kids[i]))
			return false;
		all_const &= is_const(n->kids[i]);
	}
	if (!all_const && n->kind == N_CASE)
		duet_fold_case(n);		/* arms behind constant conditions (fastpath.c) */
	if (!all_const)
		return true;

	memset(&sub, 0, sizeof(sub));
	sub.folding = true;
	sub.src = c->src;
	sub.srclen = c->srclen;
	sub.lim = c->lim;
	sub.err = c->err;
	if (!gen(&sub, n) || !emit(&sub, n, OP_RETURN, 0, 0, 0, 0))
	{
		free(sub.opnd);
		free(sub.code);
		free(sub.consts);
		return false;
	}
	memset(&prog, 0, sizeof(prog));
	prog.code = sub.code;
	prog.ncode = sub.ncode;
	prog.consts = sub.consts;
	prog.nconsts = sub.nconsts;
	prog.max_stack = sub.max_depth;
	prog.max_string = c->lim->max_string;
	prog.uses_arena = sub.uses_arena;
	if ((!c->fold_vm && !(c->fold_vm = duet_vm_new())) || !make_cnum(&prog))
	{
		free(sub.opnd);
		free(sub.code);
		free(sub.consts);
		return nomem(c);
	}
	if (duet_eval(&prog, NULL, c->fold_vm, &result, &suberr) != DUET_OK)
	{
		duet_set_error(c->err, suberr.cls, c->src, c->srclen, n->line, n->col, "", "%s",
					   suberr.message);
		free(prog.cnum);
		free(sub.opnd);
		free(sub.code);
		free(sub.consts);
		return false;
	}
	free(prog.cnum);
	free(sub.code);
	free(sub.consts);
	free(sub.opnd);
	if (result.type == DUET_T_STRING)
	{
		char	   *copy = arena_alloc(&c->ar, result.u.str.len + 1);

		if (!copy)
			return nomem(c);
		memcpy(copy, result.u.str.ptr, result.u.str.len);
		result.u.str.ptr = copy;
	}
	n->kind = N_CONST;
	n->value = result;
	n->nkids = 0;
	/* keep the static type when the folded value is NULL, so "case … else null" stays typed */
	if (result.type != DUET_T_NULL)
		n->type = duet_type_family(result.type);
	return true;
}

/* Moves string constants into one block owned by the program. */
static bool
pool_strings(compiler *c, duet_program *p)
{
	size_t		total = 0,
				off = 0;
	int			i;

	for (i = 0; i < c->nconsts; i++)
		if (c->consts[i].type == DUET_T_STRING)
			total += c->consts[i].u.str.len + 1;
	if (total == 0)
		return true;
	if (!(p->strings = malloc(total)))
		return nomem(c);
	for (i = 0; i < c->nconsts; i++)
		if (c->consts[i].type == DUET_T_STRING)
		{
			memcpy(p->strings + off, c->consts[i].u.str.ptr, c->consts[i].u.str.len);
			p->strings[off + c->consts[i].u.str.len] = '\0';
			c->consts[i].u.str.ptr = p->strings + off;
			off += c->consts[i].u.str.len + 1;
		}
	return true;
}

/*
 * After emission: a jump to a return is that return, and a formula that is one variable returns
 * it directly (so `case … then null else x end` arms end without a jump).
 */
static void
peephole(duet_program *p)
{
	for (int i = 0; i < p->ncode; i++)
		if (p->code[i].op == OP_JUMP && p->code[p->code[i].arg].op == OP_RETURN)
			p->code[i].op = OP_RETURN;
	p->single_vv = p->ncode == 2 && p->code[0].op >= OP_ADD_VV && p->code[0].op <= OP_DIV_VV &&
		p->code[1].op == OP_RETURN;
	if (p->ncode == 2 && p->code[0].op == OP_VAR && p->code[1].op == OP_RETURN)
	{
		p->code[0].op = OP_RETURN_VAR;
		p->ncode = 1;
	}
}

/*
 * The front end: parses src, expands its metrics, checks and folds it into c (whose arena holds
 * the tree). NULL with *err filled (or err->cls DUET_OK: out of memory, nomem(c) reports it).
 */
static node *
front(compiler *c, duet_limits *lim, const char *src, size_t len, const duet_compile_options *opts,
	  duet_error *err)
{
	lexer		lx;
	node	   *root;

	memset(err, 0, sizeof(*err));
	memset(c, 0, sizeof(*c));
	/* a zero (or negative) field of the caller's limits keeps its default */
	*lim = duet_default_limits;
	if (opts && opts->limits)
	{
		if (opts->limits->max_length > 0)
			lim->max_length = opts->limits->max_length;
		if (opts->limits->max_depth > 0)
			lim->max_depth = opts->limits->max_depth;
		if (opts->limits->max_constants > 0)
			lim->max_constants = opts->limits->max_constants;
		if (opts->limits->max_string > 0)
			lim->max_string = opts->limits->max_string;
	}
	c->lim = lim;
	if (!src)
		src = "";
	if (len == SIZE_MAX)
		for (len = 0; len <= c->lim->max_length && src[len]; len++)
			;
	if (len > c->lim->max_length)
	{
		duet_set_runtime_error(err, DUET_ERR_LIMIT, 0, 0, "formula is %zu bytes long (limit %zu)",
							   len, c->lim->max_length);
		return NULL;
	}
	c->src = src;
	c->srclen = len;
	c->opts = opts;
	c->err = err;
	lexer_init(&lx, src, len, err);
	root = duet_parse(&lx, c->lim, &c->ar, err);
	if (root && check(c, root) && (c->nexpansions == 0 || metric_size_ok(c, root, root)) &&
		fold(c, root))
		return root;
	return NULL;
}

/* Frees what the front end and code generation allocated (not the program they made). */
static void
release(compiler *c)
{
	while (c->nrx > 0)
		duet_rx_code_free(c->rx[--c->nrx].code);
	free(c->rx);
	free(c->code);
	free(c->opnd);
	free(c->consts);
	while (c->nvars > 0)
		free(c->vars[--c->nvars]);
	free(c->vars);
	duet_vm_free(c->fold_vm);
	arena_free(&c->ar);
}

bool
duet_compile_tree(const char *src, size_t len, const duet_compile_options *opts,
				  bool (*fn) (void *arg, const node *root, const char *src, size_t srclen,
							  duet_error *err),
				  void *arg, duet_error *err)
{
	compiler	c;
	duet_limits lim;
	node	   *root = front(&c, &lim, src, len, opts, err);
	bool		ok;

	if (!root && err->cls == DUET_OK)
		nomem(&c);
	ok = root && fn(arg, root, c.src, c.srclen, err);
	release(&c);
	return ok;
}

duet_program *
duet_compile(const char *src, size_t len, const duet_compile_options *opts, duet_error *err)
{
	compiler	c;
	node	   *root;
	duet_program *p = NULL;
	duet_error	scratch;
	duet_limits lim;

	if (!err)
		err = &scratch;
	root = front(&c, &lim, src, len, opts, err);
	if (root && gen(&c, root) &&
		emit(&c, root, OP_RETURN, 0, 0, 0, 0))
	{
		p = calloc(1, sizeof(duet_program));
		if (p && pool_strings(&c, p))
		{
			p->consts = c.consts;
			p->nconsts = c.nconsts;
			if (!make_cnum(p) || !take_rx(&c, p))
			{
				free(p->cnum);
				free(p->strings);
				free(p);
				p = NULL;
				nomem(&c);
				goto done;
			}
			p->code = c.code;
			p->opnd = c.opnd;
			p->ncode = c.ncode;
			p->consts = c.consts;
			p->nconsts = c.nconsts;
			p->vars = c.vars;
			p->nvars = c.nvars;
			p->max_stack = c.max_depth > 0 ? c.max_depth : 1;
			p->type = root->type;
			p->max_string = c.lim->max_string;
			p->uses_arena = c.uses_arena;
			peephole(p);
			/* the numeric tier, where the stack VM has no faster path of its own */
			if (!p->single_vv && p->ncode > 1)
				p->fast = duet_fast_compile(root, p->nvars);
			duet_concat_plan(p);
			p->other_path = p->fast || p->ncat;
			c.code = NULL;
			c.opnd = NULL;
			c.consts = NULL;
			c.vars = NULL;
			c.nvars = 0;
		}
		else
		{
			if (p)
				free(p->strings);
			free(p);
			p = NULL;
			if (err->cls == DUET_OK)
				nomem(&c);
		}
	}
	else if (err->cls == DUET_OK)
		nomem(&c);				/* every failure above reports itself; this is allocation */
done:
	release(&c);
	return p;
}

void
duet_program_free(duet_program *p)
{
	size_t		i;

	if (!p)
		return;
	for (i = 0; i < p->nvars; i++)
		free(p->vars[i]);
	free(p->vars);
	free(p->code);
	free(p->opnd);
	free(p->consts);
	free(p->cnum);
	free(p->strings);
	duet_fast_free(p->fast);
	for (int k = 0; k < p->nrx; k++)
		duet_rx_code_free(p->rx[k].code);
	free(p->rx);
	free(p);
}

size_t
duet_program_nvars(const duet_program *p)
{
	return p->nvars;
}

const char *
duet_program_var(const duet_program *p, size_t i)
{
	return i < p->nvars ? p->vars[i] : NULL;
}

duet_type
duet_program_type(const duet_program *p)
{
	return p->type;
}
