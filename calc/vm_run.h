/*
 * vm_run.h — the interpreter loop, included twice by vm.c: RUN_NAME is the function's name and
 * VAR(k) addresses variable k (one row: vars + k; a column-major batch: vars + k * kstride).
 * Not a header of its own; no include guard on purpose.
 */
/*
 * One evaluation. Variable k is vars[k * kstride] (1 for duet_eval; the column stride for
 * duet_eval_batch). Dispatch is direct threading through a label table (GCC/Clang).
 */
static duet_errclass
RUN_NAME(const duet_program *p, const duet_value *vars, size_t kstride, duet_vm *vm, duet_value *out,
	duet_error *err)
{
	static const void *const labels[OP_NCODES] = {
		[OP_CONST] = &&L_CONST, [OP_VAR] = &&L_VAR, [OP_NEG] = &&L_NEG,
		[OP_ADD] = &&L_ARITH, [OP_SUB] = &&L_ARITH, [OP_MUL] = &&L_ARITH, [OP_DIV] = &&L_ARITH,
		[OP_MOD] = &&L_ARITH, [OP_POW] = &&L_ARITH, [OP_CONCAT] = &&L_CONCAT,
		[OP_EQ] = &&L_CMP, [OP_NE] = &&L_CMP, [OP_LT] = &&L_CMP, [OP_LE] = &&L_CMP,
		[OP_GT] = &&L_CMP, [OP_GE] = &&L_CMP, [OP_AND] = &&L_ANDOR, [OP_OR] = &&L_ANDOR,
		[OP_NOT] = &&L_NOT, [OP_ISNULL] = &&L_ISNULL, [OP_ISNOTNULL] = &&L_ISNULL,
		[OP_BETWEEN] = &&L_BETWEEN, [OP_IN] = &&L_IN, [OP_JUMP] = &&L_JUMP,
		[OP_JUMP_UNLESS_TRUE] = &&L_JUMP_UNLESS_TRUE, [OP_CALL] = &&L_CALL,
		[OP_RETURN] = &&L_RETURN,
		[OP_ADD_VV] = &&L_ADD_VV, [OP_SUB_VV] = &&L_SUB_VV, [OP_MUL_VV] = &&L_MUL_VV,
		[OP_DIV_VV] = &&L_DIV_VV, [OP_ADD_VC] = &&L_ADD_VC, [OP_SUB_VC] = &&L_SUB_VC,
		[OP_MUL_VC] = &&L_MUL_VC, [OP_DIV_VC] = &&L_DIV_VC, [OP_ADD_CV] = &&L_ADD_CV,
		[OP_SUB_CV] = &&L_SUB_CV, [OP_MUL_CV] = &&L_MUL_CV, [OP_DIV_CV] = &&L_DIV_CV,
		[OP_ADD_SV] = &&L_ADD_SV, [OP_SUB_SV] = &&L_SUB_SV, [OP_MUL_SV] = &&L_MUL_SV,
		[OP_DIV_SV] = &&L_DIV_SV, [OP_ADD_SC] = &&L_ADD_SC, [OP_SUB_SC] = &&L_SUB_SC,
		[OP_MUL_SC] = &&L_MUL_SC, [OP_DIV_SC] = &&L_DIV_SC,
		[OP_CLAMP_CC] = &&L_CLAMP_CC, [OP_ROUND_C] = &&L_ROUND_C,
		[OP_CONCAT_N] = &&L_CONCAT_N, [OP_CASEMAP] = &&L_CASEMAP,
		[OP_CMP_VC] = &&L_CMP_VC, [OP_ISNULL_V] = &&L_ISNULL_V, [OP_RETURN_VAR] = &&L_RETURN_VAR,
	};
	const instr *code = p->code,
			   *in = code;
	duet_value *sp = vm->stack,
			   *a,
			   *b;

#ifdef DUET_DEBUG
	const duet_value *const stack_base = vm->stack;

	assert(vm->stack_cap >= p->max_stack);
#endif

	(void) kstride;

	goto *labels[in->op];

L_CONST:
	*sp++ = p->consts[in->arg];
	NEXT();
L_VAR:
	if (!load_var(p, VAR(in->arg), in->arg, in, -1, sp, err))
		FAIL(DUET_ERR_TYPE);
	sp++;
	NEXT();
L_NEG:
	a = sp - 1;
	if (a->type == DUET_T_NUMBER)
		*a = duet_finite(-a->u.num);
	else if (a->type == DUET_T_INT)
	{
		if (a->u.i == INT64_MIN)
		{
			duet_int_overflow(err, "-");
			err->line = in->line;
			err->column = in->col;
			FAIL(DUET_ERR_RANGE);
		}
		a->u.i = -a->u.i;
	}
	else if (a->type != DUET_T_NULL)
		RUNTIME_TYPE_ERROR(in, a, a);
	NEXT();
L_ARITH:
	b = --sp;
	a = sp - 1;
	if (LIKELY(a->type == DUET_T_NUMBER && b->type == DUET_T_NUMBER && in->op <= OP_DIV))
		*a = arith4(in->op - OP_ADD, a->u.num, b->u.num);
	else if (!arith_values(in, in->op, a, b, err))
		FAIL(err->cls);
	NEXT();

	/* ---- superinstructions: K is the operator 0..3 (+ - * /), a compile-time constant ---- */
#define SUPER_VV(K) \
	{ \
		const duet_value *x = VAR(in->arg), \
				   *y = VAR(in->argc); \
		if (LIKELY(x->type == DUET_T_NUMBER && y->type == DUET_T_NUMBER)) \
			*sp++ = finite2(x->u.num, y->u.num) ? arith4(K, x->u.num, y->u.num) : duet_null(); \
		else \
		{ \
			duet_value	vb; \
			if (!load_var(p, x, in->arg, in, 0, sp, err) || !load_var(p, y, in->argc, in, 1, &vb, err) || \
				!arith_values(in, OP_ADD + K, sp, &vb, err)) \
				FAIL(err->cls); \
			sp++; \
		} \
		NEXT(); \
	}
#define SUPER_VC(K) \
	{ \
		const duet_value *x = VAR(in->arg); \
		double		c = p->cnum[in->argc]; \
		if (LIKELY(x->type == DUET_T_NUMBER)) \
			*sp++ = x->u.num - x->u.num == 0 ? arith4(K, x->u.num, c) : duet_null(); \
		else \
		{ \
			if (!load_var(p, x, in->arg, in, 0, sp, err) || \
				!arith_values(in, OP_ADD + K, sp, &p->consts[in->argc], err)) \
				FAIL(err->cls); \
			sp++; \
		} \
		NEXT(); \
	}
#define SUPER_CV(K) \
	{ \
		const duet_value *y = VAR(in->argc); \
		double		c = p->cnum[in->arg]; \
		if (LIKELY(y->type == DUET_T_NUMBER)) \
			*sp++ = y->u.num - y->u.num == 0 ? arith4(K, c, y->u.num) : duet_null(); \
		else \
		{ \
			duet_value	vb; \
			*sp = p->consts[in->arg]; \
			if (!load_var(p, y, in->argc, in, 1, &vb, err) || !arith_values(in, OP_ADD + K, sp, &vb, err)) \
				FAIL(err->cls); \
			sp++; \
		} \
		NEXT(); \
	}
#define SUPER_SV(K) \
	{ \
		const duet_value *y = VAR(in->arg); \
		a = sp - 1; \
		if (LIKELY(a->type == DUET_T_NUMBER && y->type == DUET_T_NUMBER)) \
			*a = y->u.num - y->u.num == 0 ? arith4(K, a->u.num, y->u.num) : duet_null(); \
		else \
		{ \
			duet_value	vb; \
			if (!load_var(p, y, in->arg, in, 0, &vb, err) || !arith_values(in, OP_ADD + K, a, &vb, err)) \
				FAIL(err->cls); \
		} \
		NEXT(); \
	}
#define SUPER_SC(K) \
	{ \
		a = sp - 1; \
		if (LIKELY(a->type == DUET_T_NUMBER)) \
			*a = arith4(K, a->u.num, p->cnum[in->arg]); \
		else if (!arith_values(in, OP_ADD + K, a, &p->consts[in->arg], err)) \
			FAIL(err->cls); \
		NEXT(); \
	}
L_CLAMP_CC:
	/* clamp(x, lo, hi) with number constants lo, hi: strict in x, which is a number or NULL */
	a = sp - 1;
	if (LIKELY(a->type == DUET_T_NUMBER))
	{
		double		v = a->u.num,
					lo = p->cnum[in->arg],
					hi = p->cnum[in->argc];

		v = v < lo ? lo : v;
		a->u.num = v > hi ? hi : v;
	}
	else if (a->type != DUET_T_NULL)
		goto clamp_generic;
	NEXT();
L_ROUND_C:
	a = sp - 1;
	if (LIKELY(a->type == DUET_T_NUMBER))
		*a = duet_finite(duet_round_decimal(a->u.num, in->arg));
	else if (a->type != DUET_T_NULL)
		goto round_generic;
	NEXT();
L_ADD_VV: SUPER_VV(0)
L_SUB_VV: SUPER_VV(1)
L_MUL_VV: SUPER_VV(2)
L_DIV_VV: SUPER_VV(3)
L_ADD_VC: SUPER_VC(0)
L_SUB_VC: SUPER_VC(1)
L_MUL_VC: SUPER_VC(2)
L_DIV_VC: SUPER_VC(3)
L_ADD_CV: SUPER_CV(0)
L_SUB_CV: SUPER_CV(1)
L_MUL_CV: SUPER_CV(2)
L_DIV_CV: SUPER_CV(3)
L_ADD_SV: SUPER_SV(0)
L_SUB_SV: SUPER_SV(1)
L_MUL_SV: SUPER_SV(2)
L_DIV_SV: SUPER_SV(3)
L_ADD_SC: SUPER_SC(0)
L_SUB_SC: SUPER_SC(1)
L_MUL_SC: SUPER_SC(2)
L_DIV_SC: SUPER_SC(3)

L_CMP_VC:
	{
		const duet_value *x = VAR(in->arg);
		double		c = p->cnum[in->argc],
					v;
		int			cmp;

		if (LIKELY(x->type == DUET_T_NUMBER))
		{
			v = x->u.num;
			if (!(v - v == 0))
			{
				*sp++ = duet_null();
				NEXT();
			}
		}
		else
		{
			if (!load_var(p, x, in->arg, in, 0, sp, err))
				FAIL(DUET_ERR_TYPE);
			if (sp->type != DUET_T_INT)
			{
				if (sp->type != DUET_T_NULL)
					RUNTIME_TYPE_ERROR(in, sp, &p->consts[in->argc]);
				sp++;
				NEXT();
			}
			cmp = duet_value_cmp(sp, &p->consts[in->argc]);	/* exact for an integer */
			goto cmp_vc_result;
		}
		cmp = (v > c) - (v < c);
cmp_vc_result:
		switch (in->flags)
		{
			case OP_EQ: *sp++ = duet_bool(cmp == 0); break;
			case OP_NE: *sp++ = duet_bool(cmp != 0); break;
			case OP_LT: *sp++ = duet_bool(cmp < 0); break;
			case OP_LE: *sp++ = duet_bool(cmp <= 0); break;
			case OP_GT: *sp++ = duet_bool(cmp > 0); break;
			default: *sp++ = duet_bool(cmp >= 0); break;
		}
		NEXT();
	}
L_ISNULL_V:
	if (!load_var(p, VAR(in->arg), in->arg, in, 0, sp, err))
		FAIL(DUET_ERR_TYPE);
	*sp = duet_bool((sp->type == DUET_T_NULL) != (in->flags != 0));
	sp++;
	NEXT();
L_CONCAT:
	b = --sp;
	a = sp - 1;
	if (a->type == DUET_T_NULL || b->type == DUET_T_NULL)
		*a = duet_null();
	else if (duet_concat2(vm, a, b, err) != DUET_OK)
	{
		err->line = in->line;
		err->column = in->col;
		FAIL(err->cls);
	}
	NEXT();
L_CONCAT_N:
	{
		/* flags 1: the last operand is vars[arg], which concat_n loads (into the slot above) */
		sp -= in->argc - 1 - (in->flags & 1);
		a = sp - 1;
		if (duet_concat_n(vm, a, in->argc, (in->flags & 1) ? VAR(in->arg) : NULL, p, in, a, err) !=
			DUET_OK)
			FAIL(err->cls);
		NEXT();
	}
L_CASEMAP:
	/* lower/upper, strict: its limit and type errors here, the mapping in CONCAT_N's copy */
	a = sp - 1;
	if (LIKELY(a->type == DUET_T_STRING))
	{
		if (duet_vm_over_limit(vm, a->u.str.len, err))	/* as lower()'s allocation would be */
		{
			err->line = in->line;
			err->column = in->col;
			FAIL(DUET_ERR_LIMIT);
		}
		a->type = in->flags ? DUET_T_UPPER_PENDING : DUET_T_LOWER_PENDING;
	}
	else if (a->type != DUET_T_NULL && !check_args(&duet_builtins[in->arg], a, 1, err, in))
		FAIL(DUET_ERR_TYPE);
	NEXT();
L_CMP:
	{
		int			cmp;

		b = --sp;
		a = sp - 1;
		if (a->type == DUET_T_NULL || b->type == DUET_T_NULL)
		{
			*a = duet_null();
			NEXT();
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
		NEXT();
	}
L_ANDOR:
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
		NEXT();
	}
L_NOT:
	a = sp - 1;
	if (a->type == DUET_T_BOOL)
		a->u.boolean = !a->u.boolean;
	else if (a->type != DUET_T_NULL)
		RUNTIME_TYPE_ERROR(in, a, a);
	NEXT();
L_ISNULL:
	a = sp - 1;
	*a = duet_bool((a->type == DUET_T_NULL) == (in->op == OP_ISNULL));
	NEXT();
L_BETWEEN:
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
		NEXT();
	}
