/*
 * duet_calc.h — the Duet formula engine (DESIGN.md §4), plain C11, no PostgreSQL headers.
 *
 * Compile once, evaluate many:
 *
 *     duet_error err;
 *     duet_program *p = duet_compile("revenue / spend", SIZE_MAX, NULL, &err);
 *     if (!p) { report(err.message, err.line, err.column, err.excerpt); }
 *     duet_vm *vm = duet_vm_new();
 *     duet_value vars[2] = { duet_number(120), duet_number(40) };   // order of duet_program_var()
 *     duet_value out;
 *     if (duet_eval(p, vars, vm, &out, &err) == DUET_OK) ...        // out.u.num == 3
 *
 * A program is immutable after compilation and may be shared between threads; a duet_vm is
 * per-thread scratch (stack and string arena) that grows to a program's needs once and then
 * allocates nothing per evaluation. The engine never aborts or exits: every failure, including
 * out-of-memory, comes back as a duet_errclass.
 *
 * Semantics: SQL NULL (arithmetic and comparisons with NULL give NULL; and/or are three-valued);
 * division or modulo by zero, results outside the finite doubles and arguments outside a
 * function's domain give NULL. Numeric results are always finite and never negative zero.
 * A number is a double (DUET_T_NUMBER) or an exact 64-bit integer (DUET_T_INT: integer literals,
 * integer inputs); + - * % on two integers stay exact, and overflow is DUET_ERR_RANGE, never a
 * wrap or a rounding; / and ^ and mixing with a double give doubles (docs/calc.md, "Integers").
 */
#ifndef DUET_CALC_H
#define DUET_CALC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum duet_type
{
	DUET_T_NULL = 0,			/* SQL NULL */
	DUET_T_NUMBER,				/* IEEE double */
	DUET_T_STRING,				/* UTF-8 bytes, length-counted (not NUL-terminated) */
	DUET_T_BOOL,
	DUET_T_ANY,					/* static type unknown (compile-time only, never a value) */
	DUET_T_INT,					/* a number held exactly as a 64-bit integer (value u.i); its
								 * static type is DUET_T_NUMBER, which covers both */
	DUET_T_DATE,				/* days since 1970-01-01 (u.i), DUET_DATE_MIN .. DUET_DATE_MAX */
	DUET_T_TIMESTAMP			/* microseconds since 1970-01-01 00:00:00 UTC (u.i), the days of
								 * DUET_DATE_MIN .. DUET_DATE_MAX (docs/calc.md, "Dates") */
} duet_type;

/* 0001-01-01 and 9999-12-31 as days since 1970-01-01: the dates a value can hold */
#define DUET_DATE_MIN (-719162)
#define DUET_DATE_MAX 2932896

typedef struct duet_value
{
	duet_type	type;
	union
	{
		double		num;
		int64_t		i;			/* DUET_T_INT */
		bool		boolean;
		struct
		{
			const char *ptr;
			size_t		len;
		}			str;
	}			u;
} duet_value;

/* Error classes; duet_errclass_name() gives the names used in the conformance files (test/conformance). */
typedef enum duet_errclass
{
	DUET_OK = 0,
	DUET_ERR_SYNTAX,			/* "syntax": lexer or parser */
	DUET_ERR_TYPE,				/* "type": operand types, at compile time when known, else at run time */
	DUET_ERR_UNKNOWN_FUNCTION,	/* "unknown_function" */
	DUET_ERR_ARITY,				/* "arity": wrong number of function arguments */
	DUET_ERR_LIMIT,				/* "limit": formula length, nesting depth, constants, string size */
	DUET_ERR_UNKNOWN_VARIABLE,	/* "unknown_variable": raised by binders when an input lacks a variable */
	DUET_ERR_NOMEM,				/* "nomem" */
	DUET_ERR_RANGE,				/* "range": an integer result outside the 64-bit integers, a date
								 * outside 0001-01-01 .. 9999-12-31 */
	DUET_ERR_INPUT				/* "input": text that is not a date or timestamp, an unknown unit
								 * or pattern directive */
} duet_errclass;

