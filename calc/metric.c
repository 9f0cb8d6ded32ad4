/*
 * metric.c — named metrics expanded inline (docs/calc.md, "Metrics").
 *
 * The compiler (compile.c, check_metric) asks its caller's resolver for a function name that is
 * not a builtin; for a metric it parses the metric's formula into its own arena and calls
 * duet_metric_body, which replaces each parameter by the call's argument (or, for a call without
 * arguments, keeps the parameter as a variable of the same name). The compiler then checks the
 * result in place of the call, so types, constant folding and superinstructions apply across the
 * boundary and the program is the one the formula written out would give.
 */
#include <string.h>

#include "calc_int.h"

static int
param_index(const duet_metric *m, const node *var)
{
	for (size_t i = 0; i < m->nparams; i++)
		if (strlen(m->params[i]) == var->value.u.str.len &&
			memcmp(m->params[i], var->value.u.str.ptr, var->value.u.str.len) == 0)
			return (int) i;
	return -1;
}

/*
 * Substitutes into n (recursion bounded by the parser's height limit). Nodes of the metric take
 * the call's position, so every error the expansion raises points at the call.
 */
static node *
substitute(node *n, const node *call, const duet_metric *m, const node **bad)
{
	if (n->kind == N_VAR)
	{
		int			i = param_index(m, n);

		if (i < 0)
		{
			*bad = n;
			return NULL;
		}
		if (call->nkids > 0)
			return call->kids[i];
	}
	n->line = call->line;
	n->col = call->col;
	for (int i = 0; i < n->nkids; i++)
		if (!(n->kids[i] = substitute(n->kids[i], call, m, bad)))
			return NULL;
	return n;
}

node *
duet_metric_body(const char *src, size_t srclen, const node *call, const char *name,
				 const duet_metric *m, const duet_limits *lim, calc_arena *ar, duet_error *err)
{
	lexer		lx;
	duet_error	sub;
	node	   *body;
	const node *bad = NULL;

	memset(&sub, 0, sizeof(sub));
	lexer_init(&lx, m->formula, m->formula_len, &sub);
	body = duet_parse(&lx, lim, ar, &sub);
	if (!body)
	{
		if (sub.cls == DUET_ERR_NOMEM)
			*err = sub;
		else
			duet_set_error(err, sub.cls, src, srclen, call->line, call->col, "",
						   "metric %s does not compile: %s", name, sub.message);
		return NULL;
	}
	body = substitute(body, call, m, &bad);
	if (!body)
		duet_set_error(err, DUET_ERR_UNKNOWN_VARIABLE, src, srclen, call->line, call->col, "",
					   "metric %s uses \"%.*s\", which is not one of its parameters", name,
					   (int) (bad->value.u.str.len > 64 ? 64 : bad->value.u.str.len),
					   bad->value.u.str.ptr);
	return body;
}

bool
duet_is_builtin(const char *name, size_t len)
{
	if (len == 2 && (name[0] | 0x20) == 'i' && (name[1] | 0x20) == 'f')
		return true;
	return duet_builtin_lookup(name, len) != NULL;
}

static void
walk_calls(const node *n, void (*fn) (void *arg, const char *name, size_t len), void *arg)
{
	if (n->kind == N_CALL && !duet_is_builtin(n->value.u.str.ptr, n->value.u.str.len))
		fn(arg, n->value.u.str.ptr, n->value.u.str.len);
	for (int i = 0; i < n->nkids; i++)
		walk_calls(n->kids[i], fn, arg);
}

bool
duet_formula_calls(const char *src, size_t len, void (*fn) (void *arg, const char *name, size_t len),
				   void *arg, duet_error *err)
{
	const duet_limits lim = duet_default_limits;
	calc_arena	ar = {NULL};
	lexer		lx;
	node	   *root;

	memset(err, 0, sizeof(*err));
	if (len > lim.max_length)
	{
		duet_set_runtime_error(err, DUET_ERR_LIMIT, 0, 0, "formula is %zu bytes long (limit %zu)",
							   len, lim.max_length);
		return false;
	}
	lexer_init(&lx, src, len, err);
	root = duet_parse(&lx, &lim, &ar, err);
	if (root)
		walk_calls(root, fn, arg);
	arena_free(&ar);
	return root != NULL;
}
