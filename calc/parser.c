/*
 * parser.c — recursive descent over the grammar of DESIGN §4, lowest precedence first:
 *
 *   expr    := and_e ("or" and_e)*
 *   and_e   := not_e ("and" not_e)*
 *   not_e   := "not" not_e | cmp
 *   cmp     := concat [ cmpop concat | "is" ["not"] "null"
 *                     | ["not"] "between" concat "and" concat | ["not"] "in" "(" expr, … ")" ]
 *   concat  := add ("||" add)*
 *   add     := mul (("+" | "-") mul)*
 *   mul     := pow (("*" | "/" | "%") pow)*
 *   pow     := unary ["^" pow]                  (right-associative)
 *   unary   := "-" unary | "+" unary | primary   (binds tighter than ^: -2^2 = 4, as in PostgreSQL)
 *   primary := number | string | true | false | null | name | name "(" [expr, …] ")"
 *            | "(" expr ")" | case
 *
 * Comparisons do not chain (a < b < c is a syntax error, as in SQL). Every recursive rule counts
 * depth against the limit before descending, so no input can exhaust the C stack.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "calc_int.h"

typedef struct parser
{
	lexer	   *lx;
	const duet_limits *lim;
	calc_arena *arena;
	duet_error *err;
	int			depth;
} parser;

#define TOK(p) ((p)->lx->cur)

static node *parse_expr(parser *p);
static node *parse_concat(parser *p);

static bool
next(parser *p)
{
	return lexer_next(p->lx);
}

static node *
syntax_error(parser *p, const char *expected)
{
	const token *t = &TOK(p);

	if (t->kind == T_EOF)
		duet_set_error(p->err, DUET_ERR_SYNTAX, p->lx->src, p->lx->len, t->line, t->col, expected,
					   "expected %s, found end of formula", expected);
	else
		duet_set_error(p->err, DUET_ERR_SYNTAX, p->lx->src, p->lx->len, t->line, t->col, expected,
					   "expected %s, found \"%.*s\"", expected, (int) (t->len > 40 ? 40 : t->len),
					   t->start);
	return NULL;
}

static node *
new_node(parser *p, node_kind kind, const token *at, int nkids)
{
	node	   *n = arena_alloc(p->arena, sizeof(node));

	if (!n)
		return NULL;
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->height = 1;
	n->line = at->line;
	n->col = at->col;
	n->nkids = nkids;
	n->type = DUET_T_ANY;
	if (nkids > 0)
	{
		n->kids = arena_alloc(p->arena, sizeof(node *) * nkids);
		if (!n->kids)
			return NULL;
	}
	return n;
}

/*
 * Sets n's height from its children. Left-deep chains such as 1+1+…+1 are parsed by loops, so
 * the tree's height is bounded here, keeping the compiler's recursion as shallow as the parser's.
 */
static node *
finish(parser *p, node *n)
{
	int			i,
				h = 0;

	if (!n)
		return NULL;
	for (i = 0; i < n->nkids; i++)
		if (n->kids[i]->height > h)
			h = n->kids[i]->height;
	n->height = h + 1;
	if (n->height > 4 * p->lim->max_depth)
	{
		duet_set_error(p->err, DUET_ERR_LIMIT, p->lx->src, p->lx->len, n->line, n->col, "",
					   "formula nested too deeply (limit %d levels of operators)",
					   4 * p->lim->max_depth);
		return NULL;
	}
	return n;
}

static node *
nomem(parser *p)
{
	duet_set_runtime_error(p->err, DUET_ERR_NOMEM, 0, 0, "out of memory");
	return NULL;
}

static bool
enter(parser *p)
{
	if (++p->depth > p->lim->max_depth)
	{
		duet_set_error(p->err, DUET_ERR_LIMIT, p->lx->src, p->lx->len, TOK(p).line, TOK(p).col, "",
					   "formula nested too deeply (limit %d)", p->lim->max_depth);
		return false;
	}
	return true;
}

#define LEAVE(p, result) do { node *r_ = (result); (p)->depth--; return r_; } while (0)

static node *
binary(parser *p, node_kind kind, int op, const token *at, node *l, node *r)
{
	node	   *n;

	if (!l || !r)
		return NULL;
	n = new_node(p, kind, at, 2);
	if (!n)
		return nomem(p);
	n->op = op;
	n->kids[0] = l;
	n->kids[1] = r;
	return finish(p, n);
}