typedef struct duet_error
{
	duet_errclass cls;
	int			line;			/* 1-based position of the error; 0 when not positional */
	int			column;			/* 1-based, counted in characters (UTF-8 code points) */
	char		message[256];	/* lower case, no trailing period */
	char		expected[64];	/* what the parser expected there, "" when not applicable */
	char		excerpt[512];	/* the offending source line, "\n", and a caret under the column */
} duet_error;

typedef struct duet_limits
{
	size_t		max_length;		/* formula bytes; default 65536 */
	int			max_depth;		/* expression nesting; default 256 */
	int			max_constants;	/* distinct constants; default 4096 */
	size_t		max_string;		/* bytes of any string built at run time; default 1 MiB */
	/* a zero field keeps its default */
} duet_limits;

/*
 * A named metric (docs/calc.md, "Metrics"): a formula whose only variables are its parameters.
 * Where a formula calls it the compiler expands it inline — name(a, b) is the metric's formula
 * with parameter i replaced by argument i, name() binds every parameter to the variable of the
 * same name — so a metric call costs what the formula written out costs.
 */
typedef struct duet_metric
{
	const char *formula;		/* UTF-8, formula_len bytes */
	size_t		formula_len;
	size_t		nparams;
	const char *const *params;	/* NUL-terminated parameter names */
	const duet_type *param_types;	/* per parameter: DUET_T_NUMBER, _STRING, _BOOL or _ANY */
} duet_metric;

/*
 * Metrics calling metrics: at most this many nested expansions, this many per formula, and this
 * many operations in the expanded formula (an argument a metric uses twice counts twice), so
 * that no formula compiles to an unbounded program.
 */
#define DUET_METRIC_MAX_NESTING 16
#define DUET_METRIC_MAX_EXPANSIONS 1024
#define DUET_METRIC_MAX_NODES 16384

typedef struct duet_compile_options
{
	/*
	 * Optional static types of variables, so that type errors are reported at compile time. Return
	 * DUET_T_ANY when unknown. NULL: every variable is DUET_T_ANY.
	 */
	duet_type	(*var_type) (void *arg, const char *name, size_t len);
	void	   *var_type_arg;
	const duet_limits *limits;	/* NULL: the defaults above */

	/*
	 * Optional metrics: called for a function name that is not a builtin. Returns true with *m
	 * filled when the name is a metric (its pointers valid until duet_compile returns), false
	 * when it is not (an unknown function). Must not fail otherwise.
	 */
	bool		(*metric) (void *arg, const char *name, size_t len, duet_metric *m);
	void	   *metric_arg;
} duet_compile_options;

/* True when name is a builtin function (or `if`): a metric of that name could never be called. */
bool		duet_is_builtin(const char *name, size_t len);

/*
 * Calls fn for every call in the formula of a function that is not a builtin (the metrics it
 * would call), in source order, repeats included. False with *err filled when it does not parse.
 */
bool		duet_formula_calls(const char *src, size_t len,
							   void (*fn) (void *arg, const char *name, size_t len), void *arg,
							   duet_error *err);

typedef struct duet_program duet_program;
typedef struct duet_vm duet_vm;

/*
 * A formula as one SQL expression with exactly Duet's semantics (sqlgen.c, docs/metrics.md
 * "Native SQL"), or a refusal naming the construct that has no exact equivalent in the dialect.
 */
typedef enum duet_sql_dialect
{
	DUET_SQL_POSTGRES,
	DUET_SQL_CLICKHOUSE
} duet_sql_dialect;

