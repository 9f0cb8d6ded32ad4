/*
 * fastpath_run.h — the numeric tier's interpreter (fastpath.c), included twice: FAST_SIGNATURE
 * declares the function, FAST_SETUP its first declarations, FAST_ROW_START starts a row (the
 * batch's loop), FAST_STRIDE steps from a variable to the next, FAST_GUARD_FAILED is what an input
 * that is not a double or NULL does and FAST_DONE what follows a result. Not a header of its own;
 * no include guard on purpose.
 */
FAST_SIGNATURE
{
	static const void *const labels[F_NCODES] = {
		[F_ADD_RR] = &&L_ADD_RR, [F_SUB_RR] = &&L_SUB_RR, [F_MUL_RR] = &&L_MUL_RR,
		[F_DIV_RR] = &&L_DIV_RR, [F_MOD_RR] = &&L_MOD_RR,
		[F_ADD_RK] = &&L_ADD_RK, [F_SUB_RK] = &&L_SUB_RK, [F_MUL_RK] = &&L_MUL_RK,
		[F_DIV_RK] = &&L_DIV_RK, [F_MOD_RK] = &&L_MOD_RK,
		[F_ADD_KR] = &&L_ADD_KR, [F_SUB_KR] = &&L_SUB_KR, [F_MUL_KR] = &&L_MUL_KR,
		[F_DIV_KR] = &&L_DIV_KR, [F_MOD_KR] = &&L_MOD_KR,
		[F_NEG] = &&L_NEG, [F_CLAMP] = &&L_CLAMP, [F_ROUND] = &&L_ROUND, [F_LOADK] = &&L_LOADK,
		[F_MOV] = &&L_MOV, [F_JMP] = &&L_JMP, [F_JNULL] = &&L_JNULL, [F_JNOTNULL] = &&L_JNOTNULL,
		[F_JLT_RR] = &&L_JLT_RR, [F_JLE_RR] = &&L_JLE_RR, [F_JGT_RR] = &&L_JGT_RR,
		[F_JGE_RR] = &&L_JGE_RR, [F_JEQ_RR] = &&L_JEQ_RR, [F_JLG_RR] = &&L_JLG_RR,
		[F_JLT_RK] = &&L_JLT_RK, [F_JLE_RK] = &&L_JLE_RK, [F_JGT_RK] = &&L_JGT_RK,
		[F_JGE_RK] = &&L_JGE_RK, [F_JEQ_RK] = &&L_JEQ_RK, [F_JLG_RK] = &&L_JLG_RK,
		[F_JLT_RR_N] = &&L_JLT_RR_N, [F_JLE_RR_N] = &&L_JLE_RR_N, [F_JGT_RR_N] = &&L_JGT_RR_N,
		[F_JGE_RR_N] = &&L_JGE_RR_N, [F_JEQ_RR_N] = &&L_JEQ_RR_N, [F_JLG_RR_N] = &&L_JLG_RR_N,
		[F_JLT_RK_N] = &&L_JLT_RK_N, [F_JLE_RK_N] = &&L_JLE_RK_N, [F_JGT_RK_N] = &&L_JGT_RK_N,
		[F_JGE_RK_N] = &&L_JGE_RK_N, [F_JEQ_RK_N] = &&L_JEQ_RK_N, [F_JLG_RK_N] = &&L_JLG_RK_N,
		[F_RET] = &&L_RET, [F_RETV] = &&L_RETV,
	};
	FAST_SETUP
	double		R[FAST_MAX_REGS];
	const double *K = f->k;
	const fins *code = f->code,
			   *in = code;

	FAST_ROW_START
	/* the guard: every input a double (non-finite: NULL) or NULL, else the stack VM's */
	/* unrolled for up to 8 variables: a type test, a load and a store each */
#define FAST_LOAD(k) \
	do { \
		const duet_value *v_ = vars + (size_t) (k) * FAST_STRIDE; \
		if (__builtin_expect(v_->type == DUET_T_NUMBER, 1)) \
			R[k] = v_->u.num; \
		else if (v_->type == DUET_T_NULL) \
			R[k] = NAN; \
		else \
			FAST_GUARD_FAILED; \
	} while (0)
	switch (f->nvars)
	{
		default:
			for (int k = 8; k < f->nvars; k++)
				FAST_LOAD(k);
			/* FALLTHROUGH */
		case 8: FAST_LOAD(7);
			/* FALLTHROUGH */
		case 7: FAST_LOAD(6);
			/* FALLTHROUGH */
		case 6: FAST_LOAD(5);
			/* FALLTHROUGH */
		case 5: FAST_LOAD(4);
			/* FALLTHROUGH */
		case 4: FAST_LOAD(3);
			/* FALLTHROUGH */
		case 3: FAST_LOAD(2);
			/* FALLTHROUGH */
		case 2: FAST_LOAD(1);
			/* FALLTHROUGH */
		case 1: FAST_LOAD(0);
			/* FALLTHROUGH */
		case 0:
			break;
	}
#undef FAST_LOAD

#define FNEXT() do { in++; goto *labels[in->op]; } while (0)
#define FJUMP() do { in = code + in->x; goto *labels[in->op]; } while (0)
	goto *labels[in->op];

#define ARITH(NAME, EXPR_RR, EXPR_RK, EXPR_KR) \
L_##NAME##_RR: R[in->d] = EXPR_RR; FNEXT(); \
L_##NAME##_RK: R[in->d] = EXPR_RK; FNEXT(); \
L_##NAME##_KR: R[in->d] = EXPR_KR; FNEXT();
	/* a divisor is checked: x / inf would be a finite 0, fmod(x, inf) x */
	ARITH(ADD, R[in->a] + R[in->b], R[in->a] + K[in->x], K[in->x] + R[in->b])
	ARITH(SUB, R[in->a] - R[in->b], R[in->a] - K[in->x], K[in->x] - R[in->b])
	ARITH(MUL, R[in->a] * R[in->b], R[in->a] * K[in->x], K[in->x] * R[in->b])
	ARITH(DIV, R[in->a] / fin(R[in->b]), R[in->a] / K[in->x], K[in->x] / fin(R[in->b]))
	ARITH(MOD, fmod(R[in->a], fin(R[in->b])), fmod(R[in->a], K[in->x]), fmod(K[in->x], fin(R[in->b])))
L_NEG:
	R[in->d] = -R[in->a];
	FNEXT();
L_CLAMP:
	{
		double		v = fin(R[in->a]),
					lo = K[in->x],
					hi = K[in->x + 1];

		v = v < lo ? lo : v;
		R[in->d] = v > hi ? hi : v;		/* NaN stays NaN */
		FNEXT();
	}
L_ROUND:
	R[in->d] = !(R[in->a] - R[in->a] == 0) ? NAN : fin(duet_round_decimal(R[in->a], in->x));
	FNEXT();
L_LOADK:
	R[in->d] = K[in->x];
	FNEXT();
L_MOV:
	R[in->d] = R[in->a];
	FNEXT();
L_JMP:
	FJUMP();
L_JNULL:
	if (!(R[in->a] - R[in->a] == 0))
		FJUMP();
	FNEXT();
L_JNOTNULL:
	if (R[in->a] - R[in->a] == 0)
		FJUMP();
	FNEXT();
	/*
	 * Comparisons are false when an operand is NULL (NaN) and must be when it is ±inf, so they
	 * check their operands; x = k needs no check, since ±inf equals no finite constant.
	 */
#define JCMP(NAME, OP) \
L_J##NAME##_RR: if (OP(fin(R[in->a]), fin(R[in->b]))) FJUMP(); FNEXT(); \
L_J##NAME##_RK: if (OP(fin(R[in->a]), K[in->b])) FJUMP(); FNEXT(); \
L_J##NAME##_RR_N: if (!OP(fin(R[in->a]), fin(R[in->b]))) FJUMP(); FNEXT(); \
L_J##NAME##_RK_N: if (!OP(fin(R[in->a]), K[in->b])) FJUMP(); FNEXT();
#define F_LT(x, y) ((x) < (y))
#define F_LE(x, y) ((x) <= (y))
#define F_GT(x, y) ((x) > (y))
#define F_GE(x, y) ((x) >= (y))
#define F_EQ(x, y) ((x) == (y))
#define F_LG(x, y) islessgreater((x), (y))
	JCMP(LT, F_LT)
	JCMP(LE, F_LE)
	JCMP(GT, F_GT)
	JCMP(GE, F_GE)
L_JEQ_RR: if (F_EQ(fin(R[in->a]), fin(R[in->b]))) FJUMP(); FNEXT();
L_JEQ_RR_N: if (!F_EQ(fin(R[in->a]), fin(R[in->b]))) FJUMP(); FNEXT();
L_JEQ_RK: if (R[in->a] == K[in->b]) FJUMP(); FNEXT();
L_JEQ_RK_N: if (!(R[in->a] == K[in->b])) FJUMP(); FNEXT();
	JCMP(LG, F_LG)
L_RET:
	{
		double		r = R[in->a];

		*out = !(r - r == 0) ? duet_null() : duet_number(r + 0.0);	/* never -0 */
		FAST_DONE;
	}
L_RETV:
	*out = f->v[in->x];
	FAST_DONE;
}