/* "(" expr, … ")" — the list of a function call or an in-list; *count gets its length. */
static node **
parse_list(parser *p, int *count, bool allow_empty)
{
	node	  **items = NULL;
	int			n = 0,
				cap = 0;

	if (TOK(p).kind != T_LPAREN)
		return (node **) syntax_error(p, "\"(\"");
	if (!next(p))
		return NULL;
	if (TOK(p).kind == T_RPAREN && allow_empty)
	{
		*count = 0;
		return next(p) ? arena_alloc(p->arena, sizeof(node *)) : NULL;
	}
	for (;;)
	{
		node	   *e = parse_expr(p);

		if (!e)
			return NULL;
		if (n == cap)
		{
			node	  **grown;

			cap = cap ? cap * 2 : 4;
			grown = arena_alloc(p->arena, sizeof(node *) * cap);
			if (!grown)
				return (node **) nomem(p);
			if (n)
				memcpy(grown, items, sizeof(node *) * n);
			items = grown;
		}
		items[n++] = e;
		if (TOK(p).kind == T_COMMA)
		{
			if (!next(p))
				return NULL;
			continue;
		}
		if (TOK(p).kind != T_RPAREN)
			return (node **) syntax_error(p, "\",\" or \")\"");
		if (!next(p))
			return NULL;
		*count = n;
		return items;
	}
}

/* Copies a quoted token's content without its quotes, undoubling the quote character. */
static char *
unquote(parser *p, const token *t, size_t *outlen)
{
	char		q = t->start[0];
	char	   *s = arena_alloc(p->arena, t->len);
	size_t		i,
				n = 0;

	if (!s)
		return NULL;
	for (i = 1; i + 1 < t->len; i++)
	{
		s[n++] = t->start[i];
		if (t->start[i] == q)
			i++;
	}
	s[n] = '\0';
	*outlen = n;
	return s;
}

static node *
parse_case(parser *p)
{
	token		at = TOK(p);
	node	   *subject = NULL;
	node	  **arms = NULL;
	int			n = 0,
				cap = 0;
	node	   *c;

	if (!next(p))
		return NULL;
	if (TOK(p).kind != T_WHEN)
	{
		/* simple form: case x when v then r … end ≡ case when x = v then r … end */
		if (!(subject = parse_expr(p)))
			return NULL;
	}
	if (TOK(p).kind != T_WHEN)
		return syntax_error(p, "\"when\"");
	while (TOK(p).kind == T_WHEN)
	{
		token		when = TOK(p);
		node	   *cond,
				   *then;

		if (n + 3 > cap)
		{
			node	  **grown;

			cap = cap ? cap * 2 : 8;
			if (!(grown = arena_alloc(p->arena, sizeof(node *) * cap)))
				return nomem(p);
			if (n)
				memcpy(grown, arms, sizeof(node *) * n);
			arms = grown;
		}
		if (!next(p) || !(cond = parse_expr(p)))
			return NULL;
		if (subject)
			cond = binary(p, N_CMP, T_EQ, &when, subject, cond);
		if (TOK(p).kind != T_THEN)
			return syntax_error(p, "\"then\"");
		if (!next(p) || !(then = parse_expr(p)))
			return NULL;
		arms[n++] = cond;
		arms[n++] = then;
	}
	if (TOK(p).kind == T_ELSE)
	{
		if (!next(p) || !(arms[n++] = parse_expr(p)))
			return NULL;
	}
	if (TOK(p).kind != T_END)
		return syntax_error(p, n % 2 ? "\"end\"" : "\"when\", \"else\" or \"end\"");
	if (!next(p))
		return NULL;
	c = new_node(p, N_CASE, &at, n);
	if (!c)
		return nomem(p);
	c->op = n % 2;				/* has else */
	memcpy(c->kids, arms, sizeof(node *) * n);
	return finish(p, c);
}

