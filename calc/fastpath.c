/*
 * fastpath.c — the numeric tier: a second, register-based code for formulas whose values are all
 * numbers (arithmetic, comparisons and and/or/not in `case` conditions, clamp and round with
 * constant arguments), run on unboxed doubles with NULL as NaN while every input is a double or
 * NULL. Any other input (an integer, a string, a boolean, an invalid value) takes the stack VM, so
 * the tier never has to produce an error: with such inputs none of its operations can fail.
 *
 * Why it gives the VM's results bit for bit (docs/calc.md, "The numeric tier"):
 * - a non-finite input is NULL, and every operation's non-finite result is NULL: here both are
 *   NaN, which every operation propagates (x / 0 is ±inf or NaN, so NaN: the VM's NULL for ÷0);
 * - the same IEEE operations in the same order on the same doubles (integer constants meet a
 *   double operand, which is what mixing an integer with a double means: the constant as a double);
 * - a condition only decides whether an arm is taken, i.e. whether it is TRUE: compiled to jumps,
 *   three-valued logic needs no value (x < c is "not true" when x is NULL, as a C comparison with
 *   NaN is false; x != c is islessgreater);
 * - a case arm that is a constant returns that constant as it is (an integer stays an integer);
 * - -0 only ever differs from 0 in the sign of a zero result, which the return normalises.
 * test/unit/vm_diff.c compares it with the stack VM on every conformance and fuzz formula.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

#define FAST_MAX_REGS 64

/* Opcodes. R registers (variables first, then temporaries), K the tier's number constants. */
enum
{
	/* d = a op b, op in + - * / % (in this order), operands R op R, R op K[x], K[x] op R */
	F_ADD_RR, F_SUB_RR, F_MUL_RR, F_DIV_RR, F_MOD_RR,
	F_ADD_RK, F_SUB_RK, F_MUL_RK, F_DIV_RK, F_MOD_RK,
	F_ADD_KR, F_SUB_KR, F_MUL_KR, F_DIV_KR, F_MOD_KR,
	F_NEG,						/* d = -a */
	F_CLAMP,					/* d = clamp(a, K[x], K[x + 1]) */
	F_ROUND,					/* d = round(a, x) */
	F_LOADK,					/* d = K[x] */
	F_MOV,						/* d = a */
	F_JMP,						/* to x */
	F_JNULL,					/* to x if a is NULL */
	F_JNOTNULL,					/* to x if a is not NULL */
	/* to x if R[a] cmp R[b] / R[a] cmp K[b] holds (false when either is NULL); _N: if it does not */
	F_JLT_RR, F_JLE_RR, F_JGT_RR, F_JGE_RR, F_JEQ_RR, F_JLG_RR,
	F_JLT_RK, F_JLE_RK, F_JGT_RK, F_JGE_RK, F_JEQ_RK, F_JLG_RK,
	F_JLT_RR_N, F_JLE_RR_N, F_JGT_RR_N, F_JGE_RR_N, F_JEQ_RR_N, F_JLG_RR_N,
	F_JLT_RK_N, F_JLE_RK_N, F_JGT_RK_N, F_JGE_RK_N, F_JEQ_RK_N, F_JLG_RK_N,
	F_RET,						/* result = a (NaN: NULL) */
	F_RETV,						/* result = V[x], a constant of any type */
	F_NCODES
};

/* comparisons, in the order of the F_J*_RR opcodes */
enum
{
	C_LT, C_LE, C_GT, C_GE, C_EQ, C_LG
};

typedef struct fins
{
	uint8_t		op;
	uint8_t		d;
	uint8_t		a;
	uint8_t		b;
	int32_t		x;				/* constant index, jump target or digits */
} fins;

struct duet_fast
{
	fins	   *code;
	int			ncode,
				capcode;
	double	   *k;
	int			nk,
				capk;
	duet_value *v;				/* returned constants; strings in their own malloc'd copies */
	int			nv,
				capv;
	int			nvars;
};

typedef struct fcomp
{
	duet_fast  *f;
	int			ntemp;			/* registers in use: nvars + temporaries */
	bool		ok;				/* false once something is not supported (or out of memory) */
} fcomp;

