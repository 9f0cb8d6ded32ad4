/*
 * vm.c — evaluates a program on a value stack. The stack and the string arena belong to the
 * duet_vm and grow to a program's needs once; after that an evaluation allocates nothing.
 * Evaluation is linear in program size: the only jumps go forward (case arms).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calc_int.h"

typedef struct chunk
{
	struct chunk *next;
	size_t		used,
				cap;
	char		data[];
} chunk;

struct duet_vm
{
	duet_value *stack;
	int			stack_cap;
	chunk	   *chunks;			/* reused across evaluations */
	chunk	   *cur;
	size_t		max_string;
	const duet_program *prog;	/* the uses_arena program being evaluated: read only by pattern.c
								 * (whose calls make a program uses_arena) */
	duet_rx_cache *rx;			/* match data and compiled non-constant patterns, made on first use */
	int64_t		now;			/* now() in microseconds (duet_vm_set_now, or the clock) */
	bool		now_set;		/* by the binder */
	bool		now_read;		/* read from the clock in this evaluation */
};

void
duet_vm_set_now(duet_vm *vm, int64_t usec)
{
	vm->now = usec;
	vm->now_set = true;
}

void
duet_vm_clear_now(duet_vm *vm)
{
	vm->now_set = false;
}

int64_t
duet_vm_now(duet_vm *vm)
{
	if (!vm->now_set && !vm->now_read)
	{
		vm->now = duet_clock_now();
		vm->now_read = true;	/* one time for the whole evaluation (clock calls make it uses_arena) */
	}
	return vm->now;
}

const duet_program *
duet_vm_program(const duet_vm *vm)
{
	return vm->prog;
}

duet_rx_cache **
duet_vm_rx(duet_vm *vm)
{
	return &vm->rx;
}

duet_vm *
duet_vm_new(void)
{
	return calloc(1, sizeof(duet_vm));
}

void
duet_vm_free(duet_vm *vm)
{
	if (!vm)
		return;
	while (vm->chunks)
	{
		chunk	   *next = vm->chunks->next;

		free(vm->chunks);
		vm->chunks = next;
	}
	duet_rx_cache_free(vm->rx);
	free(vm->stack);
	free(vm);
}

bool
duet_vm_over_limit(const duet_vm *vm, size_t size, duet_error *err)
{
	if (size <= vm->max_string)
		return false;
	duet_set_runtime_error(err, DUET_ERR_LIMIT, 0, 0,
						   "string result of %zu bytes exceeds the limit of %zu bytes",
						   size, vm->max_string);
	return true;
}

static char *alloc_slow(duet_vm *vm, size_t size, duet_error *err);

char *
duet_vm_alloc(duet_vm *vm, size_t size, duet_error *err)
{
	chunk	   *c = vm->cur;

	/* the usual case without a frame: the current chunk has room */
	if (__builtin_expect(c && size <= vm->max_string && c->cap - c->used >= size, 1))
	{
		c->used += size;
		return c->data + c->used - size;
	}
	return alloc_slow(vm, size, err);
}

/* A later chunk with room, or a new one; NULL over the limit or out of memory (err filled). */
static __attribute__((noinline)) char *
alloc_slow(duet_vm *vm, size_t size, duet_error *err)
{
	chunk	   *c = vm->cur;

	if (duet_vm_over_limit(vm, size, err))
		return NULL;
	while (c && c->cap - c->used < size)
	{
		c = c->next;
		if (c)
			c->used = 0;
	}
	if (!c)
	{
		size_t		cap = size > 8192 ? size : 8192;
		chunk	   *last = vm->chunks;

		if (!(c = malloc(sizeof(chunk) + cap)))
		{
			duet_set_runtime_error(err, DUET_ERR_NOMEM, 0, 0, "out of memory");
			return NULL;
		}
		c->next = NULL;
		c->used = 0;
		c->cap = cap;
		if (!last)
			vm->chunks = c;
		else
		{
			while (last->next)
				last = last->next;
			last->next = c;
		}
	}
	vm->cur = c;
	c->used += size;
	return c->data + c->used - size;
}

/* 1 true, 0 false, -1 NULL — three-valued truth of a boolean-or-null operand */
static inline int
truth(const duet_value *v)
{
	return v->type == DUET_T_NULL ? -1 : v->u.boolean;
}