static node *
parse_primary(parser *p)
{
	token		t = TOK(p);
	node	   *n;

	switch (t.kind)
	{
		case T_NUMBER:
			n = new_node(p, N_CONST, &t, 0);
			if (!n)
				return nomem(p);
			n->value = t.is_int ? duet_int(t.i) : duet_number(t.num);
			return next(p) ? n : NULL;
		case T_STRING:
			{
				size_t		len;
				char	   *s = unquote(p, &t, &len);

				n = new_node(p, N_CONST, &t, 0);
				if (!n || !s)
					return nomem(p);
				n->value = duet_string(s, len);
				return next(p) ? n : NULL;
			}
		case T_TRUE:
		case T_FALSE:
			n = new_node(p, N_CONST, &t, 0);
			if (!n)
				return nomem(p);
			n->value = duet_bool(t.kind == T_TRUE);
			return next(p) ? n : NULL;
		case T_NULL:
			n = new_node(p, N_CONST, &t, 0);
			if (!n)
				return nomem(p);
			n->value = duet_null();
			return next(p) ? n : NULL;
		case T_LPAREN:
			if (!next(p) || !(n = parse_expr(p)))
				return NULL;
			if (TOK(p).kind != T_RPAREN)
				return syntax_error(p, "\")\"");
			return next(p) ? n : NULL;
		case T_CASE:
			return parse_case(p);
		case T_IDENT:
		case T_QIDENT:
			{
				char	   *name;
				size_t		len;

				if (t.kind == T_QIDENT)
					name = unquote(p, &t, &len);
				else
				{
					len = t.len;
					name = arena_alloc(p->arena, len + 1);
					if (name)
					{
						memcpy(name, t.start, len);
						name[len] = '\0';
					}
				}
				if (!name)
					return nomem(p);
				if (!next(p))
					return NULL;
				if (t.kind == T_IDENT && TOK(p).kind == T_STRING &&
					((len == 4 && strncasecmp(name, "date", 4) == 0) ||
					 (len == 9 && strncasecmp(name, "timestamp", 9) == 0)))
				{
					/* date '…', timestamp '…': a call on the constant, folded at compile time */
					n = new_node(p, N_CALL, &t, 1);
					if (!n)
						return nomem(p);
					if (!(n->kids[0] = parse_primary(p)))
						return NULL;
					n->value = duet_string(name, len);
					return finish(p, n);
				}
				if (t.kind == T_IDENT && TOK(p).kind == T_LPAREN)
				{
					node	  **args;
					int			nargs;

					args = parse_list(p, &nargs, true);
					if (!args)
						return NULL;
					n = new_node(p, N_CALL, &t, 0);
					if (!n)
						return nomem(p);
					n->kids = args;
					n->nkids = nargs;
					n->value = duet_string(name, len);	/* resolved by the checker */
					return finish(p, n);
				}
				n = new_node(p, N_VAR, &t, 0);
				if (!n)
					return nomem(p);
				n->value = duet_string(name, len);	/* resolved to an index by the checker */
				return n;
			}
		default:
			return syntax_error(p, "an expression");
	}
}

static node *
parse_unary(parser *p)
{
	token		t = TOK(p);

	if (t.kind == T_MINUS || t.kind == T_PLUS)
	{
		node	   *operand,
				   *n;

		if (!enter(p))
			return NULL;
		if (!next(p) || !(operand = parse_unary(p)))
			LEAVE(p, NULL);
		if (t.kind == T_PLUS)
			LEAVE(p, operand);
		n = new_node(p, N_NEG, &t, 1);
		if (!n)
			LEAVE(p, nomem(p));
		n->kids[0] = operand;
		LEAVE(p, finish(p, n));
	}
	return parse_primary(p);
}

static node *
parse_pow(parser *p)
{
	node	   *base;
	token		t;

	if (!(base = parse_unary(p)))
		return NULL;
	t = TOK(p);
	if (t.kind != T_CARET)
		return base;
	if (!enter(p))
		return NULL;
	if (!next(p))
		LEAVE(p, NULL);
	LEAVE(p, binary(p, N_BINOP, T_CARET, &t, base, parse_pow(p)));
}

static node *
parse_mul(parser *p)
{
	node	   *l = parse_pow(p);

	while (l && (TOK(p).kind == T_STAR || TOK(p).kind == T_SLASH || TOK(p).kind == T_PERCENT))
	{
		token		t = TOK(p);

		if (!next(p))
			return NULL;
		l = binary(p, N_BINOP, t.kind, &t, l, parse_pow(p));
	}
	return l;
}

static node *
parse_add(parser *p)
{
	node	   *l = parse_mul(p);

	while (l && (TOK(p).kind == T_PLUS || TOK(p).kind == T_MINUS))
	{
		token		t = TOK(p);

		if (!next(p))
			return NULL;
		l = binary(p, N_BINOP, t.kind, &t, l, parse_mul(p));
	}
	return l;
}

static node *
parse_concat(parser *p)
{
	node	   *l = parse_add(p);

	while (l && TOK(p).kind == T_CONCAT)
	{
		token		t = TOK(p);

		if (!next(p))
			return NULL;
		l = binary(p, N_BINOP, T_CONCAT, &t, l, parse_add(p));
	}
	return l;
}