static int
emit(fcomp *c, int op, int d, int a, int b, int x)
{
	duet_fast  *f = c->f;

	if (!c->ok)
		return -1;
	if (f->ncode == f->capcode)
	{
		int			cap = f->capcode ? 2 * f->capcode : 16;
		fins	   *grown = realloc(f->code, (size_t) cap * sizeof(fins));

		if (!grown)
			return c->ok = false, -1;
		f->code = grown;
		f->capcode = cap;
	}
	f->code[f->ncode].op = (uint8_t) op;
	f->code[f->ncode].d = (uint8_t) d;
	f->code[f->ncode].a = (uint8_t) a;
	f->code[f->ncode].b = (uint8_t) b;
	f->code[f->ncode].x = x;
	return f->ncode++;
}

/*
 * Jump lists: the jumps still to be pointed at one place, chained through their x (-1 ends a
 * list, as compile.c chains a case's exit jumps).
 */
static void
add_jump(fcomp *c, int j, int *list)
{
	if (!c->ok || j < 0)
		return;
	c->f->code[j].x = *list;
	*list = j;
}

/* Points every jump of list at the next instruction. */
static void
patch(fcomp *c, int list)
{
	while (c->ok && list >= 0)
	{
		int			next = c->f->code[list].x;

		c->f->code[list].x = c->f->ncode;
		list = next;
	}
}

static int
add_k(fcomp *c, double d)
{
	duet_fast  *f = c->f;

	for (int i = 0; i < f->nk; i++)
		if (memcmp(&f->k[i], &d, sizeof(d)) == 0)
			return i;
	if (f->nk == f->capk)
	{
		int			cap = f->capk ? 2 * f->capk : 8;
		double	   *grown = realloc(f->k, (size_t) cap * sizeof(double));

		if (!grown)
			return c->ok = false, 0;
		f->k = grown;
		f->capk = cap;
	}
	f->k[f->nk] = d;
	return f->nk++;
}

/* Two constants in consecutive slots (clamp's bounds); the index of the first. */
static int
add_k2(fcomp *c, double lo, double hi)
{
	duet_fast  *f = c->f;

	if (f->nk + 2 > f->capk)
	{
		int			cap = 2 * f->capk + 8;
		double	   *grown = realloc(f->k, (size_t) cap * sizeof(double));

		if (!grown)
			return c->ok = false, 0;
		f->k = grown;
		f->capk = cap;
	}
	f->k[f->nk] = lo;
	f->k[f->nk + 1] = hi;
	f->nk += 2;
	return f->nk - 2;
}

static int
temp(fcomp *c)
{
	if (c->ntemp >= FAST_MAX_REGS)
		return c->ok = false, 0;
	return c->ntemp++;
}

/* A number constant an operation can take as a double: doubles, integers it reads exactly. */
static bool
num_const(const node *n)
{
	return duet_exact_num_const(n);
}

static double
const_num(const node *n)
{
	return duet_num(&n->value);
}

static void val(fcomp *c, const node *n, int d);

/* A register holding n's value: a variable's own, or a new temporary. */
static int
operand(fcomp *c, const node *n)
{
	int			r;

	if (n->kind == N_VAR)
	{
		if (n->type != DUET_T_ANY && n->type != DUET_T_NUMBER)
			c->ok = false;
		return n->var;
	}
	r = temp(c);
	val(c, n, r);
	return r;
}

/* + - * / % as 0..4, or -1 */
static int
arith(int tok)
{
	switch (tok)
	{
		case T_PLUS: return 0;
		case T_MINUS: return 1;
		case T_STAR: return 2;
		case T_SLASH: return 3;
		case T_PERCENT: return 4;
		default: return -1;
	}
}

static void case_arms(fcomp *c, const node *n, int d, bool tail);

/*
 * Computes n, a number (or NULL) for every input the tier runs on, into register d; anything it
 * cannot prove to be one (an integer constant as a value, a string, a boolean) clears c->ok.
 */