typedef struct duet_sql_options
{
	duet_sql_dialect dialect;
	/* SQL for variable name (a quoted identifier, $n); NULL when it has no declared type */
	const char *(*var_sql) (void *arg, const char *name, size_t len);
	void	   *arg;
	/*
	 * PostgreSQL: the qualified prefix of Duet's + - * / on double precision ("public.duet_num_",
	 * then add, sub, mul, div: pg_duet/metrics_sql_ops.c), which PostgreSQL's float8 operators are
	 * not (they raise on overflow, underflow and division by zero)
	 */
	const char *arith_prefix;
} duet_sql_options;

/*
 * Compiles src (opts as duet_compile) to SQL: a malloc'd NUL-terminated expression of static type
 * *type, or NULL with *err filled — *refused true when the formula is valid but a construct does not translate
 * exactly (err->message names it), false when it does not compile at all.
 */
char	   *duet_compile_sql(const char *src, size_t len, const duet_compile_options *opts,
							 const duet_sql_options *o, duet_type *type, bool *refused,
							 duet_error *err);

/* Compiles src (len bytes, or up to its NUL when len is SIZE_MAX). NULL on error, with *err filled. */
duet_program *duet_compile(const char *src, size_t len, const duet_compile_options *opts,
						   duet_error *err);
void		duet_program_free(duet_program *p);

/* Variables the formula reads, in order of first appearance; duet_eval binds vars[i] to var i. */
size_t		duet_program_nvars(const duet_program *p);
const char *duet_program_var(const duet_program *p, size_t i);	/* NUL-terminated */

/* Static result type: DUET_T_NUMBER, _STRING, _BOOL, _NULL (always null), or DUET_T_ANY. */
duet_type	duet_program_type(const duet_program *p);

/*
 * The program listing, as `luac -l` prints Lua bytecode: a header (instructions, variables,
 * constants, stack depth, result type), then one line per instruction with its index, source
 * position, opcode, operands and what they name. malloc'd, NUL-terminated, ends with a newline;
 * NULL when out of memory. The format is for people and may change between versions.
 */
char	   *duet_program_explain(const duet_program *p);

duet_vm    *duet_vm_new(void);
void		duet_vm_free(duet_vm *vm);

/*
 * The time now() and today() give (microseconds since 1970-01-01 UTC) in this vm's evaluations
 * until changed: the statement's start in PostgreSQL, the block's arrival in the UDFs. A vm that
 * was given none reads the real-time clock once per evaluation that calls them.
 */
void		duet_vm_set_now(duet_vm *vm, int64_t usec);
void		duet_vm_clear_now(duet_vm *vm);

/*
 * Evaluates p with vars[0 .. nvars-1]. A string result points into the program's constants, the
 * inputs, or the vm's arena, and stays valid until the vm's next evaluation. On error (a run-time
 * type error, a string over the limit, out of memory) returns its class and fills err->message.
 */
duet_errclass duet_eval(const duet_program *p, const duet_value *vars, duet_vm *vm,
						duet_value *out, duet_error *err);

/*
 * Evaluates p over nrows rows at once, column-major: variable k of row r is vars[k * stride + r]
 * (stride >= nrows; for one block of columns, stride = nrows), its result out[r]. The fixed cost
 * of an evaluation is paid once per call; string results stay valid until the vm's next
 * evaluation. Stops at the first row that fails: returns its class with err filled, *done = that
 * row (out[0 .. *done-1] are results); *done = nrows on success. Resume with vars + *done + 1,
 * out + *done + 1 and nrows - *done - 1 (earlier string results are then no longer valid).
 */
duet_errclass duet_eval_batch(const duet_program *p, const duet_value *vars, size_t stride,
							  size_t nrows, duet_vm *vm, duet_value *out, duet_error *err,
							  size_t *done);

/* Value constructors for binders. */
static inline duet_value
duet_null(void)
{
	duet_value	v;

	v.type = DUET_T_NULL;
	v.u.num = 0;
	return v;
}

static inline duet_value
duet_number(double d)
{
	duet_value	v;

	v.type = DUET_T_NUMBER;
	v.u.num = d;
	return v;
}