static node *
parse_cmp(parser *p)
{
	node	   *l = parse_concat(p);
	token		t;
	bool		negated = false;

	if (!l)
		return NULL;
	t = TOK(p);
	switch (t.kind)
	{
		case T_EQ: case T_NE: case T_LT: case T_LE: case T_GT: case T_GE:
			if (!next(p))
				return NULL;
			return binary(p, N_CMP, t.kind, &t, l, parse_concat(p));
		case T_IS:
			{
				node	   *n;

				if (!next(p))
					return NULL;
				if (TOK(p).kind == T_NOT)
				{
					negated = true;
					if (!next(p))
						return NULL;
				}
				if (TOK(p).kind != T_NULL)
					return syntax_error(p, negated ? "\"null\"" : "\"null\" or \"not null\"");
				if (!next(p))
					return NULL;
				n = new_node(p, N_ISNULL, &t, 1);
				if (!n)
					return nomem(p);
				n->op = negated;
				n->kids[0] = l;
				return finish(p, n);
			}
		case T_NOT:
			negated = true;
			if (!next(p))
				return NULL;
			if (TOK(p).kind != T_BETWEEN && TOK(p).kind != T_IN)
				return syntax_error(p, "\"between\" or \"in\"");
			t = TOK(p);
			/* fall through */
		case T_BETWEEN:
		case T_IN:
			{
				node	   *n;

				if (!next(p))
					return NULL;
				if (t.kind == T_BETWEEN)
				{
					node	   *lo,
							   *hi;

					if (!(lo = parse_concat(p)))
						return NULL;
					if (TOK(p).kind != T_AND)
						return syntax_error(p, "\"and\"");
					if (!next(p) || !(hi = parse_concat(p)))
						return NULL;
					n = new_node(p, N_BETWEEN, &t, 3);
					if (!n)
						return nomem(p);
					n->kids[0] = l;
					n->kids[1] = lo;
					n->kids[2] = hi;
				}
				else
				{
					node	  **items;
					int			count;

					if (!(items = parse_list(p, &count, false)))
						return NULL;
					n = new_node(p, N_IN, &t, 0);
					if (!n)
						return nomem(p);
					n->kids = arena_alloc(p->arena, sizeof(node *) * (count + 1));
					if (!n->kids)
						return nomem(p);
					n->kids[0] = l;
					memcpy(n->kids + 1, items, sizeof(node *) * count);
					n->nkids = count + 1;
				}
				n->op = negated;
				return finish(p, n);
			}
		default:
			return l;
	}
}

static node *
parse_not(parser *p)
{
	token		t = TOK(p);
	node	   *operand,
			   *n;

	if (t.kind != T_NOT)
		return parse_cmp(p);
	if (!enter(p))
		return NULL;
	if (!next(p) || !(operand = parse_not(p)))
		LEAVE(p, NULL);
	n = new_node(p, N_NOT, &t, 1);
	if (!n)
		LEAVE(p, nomem(p));
	n->kids[0] = operand;
	LEAVE(p, finish(p, n));
}

static node *
parse_and(parser *p)
{
	node	   *l = parse_not(p);

	while (l && TOK(p).kind == T_AND)
	{
		token		t = TOK(p);

		if (!next(p))
			return NULL;
		l = binary(p, N_AND, T_AND, &t, l, parse_not(p));
	}
	return l;
}

static node *
parse_expr(parser *p)
{
	node	   *l;

	if (!enter(p))
		return NULL;
	l = parse_and(p);
	while (l && TOK(p).kind == T_OR)
	{
		token		t = TOK(p);

		if (!next(p))
			LEAVE(p, NULL);
		l = binary(p, N_OR, T_OR, &t, l, parse_and(p));
	}
	LEAVE(p, l);
}

node *
duet_parse(lexer *lx, const duet_limits *lim, calc_arena *arena, duet_error *err)
{
	parser		p = {lx, lim, arena, err, 0};
	node	   *root;

	if (!lexer_next(lx))
		return NULL;
	if (TOK(&p).kind == T_EOF)
		return syntax_error(&p, "an expression");
	root = parse_expr(&p);
	if (root && TOK(&p).kind != T_EOF)
	{
		const char *exp = "an operator or end of formula";

		switch (TOK(&p).kind)
		{
			case T_EQ: case T_NE: case T_LT: case T_LE: case T_GT: case T_GE:
				exp = "end of formula (comparisons do not chain)";
				break;
			case T_RPAREN:
				exp = "end of formula (unbalanced \")\")";
				break;
			default:
				break;
		}
		return syntax_error(&p, exp);
	}
	return root;
}