static void
val(fcomp *c, const node *n, int d)
{
	int			mark = c->ntemp,
				k;

	if (!c->ok)
		return;
	switch (n->kind)
	{
		case N_CONST:
			if (n->value.type == DUET_T_NUMBER)
				emit(c, F_LOADK, d, 0, 0, add_k(c, n->value.u.num));
			else if (n->value.type == DUET_T_NULL)
				emit(c, F_LOADK, d, 0, 0, add_k(c, NAN));
			else
				c->ok = false;	/* an integer stays one: the stack VM's */
			break;
		case N_VAR:
			emit(c, F_MOV, d, operand(c, n), 0, 0);
			break;
		case N_NEG:
			emit(c, F_NEG, d, operand(c, n->kids[0]), 0, 0);
			break;
		case N_BINOP:
			if ((k = arith(n->op)) < 0)
			{
				c->ok = false;
				break;
			}
			/* operands in the VM's order; a constant one is read as a double */
			if (num_const(n->kids[1]) && !num_const(n->kids[0]))
			{
				int			a = operand(c, n->kids[0]);

				emit(c, F_ADD_RK + k, d, a, 0, add_k(c, const_num(n->kids[1])));
			}
			else if (num_const(n->kids[0]) && !num_const(n->kids[1]))
			{
				int			b = operand(c, n->kids[1]);

				emit(c, F_ADD_KR + k, d, 0, b, add_k(c, const_num(n->kids[0])));
			}
			else
			{
				int			a = operand(c, n->kids[0]),
							b = operand(c, n->kids[1]);

				emit(c, F_ADD_RR + k, d, a, b, 0);
			}
			break;
		case N_CASE:
			case_arms(c, n, d, false);
			break;
		case N_CALL:
			if (strcmp(n->fn->name, "clamp") == 0 && num_const(n->kids[1]) && num_const(n->kids[2]))
			{
				int			a = operand(c, n->kids[0]);
				int			lo = add_k2(c, const_num(n->kids[1]), const_num(n->kids[2]));

				emit(c, F_CLAMP, d, a, 0, lo);
			}
			else if (strcmp(n->fn->name, "round") == 0 && duet_round_const_digits(n) != INT32_MIN)
				emit(c, F_ROUND, d, operand(c, n->kids[0]), 0, duet_round_const_digits(n));
			else
				c->ok = false;
			break;
		default:
			c->ok = false;
	}
	c->ntemp = mark;
}

/* The comparison that holds when `cmp` does not, among ordered operands. */
static int
negate_cmp(int cmp)
{
	static const int neg[] = {[C_LT] = C_GE, [C_LE] = C_GT, [C_GT] = C_LE, [C_GE] = C_LT,
	[C_EQ] = C_LG, [C_LG] = C_EQ};

	return neg[cmp];
}

/* x cmp y as y cmp' x */
static int
mirror_cmp(int cmp)
{
	static const int mir[] = {[C_LT] = C_GT, [C_LE] = C_GE, [C_GT] = C_LT, [C_GE] = C_LE,
	[C_EQ] = C_EQ, [C_LG] = C_LG};

	return mir[cmp];
}

/*
 * Jumps emitted for a condition: taken when its truth is in the set; the sets are {true} (t),
 * {false, null} (!t: "not true"), {false} (f) and {true, null} (!f). `want` 0: {true}, 1: {false,
 * null}, 2: {false}, 3: {true, null}. The jumps are added to list (patched by the caller).
 */