L_IN:
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
		NEXT();
	}
L_JUMP:
	STACK_CHECK();
	in = code + in->arg;
	goto *labels[in->op];
L_JUMP_UNLESS_TRUE:
	a = --sp;
	if (a->type == DUET_T_BOOL && a->u.boolean)
		NEXT();
	if (a->type != DUET_T_BOOL && a->type != DUET_T_NULL)
	{
		duet_set_runtime_error(err, DUET_ERR_TYPE, in->line, in->col,
							   "a when condition must be a boolean, not %s",
							   duet_type_name(a->type));
		FAIL(DUET_ERR_TYPE);
	}
	STACK_CHECK();
	in = code + in->arg;
	goto *labels[in->op];
L_CALL:
	{
		const builtin *fn = &duet_builtins[in->arg];
		duet_value *args = sp - in->argc;
		duet_value	res;
		int			i;
		bool		any_null = false;

		if (in->flags & CALL_NUMERIC)
		{
			/* typed fast path: numbers and NULLs only, no generic argument check */
			for (i = 0; i < in->argc; i++)
				if (args[i].type != DUET_T_NUMBER)
				{
					if (args[i].type == DUET_T_NULL)
						any_null = true;
					else if (args[i].type != DUET_T_INT)
						break;
					else if (!fn->ints)
						args[i] = duet_number((double) args[i].u.i);
				}
			if (i < in->argc && !check_args(fn, args, in->argc, err, in))
				FAIL(DUET_ERR_TYPE);
		}
		else
		{
			if (!check_args(fn, args, in->argc, err, in))
				FAIL(DUET_ERR_TYPE);
			for (i = 0; i < in->argc; i++)
				any_null |= args[i].type == DUET_T_NULL;
			/* a function that reads numbers as doubles gets integers as doubles */
			if (in->flags & CALL_INT_ARGS)
				for (i = 0; i < in->argc; i++)
					if (args[i].type == DUET_T_INT)
						args[i] = duet_number((double) args[i].u.i);
		}
		if (fn->strict && any_null)
			res = duet_null();
		else if (fn->fn(args, in->argc, vm, &res, err) != DUET_OK)
		{
			err->line = in->line;
			err->column = in->col;
			FAIL(err->cls);
		}
		sp = args;
		*sp++ = res;
		NEXT();
	}