static inline duet_value
duet_int(int64_t i)
{
	duet_value	v;

	v.type = DUET_T_INT;
	v.u.i = i;
	return v;
}

static inline duet_value
duet_bool(bool b)
{
	duet_value	v;

	v.type = DUET_T_BOOL;
	v.u.boolean = b;
	return v;
}

static inline duet_value
duet_string(const char *ptr, size_t len)
{
	duet_value	v;

	v.type = DUET_T_STRING;
	v.u.str.ptr = ptr;
	v.u.str.len = len;
	return v;
}

static inline duet_value
duet_date(int32_t days)
{
	duet_value	v;

	v.type = DUET_T_DATE;
	v.u.i = days;
	return v;
}

static inline duet_value
duet_timestamp(int64_t usec)
{
	duet_value	v;

	v.type = DUET_T_TIMESTAMP;
	v.u.i = usec;
	return v;
}

const char *duet_errclass_name(duet_errclass cls);

/*
 * A date's or timestamp's text: "2026-12-02", "2026-12-02 10:00:00", "2026-12-02 10:00:00.5"
 * (PostgreSQL's text in ISO DateStyle, ClickHouse's). 32 bytes suffice; returns the length.
 */
size_t		duet_format_time_value(const duet_value *v, char *buf, size_t bufsize);

/*
 * Reads the text duet_format_time_value writes (also "T" for the space, a trailing "Z" and a date
 * alone as a timestamp's midnight) as want (DUET_T_DATE or DUET_T_TIMESTAMP). False when it is
 * not such text or the value is out of range.
 */
bool		duet_parse_time(const char *s, size_t len, duet_type want, duet_value *out);

/*
 * Whether s[0 .. len-1] is well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF). Binders reject a string input that is not (docs/calc.md, "Strings"); the pattern
 * functions check their arguments with it before PCRE2 runs with PCRE2_NO_UTF_CHECK.
 */
bool		duet_utf8_valid(const char *s, size_t len);
const char *duet_type_name(duet_type t);	/* "null", "number" (also DUET_T_INT), "string", "boolean",
											 * "date", "timestamp", "any" */

/* Decimal text of an integer, exact: at most 20 bytes and a NUL. Returns the length. */
size_t		duet_format_int(int64_t i, char *buf, size_t bufsize);

/* A number's text: duet_format_int for DUET_T_INT, duet_format_number for a double. */
size_t		duet_format_value_number(const duet_value *v, char *buf, size_t bufsize);

/*
 * Shortest text that parses back (strtod) to exactly d, laid out as JavaScript and JSON writers
 * do: "3", "0.1", "1200", "1000000000000000", "1e+21", "1e-7", "1.5e+300"; "null" when d is not
 * finite, "0" for -0. The digits are PostgreSQL's Ryu (the fewest that read back, the closest to d
 * among those), so PostgreSQL's jsonb, the ClickHouse UDFs and conformance output print the same
 * digits by construction (docs/calc.md). Returns the length (at most 25), writing at most
 * bufsize - 1 bytes and a NUL.
 */
size_t		duet_format_number(double d, char *buf, size_t bufsize);	/* 32 bytes suffice */

/*
 * The same digits without layout: d (finite, non-zero) = digits[0].digits[1..n-1] × 10^exp10, no
 * trailing zeros, n <= 17 returned (0 for 0). digits needs 24 bytes; the sign is not included.
 */
int			duet_shortest_digits(double d, char *digits, int *exp10);

/*
 * Reads a number as strtod does in the C locale, from s[0 .. len-1] (no NUL needed); returns the
 * bytes read (0: none) and the value in *out. Decimal text of up to 19 significant digits whose
 * value is m·10^e with m <= 2^53 and |e| <= 22 is converted exactly without strtod (Clinger's
 * fast path); everything else by strtod_l in the C locale.
 */
size_t		duet_parse_number(const char *s, size_t len, double *out);

#ifdef __cplusplus
}
#endif

#endif							/* DUET_CALC_H */