/* The operator an instruction applies, superinstructions included, for error messages. */
static uint8_t
base_op(const instr *in)
{
	if (in->op >= OP_ADD_VV && in->op <= OP_DIV_SC)
		return (uint8_t) (OP_ADD + (in->op - OP_ADD_VV) % 4);
	if (in->op == OP_CMP_VC)
		return in->flags;
	return in->op;
}

static const char *
opname(uint8_t op)
{
	static const char *const names[] = {
		[OP_NEG] = "-", [OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/",
		[OP_MOD] = "%", [OP_POW] = "^", [OP_EQ] = "=", [OP_NE] = "!=", [OP_LT] = "<",
		[OP_LE] = "<=", [OP_GT] = ">", [OP_GE] = ">=", [OP_AND] = "and", [OP_OR] = "or",
		[OP_NOT] = "not", [OP_BETWEEN] = "between", [OP_IN] = "in",
	};

	return op < sizeof(names) / sizeof(names[0]) && names[op] ? names[op] : "?";
}

static void
runtime_type_error(duet_error *err, const instr *in, const duet_value *a, const duet_value *b)
{
	duet_set_runtime_error(err, DUET_ERR_TYPE, in->line, in->col,
						   "operator %s cannot be applied to %s and %s", opname(base_op(in)),
						   duet_type_name(a->type), duet_type_name(b->type));
}

#define RUNTIME_TYPE_ERROR(in, a, b) \
	do { \
		runtime_type_error(err, (in), (a), (b)); \
		FAIL(DUET_ERR_TYPE); \
	} while (0)

/* Checks the arguments of a builtin whose types were not all known at compile time. */
static bool
check_args(const builtin *fn, const duet_value *args, int argc, duet_error *err,
		   const instr *in)
{
	size_t		np = strlen(fn->params);
	duet_type	common = DUET_T_NULL;
	int			i;

	for (i = 0; i < argc; i++)
	{
		char		kind = fn->params[(size_t) i < np ? (size_t) i : np - 1];
		duet_type	t = args[i].type;

		if (t == DUET_T_NULL || kind == 'a')
			continue;
		/* an integer is a number */
		if ((kind == 'n' && t != DUET_T_NUMBER && t != DUET_T_INT) || (kind == 's' && t != DUET_T_STRING) ||
			(kind == 'b' && t != DUET_T_BOOL) || (kind == 'T' && !duet_is_time(t)) ||
			(kind == 'x' && common != DUET_T_NULL && common != duet_type_family(t)))
		{
			duet_set_runtime_error(err, DUET_ERR_TYPE, in->line, in->col,
								   "function %s cannot take a %s argument", fn->name,
								   duet_type_name(t));
			return false;
		}
		if (kind == 'x')
			common = duet_type_family(t);
	}
	return true;
}

/*
 * Inputs are checked where they enter: a non-finite number is NULL (as any non-finite result
 * is), -0 is 0, and a value that is not one of the four value types (DUET_T_ANY, garbage, a
 * string without bytes) is an error instead of flowing into the result.
 */
static bool invalid_var(const duet_program *p, const duet_value *v, int k, const instr *in,
						int which, duet_value *dst, duet_error *err);

static inline bool
load_var(const duet_program *p, const duet_value *v, int k, const instr *in, int which,
		 duet_value *dst, duet_error *err)
{
	/* doubles first, then the other value types: a compare chain, not a jump table */
	if (__builtin_expect(v->type == DUET_T_NUMBER, 1))
	{
		*dst = duet_finite(v->u.num);
		return true;
	}
	if (v->type == DUET_T_STRING ? (v->u.str.ptr != NULL || v->u.str.len == 0)
		: (v->type == DUET_T_NULL || v->type == DUET_T_BOOL || v->type == DUET_T_INT))
	{
		*dst = *v;
		return true;
	}
	return invalid_var(p, v, k, in, which, dst, err);
}

/*
 * The error for a bound value of no value type, at the variable's own position: the
 * instruction's (which = -1: OP_VAR, OP_RETURN_VAR) or its operand's (0, 1: superinstructions).
 */
static bool
invalid_var(const duet_program *p, const duet_value *v, int k, const instr *in, int which,
			duet_value *dst, duet_error *err)
{
	int			line = in->line,
				col = in->col;

	/* dates and timestamps in range are values too (checked here, off the doubles' path) */
	if ((v->type == DUET_T_DATE && v->u.i >= DUET_DATE_MIN && v->u.i <= DUET_DATE_MAX) ||
		(v->type == DUET_T_TIMESTAMP && v->u.i >= (int64_t) DUET_DATE_MIN * 86400000000 &&
		 v->u.i < ((int64_t) DUET_DATE_MAX + 1) * 86400000000))
	{
		*dst = *v;
		return true;
	}

	if (which >= 0 && p->opnd)
	{
		line = p->opnd[in - p->code].line[which];
		col = p->opnd[in - p->code].col[which];
	}
	duet_set_runtime_error(err, DUET_ERR_TYPE, line, col,
						   "variable %s is bound to an invalid value", p->vars[k]);
	return false;
}

/* load_var for concat.c (OP_CONCAT_N's variable operand) */
bool
duet_vm_load_var(const duet_program *p, const duet_value *v, int k, const instr *in, int which,
				 duet_value *dst, duet_error *err)
{
	return load_var(p, v, k, in, which, dst, err);
}

/* + - * / (k = 0..3) on two finite numbers; not finite (÷0 included) comes back as NULL. */
static inline __attribute__((always_inline)) duet_value
arith4(int k, double a, double b)
{
	switch (k)
	{
		case 0: return duet_finite(a + b);
		case 1: return duet_finite(a - b);
		case 2: return duet_finite(a * b);
		default: return b == 0 ? duet_null() : duet_finite(a / b);
	}
}

duet_errclass
duet_int_overflow(duet_error *err, const char *what)
{
	duet_set_runtime_error(err, DUET_ERR_RANGE, 0, 0, "integer out of range in %s", what);
	return DUET_ERR_RANGE;
}

/* a op b on two integers: exact (+ - * %), or doubles (/ ^); false on overflow (err filled). */
static bool
arith_ints(const instr *in, int op, duet_value *a, int64_t x, int64_t y, duet_error *err)
{
	int64_t		r;

	switch (op)
	{
		case OP_ADD:
			if (__builtin_add_overflow(x, y, &r))
				break;
			*a = duet_int(r);
			return true;
		case OP_SUB:
			if (__builtin_sub_overflow(x, y, &r))
				break;
			*a = duet_int(r);
			return true;
		case OP_MUL:
			if (__builtin_mul_overflow(x, y, &r))
				break;
			*a = duet_int(r);
			return true;
		case OP_MOD:
			/* the sign of the dividend, as in C, PostgreSQL and ClickHouse; INT64_MIN % -1 is 0 */
			*a = y == 0 ? duet_null() : duet_int(y == -1 ? 0 : x % y);
			return true;
		case OP_DIV:
			*a = y == 0 ? duet_null() : duet_finite((double) x / (double) y);
			return true;
		default:
			*a = duet_finite(pow((double) x, (double) y));
			return true;
	}
	duet_int_overflow(err, opname((uint8_t) op));
	err->line = in->line;
	err->column = in->col;
	return false;
}

/* a op b for OP_ADD .. OP_POW on loaded values (a replaced); false on an error (err filled). */
static bool
arith_values(const instr *in, int op, duet_value *a, const duet_value *b, duet_error *err)
{
	double		r,
				x,
				y;

	if (a->type != DUET_T_NUMBER || b->type != DUET_T_NUMBER)
	{
		if (a->type == DUET_T_INT && b->type == DUET_T_INT)
			return arith_ints(in, op, a, a->u.i, b->u.i, err);
		if ((a->type != DUET_T_NUMBER && a->type != DUET_T_INT && a->type != DUET_T_NULL) ||
			(b->type != DUET_T_NUMBER && b->type != DUET_T_INT && b->type != DUET_T_NULL))
		{
			runtime_type_error(err, in, a, b);
			return false;
		}
		if (a->type == DUET_T_NULL || b->type == DUET_T_NULL)
		{
			*a = duet_null();
			return true;
		}
	}
	/* doubles, or an integer with a double: the integer as a double */
	x = duet_num(a);
	y = duet_num(b);
	switch (op)
	{
		case OP_ADD: r = x + y; break;
		case OP_SUB: r = x - y; break;
		case OP_MUL: r = x * y; break;
		case OP_DIV: r = y == 0 ? NAN : x / y; break;
		case OP_MOD: r = y == 0 ? NAN : fmod(x, y); break;
		default: r = pow(x, y); break;
	}
	*a = duet_finite(r);
	return true;
}

static inline bool
finite2(double a, double b)
{
	return (a - a) + (b - b) == 0;	/* inf - inf and NaN give NaN */
}

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define FAIL(cls) do { *out = duet_null(); return (cls); } while (0)
/*
 * Debug builds (DUET_DEBUG: mk/calc.mk sets it for PostgreSQL builds with assertions, CALC_DEBUG=1
 * and the fuzzer) check the stack depth after every instruction against the compiler's max_stack:
 * never below the bottom, never above the capacity prepare() made, exactly one value at RETURN.
 */
#ifdef DUET_DEBUG
#include <assert.h>
#define STACK_CHECK() assert(sp >= stack_base && sp - stack_base <= p->max_stack)
#define STACK_CHECK_RETURN() assert(sp - stack_base == 1)
#else
#define STACK_CHECK() ((void) 0)
#define STACK_CHECK_RETURN() ((void) 0)
#endif
#define NEXT() do { STACK_CHECK(); in++; goto *labels[in->op]; } while (0)

/* The interpreter (vm_run.h), instantiated for one row (stride 1) and for column-major batches. */
#define RUN_NAME run_row
#define VAR(k) (vars + (k))
#include "vm_run.h"
#undef RUN_NAME
#undef VAR
#define RUN_NAME run_batch
#define VAR(k) (vars + (size_t) (k) * kstride)
#include "vm_run.h"
#undef RUN_NAME
#undef VAR

void
duet_vm_start_strings(duet_vm *vm, const duet_program *p)
{
	vm->cur = vm->chunks;
	if (vm->cur)
		vm->cur->used = 0;
	vm->max_string = p->max_string;
	vm->prog = p;				/* pattern calls mark a program uses_arena (compile.c) */
	vm->now_read = false;		/* so do clock calls: now() is read once per evaluation */
}

/* Per call, not per row: the stack grows to the program's needs, the string arena restarts. */
static inline bool
prepare(const duet_program *p, duet_vm *vm, duet_error *err)
{
	err->cls = DUET_OK;
	if (__builtin_expect(vm->stack_cap < p->max_stack, 0))
	{
		duet_value *grown = realloc(vm->stack, (size_t) p->max_stack * sizeof(duet_value));

		if (!grown)
		{
			duet_set_runtime_error(err, DUET_ERR_NOMEM, 0, 0, "out of memory");
			return false;
		}
		vm->stack = grown;
		vm->stack_cap = p->max_stack;
	}
	if (p->uses_arena)
		duet_vm_start_strings(vm, p);
	return true;
}

/*
 * x op y (k = 0..3: + - * /) on two integers for the single-superinstruction fast paths; false
 * on overflow, which the general path then reports with its position.
 */
static inline bool
vv_ints(int k, int64_t a, int64_t b, duet_value *out)
{
	int64_t		r;

	switch (k)
	{
		case 0:
			if (__builtin_add_overflow(a, b, &r))
				return false;
			break;
		case 1:
			if (__builtin_sub_overflow(a, b, &r))
				return false;
			break;
		case 2:
			if (__builtin_mul_overflow(a, b, &r))
				return false;
			break;
		default:
			*out = b == 0 ? duet_null() : duet_finite((double) a / (double) b);
			return true;
	}
	*out = duet_int(r);
	return true;
}

/*
 * The stack VM: everything but the two-variable and numeric-tier fast paths; out of line so
 * duet_eval's own frame stays empty.
 */
__attribute__((noinline)) duet_errclass
duet_eval_stack(const duet_program *p, const duet_value *vars, duet_vm *vm, duet_value *out,
				duet_error *err)
{
	duet_error	scratch;

	if (!err)
		err = &scratch;
	if (!prepare(p, vm, err))
	{
		*out = duet_null();
		return DUET_ERR_NOMEM;
	}
	return run_row(p, vars, 1, vm, out, err);
}

/* A single var-var superinstruction whose inputs are not both doubles: integers, else the VM. */
static __attribute__((noinline)) duet_errclass
eval_single_other(const duet_program *p, const duet_value *vars, duet_vm *vm, duet_value *out,
				  duet_error *err)
{
	const duet_value *x = &vars[p->code->arg],
			   *y = &vars[p->code->argc];

	/* integer columns (bigint clicks / impressions): exact, or the VM's error with its position */
	if (x->type == DUET_T_INT && y->type == DUET_T_INT &&
		vv_ints(p->code->op - OP_ADD_VV, x->u.i, y->u.i, out))
	{
		if (err)
			err->cls = DUET_OK;
		return DUET_OK;
	}
	return duet_eval_stack(p, vars, vm, out, err);
}

duet_errclass
duet_eval(const duet_program *p, const duet_value *vars, duet_vm *vm, duet_value *out,
		  duet_error *err)
{
	/*
	 * A program that is one arithmetic superinstruction on two variables (clicks / impressions)
	 * needs neither the stack nor dispatch when both are numbers.
	 */
	if (p->single_vv)
	{
		const instr *in = p->code;
		const duet_value *x = &vars[in->arg],
				   *y = &vars[in->argc];

		if (LIKELY(x->type == DUET_T_NUMBER && y->type == DUET_T_NUMBER))
		{
			double		a = x->u.num,
						b = y->u.num;

			if (err)
				err->cls = DUET_OK;
			if (!((a - a) + (b - b) == 0))	/* an infinite or NaN input is NULL */
				*out = duet_null();
			else if (in->op == OP_DIV_VV)
				*out = arith4(3, a, b);
			else if (in->op == OP_MUL_VV)
				*out = arith4(2, a, b);
			else if (in->op == OP_ADD_VV)
				*out = arith4(0, a, b);
			else
				*out = arith4(1, a, b);
			return DUET_OK;
		}
		return eval_single_other(p, vars, vm, out, err);
	}
	if (p->other_path)			/* one test for the programs that have neither */
	{
		if (p->fast)			/* a number-only formula: the numeric tier (fastpath.c) */
			return duet_fast_run(p, vars, vm, out, err);
		if (p->ncat)			/* one CONCAT_N of strings (concat.c) */
			return duet_eval_concat(p, vars, vm, out, err);
	}
	return duet_eval_stack(p, vars, vm, out, err);
}

duet_errclass
duet_eval_batch(const duet_program *p, const duet_value *vars, size_t stride, size_t nrows,
				duet_vm *vm, duet_value *out, duet_error *err, size_t *done)
{
	duet_error	scratch;
	size_t		r;

	if (!err)
		err = &scratch;
	if (done)
		*done = 0;
	if (!prepare(p, vm, err))
		return DUET_ERR_NOMEM;
	if (p->single_vv)
	{
		/* x op y over two columns: a loop without dispatch; other rows take the general path */
		const duet_value *xs = vars + (size_t) p->code->arg * stride,
				   *ys = vars + (size_t) p->code->argc * stride;
		int			k = p->code->op - OP_ADD_VV;

		for (r = 0; r < nrows; r++)
		{
			if (LIKELY(xs[r].type == DUET_T_NUMBER && ys[r].type == DUET_T_NUMBER))
			{
				double		a = xs[r].u.num,
							b = ys[r].u.num;

				out[r] = !finite2(a, b) ? duet_null() : k == 3 ? arith4(3, a, b) : k == 2 ?
					arith4(2, a, b) : k == 0 ? arith4(0, a, b) : arith4(1, a, b);
			}
			else if (xs[r].type == DUET_T_INT && ys[r].type == DUET_T_INT &&
					 vv_ints(k, xs[r].u.i, ys[r].u.i, &out[r]))
				continue;
			else
			{
				duet_errclass cls = run_batch(p, vars + r, stride, vm, &out[r], err);

				if (cls != DUET_OK)
				{
					if (done)
						*done = r;
					return cls;
				}
			}
		}
		if (done)
			*done = nrows;
		return DUET_OK;
	}
	/* a numeric tier: every row in one call, then the VM's rows (DUET_T_ANY) in order */
	if (p->fast)
		duet_fast_batch(p->fast, vars, stride, nrows, out);
	for (r = 0; r < nrows; r++)
	{
		duet_errclass cls;

		if ((p->fast && out[r].type != DUET_T_ANY) ||
			(p->ncat && duet_concat_row(p, vars + r, stride, vm, &out[r])))
			continue;
		cls = run_batch(p, vars + r, stride, vm, &out[r], err);

		if (cls != DUET_OK)
		{
			if (done)
				*done = r;
			return cls;
		}
	}
	if (done)
		*done = nrows;
	return DUET_OK;
}