clamp_generic:
round_generic:
	{
		/* an integer or a non-number argument: the generic call, exactly as OP_CALL makes it */
		const builtin *fn = duet_builtin_lookup(in->op == OP_CLAMP_CC ? "clamp" : "round", 5);
		duet_value	args[3];
		duet_value	res;
		int			nargs = in->op == OP_CLAMP_CC ? 3 : 2;

		args[0] = sp[-1];
		if (in->op == OP_CLAMP_CC)
		{
			args[1] = p->consts[in->arg];
			args[2] = p->consts[in->argc];
		}
		else
			args[1] = duet_int(in->arg);
		if (!check_args(fn, args, nargs, err, in))
			FAIL(DUET_ERR_TYPE);
		if (fn->fn(args, nargs, vm, &res, err) != DUET_OK)
		{
			err->line = in->line;
			err->column = in->col;
			FAIL(err->cls);
		}
		sp[-1] = res;
		NEXT();
	}
L_RETURN:
	STACK_CHECK_RETURN();
	*out = sp[-1];
	if (out->type == DUET_T_NUMBER && out->u.num == 0)
		out->u.num = 0;			/* never -0 */
	return DUET_OK;
L_RETURN_VAR:
	if (!load_var(p, VAR(in->arg), in->arg, in, -1, out, err))
		FAIL(DUET_ERR_TYPE);
	return DUET_OK;
}