static void
jump_if(fcomp *c, const node *n, int want, int *list)
{
	int			mark = c->ntemp;

	if (!c->ok)
		return;
	switch (n->kind)
	{
		case N_CONST:
			{
				/* true, false or null: a jump or none */
				int			truth = n->value.type == DUET_T_BOOL ? n->value.u.boolean :
					n->value.type == DUET_T_NULL ? -1 : 9;
				bool		taken;

				if (truth == 9)
				{
					c->ok = false;
					break;
				}
				taken = want == 0 ? truth == 1 : want == 1 ? truth != 1 :
					want == 2 ? truth == 0 : truth != 0;
				if (taken)
					add_jump(c, emit(c, F_JMP, 0, 0, 0, 0), list);
				break;
			}
		case N_NOT:
			/* not swaps true and false, keeps null */
			jump_if(c, n->kids[0], want == 0 ? 2 : want == 1 ? 3 : want == 2 ? 0 : 1, list);
			break;
		case N_AND:
		case N_OR:
			{
				/*
				 * or: true if either is, false if both are; and: the dual. "Any" sets jump on either
				 * operand; "all" sets skip when the first operand rules it out.
				 */
				bool		is_or = n->kind == N_OR;
				bool		any = is_or ? (want == 0 || want == 3) : (want == 1 || want == 2);

				if (any)
				{
					jump_if(c, n->kids[0], want, list);
					jump_if(c, n->kids[1], want, list);
				}
				else
				{
					/* or not true / or false / and true / and not false: skip unless the first allows it */
					int			skip = -1;
					int			opposite = want == 0 ? 1 : want == 1 ? 0 : want == 2 ? 3 : 2;

					jump_if(c, n->kids[0], opposite, &skip);
					jump_if(c, n->kids[1], want, list);
					patch(c, skip);
				}
				break;
			}
		case N_ISNULL:
			{
				/* never null: {true} = {true, null}, {false} = {false, null} */
				bool		on_null = (want == 0 || want == 3) != (n->op != 0);

				add_jump(c, emit(c, on_null ? F_JNULL : F_JNOTNULL, 0, operand(c, n->kids[0]), 0, 0),
						 list);
				break;
			}
		case N_CMP:
			{
				const node *l = n->kids[0],
						   *r = n->kids[1];
				int			cmp,
							a,
							b;
				bool		rk = false;

				switch (n->op)
				{
					case T_LT: cmp = C_LT; break;
					case T_LE: cmp = C_LE; break;
					case T_GT: cmp = C_GT; break;
					case T_GE: cmp = C_GE; break;
					case T_EQ: cmp = C_EQ; break;
					default: cmp = C_LG; break;
				}
				if (num_const(r) && !num_const(l))
				{
					a = operand(c, l);
					b = add_k(c, const_num(r));
					rk = true;
				}
				else if (num_const(l) && !num_const(r))
				{
					a = operand(c, r);
					b = add_k(c, const_num(l));
					cmp = mirror_cmp(cmp);
					rk = true;
				}
				else
				{
					a = operand(c, l);
					b = operand(c, r);
				}
				if (b > UINT8_MAX)
				{
					c->ok = false;
					break;
				}
				/* {false} holds when the negated comparison does; "not": when the comparison fails */
				if (want == 2 || want == 3)
					cmp = negate_cmp(cmp);
				add_jump(c, emit(c, (rk ? F_JLT_RK : F_JLT_RR) + cmp + (want == 1 || want == 3 ? 12 : 0),
								 0, a, b, 0), list);
				break;
			}
		default:
			c->ok = false;
	}
	c->ntemp = mark;
}

/* a value or a returned one (tail): constants return as they are, numbers through F_RET */
static void
tail_or_val(fcomp *c, const node *n, int d, bool tail)
{
	if (!tail)
	{
		val(c, n, d);
		return;
	}
	if (n->kind == N_CASE)
		case_arms(c, n, d, true);
	else if (n->kind == N_CONST)
	{
		duet_fast  *f = c->f;
		duet_value	v = n->value;

		if (f->nv == f->capv)
		{
			int			cap = f->capv ? 2 * f->capv : 4;
			duet_value *grown = realloc(f->v, (size_t) cap * sizeof(duet_value));

			if (!grown)
			{
				c->ok = false;
				return;
			}
			f->v = grown;
			f->capv = cap;
		}
		if (v.type == DUET_T_STRING)
		{
			char	   *s = malloc(v.u.str.len + 1);

			if (!s)
			{
				c->ok = false;
				return;
			}
			memcpy(s, v.u.str.ptr, v.u.str.len);
			v.u.str.ptr = s;
		}
		f->v[f->nv] = v;
		emit(c, F_RETV, 0, 0, 0, f->nv++);
	}
	else
	{
		int			mark = c->ntemp;
		int			r = n->kind == N_VAR ? operand(c, n) : (val(c, n, d), d);

		emit(c, F_RET, 0, r, 0, 0);
		c->ntemp = mark;
	}
}

/* case when … then … [else …] end into d, or returned (tail) */
static void
case_arms(fcomp *c, const node *n, int d, bool tail)
{
	int			narms = n->nkids - n->op;
	int			ends = -1;

	for (int i = 0; i < narms && c->ok; i += 2)
	{
		int			next = -1;

		jump_if(c, n->kids[i], 1, &next);
		tail_or_val(c, n->kids[i + 1], d, tail);
		if (!tail)
			add_jump(c, emit(c, F_JMP, 0, 0, 0, 0), &ends);
		patch(c, next);
	}
	if (n->op)
		tail_or_val(c, n->kids[n->nkids - 1], d, tail);
	else
	{
		node		nullnode = *n;

		nullnode.kind = N_CONST;
		nullnode.value = duet_null();
		nullnode.nkids = 0;
		tail_or_val(c, &nullnode, d, tail);
	}
	patch(c, ends);
}

