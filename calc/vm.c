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
};

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
	free(vm->stack);
	free(vm);
}

char *
duet_vm_alloc(duet_vm *vm, size_t size, duet_error *err)
{
	chunk	   *c = vm->cur;

	if (size > vm->max_string)
	{
		duet_set_runtime_error(err, DUET_ERR_LIMIT, 0, 0,
							   "string result of %zu bytes exceeds the limit of %zu bytes",
							   size, vm->max_string);
		return NULL;
	}
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

/* Text of a scalar for || and concat(): numbers in their shortest round-trip form. */
static bool
as_text(duet_vm *vm, const duet_value *v, duet_value *out, duet_error *err)
{
	char		buf[32];
	size_t		n;
	char	   *s;

	switch (v->type)
	{
		case DUET_T_STRING:
			*out = *v;
			return true;
		case DUET_T_BOOL:
			*out = v->u.boolean ? duet_string("true", 4) : duet_string("false", 5);
			return true;
		default:
			n = duet_format_number(v->u.num, buf, sizeof(buf));
			if (!(s = duet_vm_alloc(vm, n, err)))
				return false;
			memcpy(s, buf, n);
			*out = duet_string(s, n);
			return true;
	}
}

/* a || b over any scalars (NULL-strict); also used by concat(). */
static duet_errclass
concat2(duet_vm *vm, duet_value *a, const duet_value *b, duet_error *err)
{
	duet_value	ta,
				tb;
	char	   *s;

	if (!as_text(vm, a, &ta, err) || !as_text(vm, b, &tb, err))
		return err->cls;
	if (!(s = duet_vm_alloc(vm, ta.u.str.len + tb.u.str.len, err)))
		return err->cls;
	memcpy(s, ta.u.str.ptr, ta.u.str.len);
	memcpy(s + ta.u.str.len, tb.u.str.ptr, tb.u.str.len);
	*a = duet_string(s, ta.u.str.len + tb.u.str.len);
	return DUET_OK;
}

/* 1 true, 0 false, -1 NULL — three-valued truth of a boolean-or-null operand */
static inline int
truth(const duet_value *v)
{
	return v->type == DUET_T_NULL ? -1 : v->u.boolean;
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

#define RUNTIME_TYPE_ERROR(in, a, b) \
	do { \
		duet_set_runtime_error(err, DUET_ERR_TYPE, (in)->line, (in)->col, \
							   "operator %s cannot be applied to %s and %s", opname((in)->op), \
							   duet_type_name((a)->type), duet_type_name((b)->type)); \
		return DUET_ERR_TYPE; \
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
		if ((kind == 'n' && t != DUET_T_NUMBER) || (kind == 's' && t != DUET_T_STRING) ||
			(kind == 'b' && t != DUET_T_BOOL) ||
			(kind == 'x' && common != DUET_T_NULL && common != t))
		{
			duet_set_runtime_error(err, DUET_ERR_TYPE, in->line, in->col,
								   "function %s cannot take a %s argument", fn->name,
								   duet_type_name(t));
			return false;
		}
		if (kind == 'x')
			common = t;
	}
	return true;
}

duet_errclass
duet_eval(const duet_program *p, const duet_value *vars, duet_vm *vm, duet_value *out,
		  duet_error *err)
{
	const instr *code = p->code;
	duet_value *sp;
	duet_error	scratch;
	int			pc;

	if (!err)
		err = &scratch;
	err->cls = DUET_OK;
	*out = duet_null();			/* also the result reported with any error */
	if (vm->stack_cap < p->max_stack)
	{
		duet_value *grown = realloc(vm->stack, (size_t) p->max_stack * sizeof(duet_value));

		if (!grown)
		{
			duet_set_runtime_error(err, DUET_ERR_NOMEM, 0, 0, "out of memory");
			return DUET_ERR_NOMEM;
		}
		vm->stack = grown;
		vm->stack_cap = p->max_stack;
	}
	vm->cur = vm->chunks;
	if (vm->cur)
		vm->cur->used = 0;
	vm->max_string = p->max_string;
	sp = vm->stack;

	for (pc = 0;; pc++)
	{
		const instr *in = &code[pc];
		duet_value *a,
				   *b;
		double		r;

		switch ((opcode) in->op)
		{
			case OP_CONST:
				*sp++ = p->consts[in->arg];
				break;
			case OP_VAR:
				{
					/*
					 * Inputs are checked where they enter: a non-finite number is NULL (as any
					 * non-finite result is), -0 is 0, and a value that is not one of the four
					 * value types (DUET_T_ANY, garbage, a string without bytes) is an error
					 * instead of flowing into the result.
					 */
					const duet_value *v = &vars[in->arg];

					switch (v->type)
					{
						case DUET_T_NUMBER:
							*sp++ = duet_finite(v->u.num);
							break;
						case DUET_T_NULL:
						case DUET_T_BOOL:
							*sp++ = *v;
							break;
						case DUET_T_STRING:
							if (v->u.str.ptr != NULL || v->u.str.len == 0)
							{
								*sp++ = *v;
								break;
							}
							/* fall through */
						default:
							duet_set_runtime_error(err, DUET_ERR_TYPE, in->line, in->col,
												   "variable %s is bound to an invalid value",
												   p->vars[in->arg]);
							return DUET_ERR_TYPE;
					}
					break;
				}
			case OP_NEG:
				a = sp - 1;
				if (a->type == DUET_T_NUMBER)
					*a = duet_finite(-a->u.num);
				else if (a->type != DUET_T_NULL)
					RUNTIME_TYPE_ERROR(in, a, a);
				break;
			case OP_ADD:
			case OP_SUB:
			case OP_MUL:
			case OP_DIV:
			case OP_MOD:
			case OP_POW:
				b = --sp;
				a = sp - 1;
				if (a->type != DUET_T_NUMBER || b->type != DUET_T_NUMBER)
				{
					if ((a->type != DUET_T_NUMBER && a->type != DUET_T_NULL) ||
						(b->type != DUET_T_NUMBER && b->type != DUET_T_NULL))
						RUNTIME_TYPE_ERROR(in, a, b);
					*a = duet_null();
					break;
				}
				switch ((opcode) in->op)
				{
					case OP_ADD: r = a->u.num + b->u.num; break;
					case OP_SUB: r = a->u.num - b->u.num; break;
					case OP_MUL: r = a->u.num * b->u.num; break;
					case OP_DIV: r = b->u.num == 0 ? NAN : a->u.num / b->u.num; break;
					case OP_MOD: r = b->u.num == 0 ? NAN : fmod(a->u.num, b->u.num); break;
					default: r = pow(a->u.num, b->u.num); break;
				}
				*a = duet_finite(r);
				break;
			case OP_CONCAT:
				b = --sp;
				a = sp - 1;
				if (a->type == DUET_T_NULL || b->type == DUET_T_NULL)
					*a = duet_null();
				else if (concat2(vm, a, b, err) != DUET_OK)
				{
					err->line = in->line;
					err->column = in->col;
					return err->cls;
				}
				break;
			case OP_EQ:
			case OP_NE:
			case OP_LT:
			case OP_LE:
			case OP_GT:
			case OP_GE:
				{
					int			cmp;

					b = --sp;
					a = sp - 1;
					if (a->type == DUET_T_NULL || b->type == DUET_T_NULL)
					{
						*a = duet_null();
						break;
					}
					if (!duet_value_comparable(a->type, b->type))
						RUNTIME_TYPE_ERROR(in, a, b);
					cmp = duet_value_cmp(a, b);
					switch ((opcode) in->op)
					{
						case OP_EQ: *a = duet_bool(cmp == 0); break;
						case OP_NE: *a = duet_bool(cmp != 0); break;
						case OP_LT: *a = duet_bool(cmp < 0); break;
						case OP_LE: *a = duet_bool(cmp <= 0); break;
						case OP_GT: *a = duet_bool(cmp > 0); break;
						default: *a = duet_bool(cmp >= 0); break;
					}
					break;
				}
			case OP_AND:
			case OP_OR:
				{
					int			x,
								y;

					b = --sp;
					a = sp - 1;
					if ((a->type != DUET_T_BOOL && a->type != DUET_T_NULL) ||
						(b->type != DUET_T_BOOL && b->type != DUET_T_NULL))
						RUNTIME_TYPE_ERROR(in, a, b);
					x = truth(a);
					y = truth(b);
					if (in->op == OP_AND)
						*a = (x == 0 || y == 0) ? duet_bool(false) :
							(x < 0 || y < 0) ? duet_null() : duet_bool(true);
					else
						*a = (x == 1 || y == 1) ? duet_bool(true) :
							(x < 0 || y < 0) ? duet_null() : duet_bool(false);
					break;
				}
			case OP_NOT:
				a = sp - 1;
				if (a->type == DUET_T_BOOL)
					a->u.boolean = !a->u.boolean;
				else if (a->type != DUET_T_NULL)
					RUNTIME_TYPE_ERROR(in, a, a);
				break;
			case OP_ISNULL:
			case OP_ISNOTNULL:
				a = sp - 1;
				*a = duet_bool((a->type == DUET_T_NULL) == (in->op == OP_ISNULL));
				break;
			case OP_BETWEEN:
				{
					duet_value *lo = sp - 2,
							   *hi = sp - 1;
					int			ge,
								le,
								res;

					sp -= 2;
					a = sp - 1;
					if ((lo->type != DUET_T_NULL && a->type != DUET_T_NULL &&
						 !duet_value_comparable(a->type, lo->type)))
						RUNTIME_TYPE_ERROR(in, a, lo);
					if ((hi->type != DUET_T_NULL && a->type != DUET_T_NULL &&
						 !duet_value_comparable(a->type, hi->type)))
						RUNTIME_TYPE_ERROR(in, a, hi);
					ge = (a->type == DUET_T_NULL || lo->type == DUET_T_NULL) ? -1 :
						duet_value_cmp(a, lo) >= 0;
					le = (a->type == DUET_T_NULL || hi->type == DUET_T_NULL) ? -1 :
						duet_value_cmp(a, hi) <= 0;
					res = (ge == 0 || le == 0) ? 0 : (ge < 0 || le < 0) ? -1 : 1;
					if (res >= 0 && in->flags)
						res = !res;
					*a = res < 0 ? duet_null() : duet_bool(res);
					break;
				}
			case OP_IN:
				{
					duet_value *items = sp - in->argc;
					bool		saw_null = false,
								found = false;
					int			i;

					a = items - 1;
					for (i = 0; i < in->argc; i++)
					{
						if (items[i].type == DUET_T_NULL || a->type == DUET_T_NULL)
						{
							saw_null = true;
							continue;
						}
						if (!duet_value_comparable(a->type, items[i].type))
							RUNTIME_TYPE_ERROR(in, a, &items[i]);
						if (duet_value_cmp(a, &items[i]) == 0)
							found = true;
					}
					sp = items;
					if (found)
						*a = duet_bool(!in->flags);
					else if (saw_null || a->type == DUET_T_NULL)
						*a = duet_null();
					else
						*a = duet_bool(in->flags);
					break;
				}
			case OP_JUMP:
				pc = in->arg - 1;
				break;
			case OP_JUMP_UNLESS_TRUE:
				a = --sp;
				if (a->type != DUET_T_BOOL && a->type != DUET_T_NULL)
				{
					duet_set_runtime_error(err, DUET_ERR_TYPE, in->line, in->col,
										   "a when condition must be a boolean, not %s",
										   duet_type_name(a->type));
					return DUET_ERR_TYPE;
				}
				if (truth(a) != 1)
					pc = in->arg - 1;
				break;
			case OP_CALL:
				{
					const builtin *fn = &duet_builtins[in->arg];
					duet_value *args = sp - in->argc;
					duet_value	res;
					int			i;

					if (!check_args(fn, args, in->argc, err, in))
						return DUET_ERR_TYPE;
					if (fn->strict)
						for (i = 0; i < in->argc; i++)
							if (args[i].type == DUET_T_NULL)
								break;
					if (fn->strict && i < in->argc)
						res = duet_null();
					else if (fn->fn(args, in->argc, vm, &res, err) != DUET_OK)
					{
						err->line = in->line;
						err->column = in->col;
						return err->cls;
					}
					sp = args;
					*sp++ = res;
					break;
				}
			case OP_RETURN:
				*out = sp[-1];
				if (out->type == DUET_T_NUMBER && out->u.num == 0)
					out->u.num = 0;		/* never -0 */
				return DUET_OK;
		}
	}
}

/* concat(a, …): like ||, but NULL arguments are skipped (as in PostgreSQL). */
duet_errclass duet_fn_concat(duet_value *args, int argc, duet_vm *vm, duet_value *out,
							 duet_error *err);
duet_errclass
duet_fn_concat(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err)
{
	duet_value	acc = duet_string("", 0);
	int			i;

	for (i = 0; i < argc; i++)
	{
		if (args[i].type == DUET_T_NULL)
			continue;
		if (concat2(vm, &acc, &args[i], err) != DUET_OK)
			return err->cls;
	}
	*out = acc;
	return DUET_OK;
}
