/*
 * metrics_sql_ops.c — Duet's arithmetic on double precision for the generated PostgreSQL SQL
 * (calc/sqlgen_pg.c; docs/metrics.md, "Native SQL").
 *
 * PostgreSQL's float8 + - * / raise on overflow and on a product or quotient that underflows to
 * zero, and on division by zero, where Duet gives NULL or 0. duet_num_add/sub/mul/div(a, b) are
 * Duet's operation: an operand that is not finite (±inf, NaN; Duet reads them as NULL) or a zero
 * divisor gives NULL, a result that is not finite NULL, -0 is 0 — computed in C, so the generated
 * expression costs one function call per operation, as PostgreSQL's own operators do (float8div is
 * a function call too). STRICT: a NULL operand is NULL without the call. Nothing here reads state
 * or raises.
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"

static inline Datum
duet_result(FunctionCallInfo fcinfo, double a, double b, double r)
{
	/* a non-finite operand (Duet's NULL) makes a non-finite result, except x / ±inf */
	if (!isfinite(r) || !isfinite(a) || !isfinite(b))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(r + 0.0);
}

PG_FUNCTION_INFO_V1(duet_num_add);
Datum
duet_num_add(PG_FUNCTION_ARGS)
{
	double		a = PG_GETARG_FLOAT8(0),
				b = PG_GETARG_FLOAT8(1);

	return duet_result(fcinfo, a, b, a + b);
}

PG_FUNCTION_INFO_V1(duet_num_sub);
Datum
duet_num_sub(PG_FUNCTION_ARGS)
{
	double		a = PG_GETARG_FLOAT8(0),
				b = PG_GETARG_FLOAT8(1);

	return duet_result(fcinfo, a, b, a - b);
}

PG_FUNCTION_INFO_V1(duet_num_mul);
Datum
duet_num_mul(PG_FUNCTION_ARGS)
{
	double		a = PG_GETARG_FLOAT8(0),
				b = PG_GETARG_FLOAT8(1);

	return duet_result(fcinfo, a, b, a * b);
}

PG_FUNCTION_INFO_V1(duet_num_div);
Datum
duet_num_div(PG_FUNCTION_ARGS)
{
	double		a = PG_GETARG_FLOAT8(0),
				b = PG_GETARG_FLOAT8(1);

	if (b == 0)
		PG_RETURN_NULL();
	return duet_result(fcinfo, a, b, a / b);
}