void
duet_fold_case(node *n)
{
	int			narms = n->nkids - n->op,
				kept = 0;
	duet_type	type = n->type;

	for (int i = 0; i < narms; i += 2)
	{
		const node *cnd = n->kids[i];

		if (cnd->kind != N_CONST)
		{
			n->kids[kept++] = n->kids[i];
			n->kids[kept++] = n->kids[i + 1];
			continue;
		}
		if (cnd->value.type == DUET_T_BOOL && cnd->value.u.boolean)
		{
			/* always taken: the arms after it, and the else, are never evaluated */
			n->kids[kept] = n->kids[i + 1];
			n->nkids = kept + 1;
			n->op = 1;
			goto done;
		}
		/* false or null: never taken */
	}
	if (n->op)
		n->kids[kept] = n->kids[n->nkids - 1];
	n->nkids = kept + n->op;
done:
	if (n->nkids == 1 && n->op)
		*n = *n->kids[0];		/* no arm left: the else */
	else if (n->nkids == 0)
	{
		n->kind = N_CONST;		/* no arm and no else: null */
		n->value = duet_null();
	}
	n->type = type;
}

void
duet_fast_free(duet_fast *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->nv; i++)
		if (f->v[i].type == DUET_T_STRING)
			free((char *) f->v[i].u.str.ptr);
	free(f->v);
	free(f->k);
	free(f->code);
	free(f);
}

duet_fast *
duet_fast_compile(const node *root, size_t nvars)
{
	fcomp		c;

	if (nvars >= FAST_MAX_REGS || root->kind == N_CONST || root->kind == N_VAR)
		return NULL;
	memset(&c, 0, sizeof(c));
	if (!(c.f = calloc(1, sizeof(duet_fast))))
		return NULL;
	c.f->nvars = (int) nvars;
	c.ntemp = (int) nvars;
	c.ok = true;
	tail_or_val(&c, root, temp(&c), true);
	if (!c.ok)
	{
		duet_fast_free(c.f);
		return NULL;
	}
	return c.f;
}

/* finite, else NaN (NULL) */
static inline double
fin(double x)
{
	return x - x == 0 ? x : NAN;
}

/*
 * duet_eval of a program with a numeric tier: the tier, or the stack VM when an input needs it.
 * Registers hold "raw" values: ±inf is NULL as NaN is, so loads and + - * pass them on unchecked
 * (any non-finite operand gives a non-finite result) and the operations that could turn one into
 * a finite value — a divisor, clamp, round, comparisons, is null, the return — check theirs.
 */
#define FAST_SIGNATURE duet_errclass \
duet_fast_run(const duet_program *p, const duet_value *vars, duet_vm *vm, duet_value *out, \
			  duet_error *err)
#define FAST_SETUP const duet_fast *f = p->fast;
#define FAST_STRIDE 1
#define FAST_GUARD_FAILED return duet_eval_stack(p, vars, vm, out, err)
#define FAST_DONE do { if (err) err->cls = DUET_OK; return DUET_OK; } while (0)
#define FAST_ROW_START
#include "fastpath_run.h"
#undef FAST_SIGNATURE
#undef FAST_SETUP
#undef FAST_STRIDE
#undef FAST_GUARD_FAILED
#undef FAST_DONE

#undef FAST_ROW_START

/*
 * A column-major batch (variable k of row r at vars0[k * kstride + r]) in one call: each row's
 * result in out0[r], or DUET_T_ANY there for a row whose inputs are the stack VM's.
 */
#define FAST_SIGNATURE void \
duet_fast_batch(const duet_fast *f, const duet_value *vars0, size_t kstride, size_t nrows, \
				duet_value *out0)
#define FAST_SETUP size_t row_ = 0; const duet_value *vars; duet_value *out;
#define FAST_ROW_START \
	row_start: \
	if (row_ == nrows) \
		return; \
	vars = vars0 + row_; \
	out = out0 + row_; \
	in = code;
#define FAST_STRIDE kstride
#define FAST_GUARD_FAILED do { out->type = DUET_T_ANY; row_++; goto row_start; } while (0)
#define FAST_DONE do { row_++; goto row_start; } while (0)
#include "fastpath_run.h"
