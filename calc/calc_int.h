/*
 * calc_int.h — internals of the Duet formula engine shared by its translation units.
 * Not installed; the public API is duet_calc.h.
 *
 * Pipeline: lexer.c (tokens with positions) → parser.c (AST, depth-limited recursive descent)
 * → compile.c (type check, constant folding by running the VM, bytecode) → vm.c (evaluation;
 * fastpath.c the numeric tier, concat.c || and its fast paths);
 * funcs.c holds the builtin functions (pattern.c: like and the PCRE2 regexp_* functions, with
 * the programs' compiled constant patterns and the vms' pattern caches), format.c numbers and
 * error text, arena.c the compile-time arena (the parser allocates from it, the compiler frees
 * it), opcodes.c the opcode table and explain.c the disassembler built on it.
 */
#ifndef DUET_CALC_INT_H
#define DUET_CALC_INT_H

#include <stdint.h>
#include "duet_calc.h"

/* ---- tokens ---- */
typedef enum tok_kind
{
	T_EOF, T_NUMBER, T_STRING, T_IDENT, T_QIDENT,
	T_LPAREN, T_RPAREN, T_COMMA,
	T_PLUS, T_MINUS, T_STAR, T_SLASH, T_PERCENT, T_CARET, T_CONCAT,
	T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE,
	/* keywords */
	T_AND, T_OR, T_NOT, T_IS, T_NULL, T_TRUE, T_FALSE, T_BETWEEN, T_IN,
	T_CASE, T_WHEN, T_THEN, T_ELSE, T_END
} tok_kind;

typedef struct token
{
	tok_kind	kind;
	const char *start;			/* into the source */
	size_t		len;
	int			line;
	int			col;
	double		num;			/* T_NUMBER */
	bool		is_int;			/* T_NUMBER: digits only, within the 64-bit integers */
	int64_t		i;				/* ... its value */
} token;

typedef struct lexer
{
	const char *src;
	size_t		len;
	size_t		pos;
	int			line;
	int			col;
	token		cur;			/* current token */
	duet_error *err;
} lexer;

/* ---- AST ---- */
typedef enum node_kind
{
	N_CONST, N_VAR, N_NEG, N_BINOP, N_CMP, N_AND, N_OR, N_NOT,
	N_ISNULL, N_BETWEEN, N_IN, N_CASE, N_CALL
} node_kind;

typedef struct builtin builtin;

typedef struct node
{
	node_kind	kind;
	int			op;				/* tok_kind of the operator for N_BINOP/N_CMP; negation flags */
	int			line;
	int			col;
	duet_type	type;			/* static type after checking */
	duet_value	value;			/* N_CONST */
	int			var;			/* N_VAR: index into the program's variables */
	const builtin *fn;			/* N_CALL */
	int			height;			/* 1 + the tallest child: bounds the compiler's recursion */
	int			nkids;
	struct node **kids;			/* N_CASE: [when, then]* [else]; op = has else */
} node;

/* ---- bytecode (docs/calc.md has the opcode table) ---- */
typedef enum opcode
{
	OP_CONST, OP_VAR, OP_NEG, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD, OP_POW, OP_CONCAT,
	OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE,
	OP_AND, OP_OR, OP_NOT, OP_ISNULL, OP_ISNOTNULL, OP_BETWEEN, OP_IN,
	OP_JUMP, OP_JUMP_UNLESS_TRUE, OP_CALL, OP_RETURN,
	/*
	 * Superinstructions for + - * / with operands addressed in the instruction (V a variable,
	 * C a number constant, S the top of the stack): VV pushes vars[arg] op vars[argc], VC
	 * vars[arg] op consts[argc], CV consts[arg] op vars[argc]; SV and SC replace the top x with
	 * x op vars[arg] / x op consts[arg]. Same results and errors as the OP_VAR/OP_CONST sequence.
	 */
	OP_ADD_VV, OP_SUB_VV, OP_MUL_VV, OP_DIV_VV,
	OP_ADD_VC, OP_SUB_VC, OP_MUL_VC, OP_DIV_VC,
	OP_ADD_CV, OP_SUB_CV, OP_MUL_CV, OP_DIV_CV,
	OP_ADD_SV, OP_SUB_SV, OP_MUL_SV, OP_DIV_SV,
	OP_ADD_SC, OP_SUB_SC, OP_MUL_SC, OP_DIV_SC,
	OP_CMP_VC,					/* pushes vars[arg] <flags: OP_EQ..OP_GE> consts[argc] (a number) */
	OP_ISNULL_V,				/* pushes vars[arg] is null (flags 1: is not null) */
	OP_RETURN_VAR,				/* returns vars[arg] (a formula that is one variable) */
	OP_CLAMP_CC,				/* top = clamp(top, consts[arg], consts[argc]), number constants */
	OP_ROUND_C,					/* top = round(top, arg) with arg a constant digit count */
	OP_CONCAT_N,				/* pop argc (2, 3) values; push (a || b) || c in one allocation;
								 * flags 1: the last one is vars[arg], loaded after the first || */
	OP_CASEMAP,					/* lower (flags 0) / upper (1) of a string the next CONCAT_N takes */
	OP_NCODES
} opcode;

/* What an instruction's operand addresses (the opcode table, opcodes.c) */
typedef enum opnd_kind
{
	OPND_NONE,					/* unused */
	OPND_CONST,					/* index into consts */
	OPND_VAR,					/* index into vars */
	OPND_TARGET,				/* instruction index (a forward jump) */
	OPND_BUILTIN,				/* index into duet_builtins */
	OPND_COUNT,					/* number of stack operands */
	OPND_DIGITS					/* an immediate integer */
} opnd_kind;

/* What an instruction's flags mean */
typedef enum flag_kind
{
	FLG_NONE,
	FLG_NEGATED,				/* 1: not between / not in / is not null */
	FLG_NUMERIC,				/* CALL_NUMERIC */
	FLG_CMP,					/* a comparison opcode, OP_EQ..OP_GE */
	FLG_LASTVAR,				/* 1: the last operand is vars[arg] (OP_CONCAT_N) */
	FLG_UPPER					/* 0 lower, 1 upper (OP_CASEMAP) */
} flag_kind;

typedef struct opcode_info
{
	const char *name;			/* without OP_ */
	uint8_t		arg;			/* opnd_kind of instr.arg */
	uint8_t		argc;			/* opnd_kind of instr.argc */
	uint8_t		flags;			/* flag_kind of instr.flags */
	const char *doc;			/* one line: what it does to the stack */
} opcode_info;

extern const opcode_info duet_opcodes[OP_NCODES];

/*
 * OP_CASEMAP leaves its string on the stack with one of these internal types, for the CONCAT_N
 * that consumes it to case-map while it copies (never seen outside the VM; far from the value types
 * so that new ones do not collide).
 */
#define DUET_T_LOWER_PENDING ((duet_type) 100)
#define DUET_T_UPPER_PENDING ((duet_type) 101)

/* OP_CALL flags: every parameter is a number, so the call needs no generic argument check */
#define CALL_NUMERIC 1
/* ... and: the function reads number parameters as doubles, so integer arguments are converted */
#define CALL_INT_ARGS 2

typedef struct instr
{
	uint8_t		op;
	uint8_t		flags;			/* OP_BETWEEN/OP_IN: negated; OP_CALL: CALL_NUMERIC; OP_CMP_VC: comparison */
	uint16_t	argc;			/* OP_CALL, OP_IN: operand count; superinstructions: second operand */
	uint16_t	line;			/* position for run-time errors (saturated) */
	uint16_t	col;
	int32_t		arg;			/* constant, variable, jump target or builtin index */
} instr;

/* Where a superinstruction's variable operands stand in the source (errors about their bindings) */
typedef struct operand_pos
{
	uint16_t	line[2];
	uint16_t	col[2];
} operand_pos;

struct duet_program
{
	instr	   *code;
	operand_pos *opnd;			/* per instruction; NULL in constant-folding programs */
	int			ncode;
	duet_value *consts;
	double	   *cnum;			/* consts[i] as a double (numbers and integers), for fast paths */
	int			nconsts;
	char	   *strings;		/* one block holding every string constant */
	char	  **vars;			/* NUL-terminated names */
	size_t		nvars;
	int			max_stack;
	duet_type	type;
	size_t		max_string;
	bool		uses_arena;		/* builds strings at run time (||, string builtins) */
	bool		single_vv;		/* the whole program is one var/const superinstruction + return */
	struct duet_rx_const *rx;	/* constant regex patterns, compiled once (pattern.c) */
	int			nrx;
	struct duet_fast *fast;		/* the numeric tier's code (fastpath.c), NULL when it has none */
	bool		other_path;		/* fast or ncat: duet_eval looks at them */
	int			ncat;			/* > 0: the program is one CONCAT_N of these operands (concat.c) */
	struct
	{
		uint8_t		var;		/* 1: vars[idx], 0: consts[idx] (a string) */
		uint8_t		map;		/* 0 as it is, 1 lower, 2 upper */
		int32_t		idx;
	}			cat[3];
};

/* ---- concatenation (concat.c) ---- */
duet_errclass duet_concat2(duet_vm *vm, duet_value *a, const duet_value *b, duet_error *err);
duet_errclass duet_concat_n(duet_vm *vm, duet_value *args, int n, const duet_value *var,
							const duet_program *p, const instr *in, duet_value *out,
							duet_error *err);
void		duet_concat_plan(duet_program *p);
bool		duet_concat_row(const duet_program *p, const duet_value *vars, size_t kstride,
							duet_vm *vm, duet_value *out);
duet_errclass duet_eval_concat(const duet_program *p, const duet_value *vars, duet_vm *vm,
							   duet_value *out, duet_error *err);
/* vm.c, for concat.c: the string limit, a variable's checked load, the arena's restart */
bool		duet_vm_over_limit(const duet_vm *vm, size_t size, duet_error *err);
bool		duet_vm_load_var(const duet_program *p, const duet_value *v, int k, const instr *in,
							 int which, duet_value *dst, duet_error *err);
void		duet_vm_start_strings(duet_vm *vm, const duet_program *p);

/*
 * ---- the numeric tier (fastpath.c) ----
 * Register code on unboxed doubles (NULL as NaN) for formulas whose values are all numbers: made
 * from the checked, folded tree (NULL when the formula has something it does not do), run while
 * every input is a double or NULL (the stack VM runs the other rows).
 */
typedef struct duet_fast duet_fast;
/*
 * A folding pass for a case whose kids are folded: arms behind a constant false or NULL condition
 * are dropped, a constant true one ends the case (its value becomes the else); a case left with
 * no arm is its else. The node keeps the case's static type.
 */
void		duet_fold_case(node *n);
/* compile.c, shared with the tier: a number constant a double comparison reads exactly (a double,
 * an integer within ±2^53); round(x[, n])'s constant digit count as fn_round takes it (INT32_MIN:
 * n is not a number constant) */
bool		duet_exact_num_const(const node *n);
int			duet_round_const_digits(const node *call);
duet_fast  *duet_fast_compile(const node *root, size_t nvars);
void		duet_fast_free(duet_fast *f);
/* column-major rows (duet_eval_batch's layout): out[r], or DUET_T_ANY where the VM must run */
void		duet_fast_batch(const duet_fast *f, const duet_value *vars, size_t kstride, size_t nrows,
							duet_value *out);
/* duet_eval for a program with a tier: the tier, else duet_eval_stack (vm.c: the stack VM) */
duet_errclass duet_fast_run(const duet_program *p, const duet_value *vars, duet_vm *vm,
							duet_value *out, duet_error *err);
duet_errclass duet_eval_stack(const duet_program *p, const duet_value *vars, duet_vm *vm,
							  duet_value *out, duet_error *err);

/* ---- pattern functions (pattern.c): like, regexp_* on PCRE2 ---- */
typedef struct duet_rx_const
{
	const char *ptr;			/* the pattern constant, in the program's string block */
	size_t		len;
	void	   *code;			/* pcre2_code * */
} duet_rx_const;
typedef struct duet_rx_cache duet_rx_cache;	/* a vm's match data and non-constant patterns */

/* Whether fn's argument 1 is a regular expression (regexp_*) or a LIKE pattern (like). */
bool		duet_rx_pattern_fn(const builtin *fn, bool *is_regex);
/* Compiles a constant pattern (validates a LIKE pattern, *code NULL); false with err's message set. */
bool		duet_rx_compile_const(const char *pat, size_t len, bool is_regex, void **code,
								  char *msg, size_t msgsize);
void		duet_rx_code_free(void *code);
void		duet_rx_cache_free(duet_rx_cache *rc);
/* vm.c: the program being evaluated and the vm's pattern cache slot */
const duet_program *duet_vm_program(const duet_vm *vm);
duet_rx_cache **duet_vm_rx(duet_vm *vm);
duet_errclass duet_fn_like(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_regexp_match(duet_value *args, int argc, duet_vm *vm, duet_value *out,
								   duet_error *err);
duet_errclass duet_fn_regexp_extract(duet_value *args, int argc, duet_vm *vm, duet_value *out,
									 duet_error *err);
duet_errclass duet_fn_regexp_replace(duet_value *args, int argc, duet_vm *vm, duet_value *out,
									 duet_error *err);

/* ---- builtins ---- */
typedef duet_errclass (*builtin_fn) (duet_value *args, int argc, duet_vm *vm,
									 duet_value *out, duet_error *err);

struct builtin
{
	const char *name;
	int			min_args;
	int			max_args;		/* -1: variadic */
	const char *params;			/* per argument: n number, s string, b bool, a any, x same type;
								 * the last letter repeats for variadic functions */
	char		result;			/* n, s, b, or x (the common type of the x arguments) */
	bool		strict;			/* a NULL argument gives NULL without calling fn */
	builtin_fn	fn;
	bool		ints;			/* fn takes DUET_T_INT arguments as they are; otherwise the VM
								 * passes integers as doubles */
	bool		clock;			/* reads the vm's clock (now, today): never folded at compile time */
};
/* params letter T: a date or a timestamp; result T: the type of the T argument (datetime.c) */

extern const builtin duet_builtins[];
extern const int duet_nbuiltins;
const builtin *duet_builtin_lookup(const char *name, size_t len);

/* ---- dates and timestamps (datetime.c) ---- */
duet_errclass duet_fn_date(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_timestamp(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_now(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_today(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_date_trunc(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_date_add(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_date_diff(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_day_of_week(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_extract(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_format_datetime(duet_value *args, int argc, duet_vm *vm, duet_value *out,
									  duet_error *err);
duet_errclass duet_fn_parse_datetime(duet_value *args, int argc, duet_vm *vm, duet_value *out,
									 duet_error *err);
duet_errclass duet_fn_parse_date(duet_value *args, int argc, duet_vm *vm, duet_value *out, duet_error *err);
duet_errclass duet_fn_to_timezone(duet_value *args, int argc, duet_vm *vm, duet_value *out,
								  duet_error *err);	/* timezone.c */
duet_errclass duet_fn_from_timezone(duet_value *args, int argc, duet_vm *vm, duet_value *out,
									duet_error *err);
/* a timestamp value, or DUET_ERR_RANGE (fn names the function) outside the formula dates */
duet_errclass duet_make_timestamp(int64_t us, duet_value *out, duet_error *err, const char *fn);
int64_t		duet_days_from_civil(int64_t y, int m, int d);
void		duet_civil_from_days(int64_t z, int *y, int *m, int *d);
int64_t		duet_clock_now(void);	/* the real-time clock, microseconds since 1970 UTC */
int64_t		duet_vm_now(duet_vm *vm);	/* vm.c: the binder's time, else the clock (once per eval) */

static inline bool
duet_is_time(duet_type t)
{
	return t == DUET_T_DATE || t == DUET_T_TIMESTAMP;
}

/* ---- shared helpers ---- */
void		lexer_init(lexer *lx, const char *src, size_t len, duet_error *err);
bool		lexer_next(lexer *lx);	/* false on a lexical error (err filled) */
const char *tok_describe(tok_kind k);

/* compile-time arena (arena.c): blocks freed in one go after compilation */
typedef struct arena_block arena_block;
typedef struct calc_arena
{
	arena_block *head;
} calc_arena;

void	   *arena_alloc(calc_arena *ar, size_t size);	/* NULL when out of memory */
void		arena_free(calc_arena *ar);

node	   *duet_parse(lexer *lx, const duet_limits *lim, calc_arena *arena, duet_error *err);

/*
 * compile.c: parses, expands, checks and folds src like duet_compile, then calls fn with the tree
 * (valid during the call) instead of generating code; fn's result, or false with *err filled.
 */
bool		duet_compile_tree(const char *src, size_t len, const duet_compile_options *opts,
							  bool (*fn) (void *arg, const node *root, const char *src,
										  size_t srclen, duet_error *err),
							  void *arg, duet_error *err);

/* the limits of a compile whose options give none (compile.c) */
extern const duet_limits duet_default_limits;

/* metric.c: metric m's formula for call (named name), parameters substituted; NULL with err set */
node	   *duet_metric_body(const char *src, size_t srclen, const node *call, const char *name,
							 const duet_metric *m, const duet_limits *lim, calc_arena *ar,
							 duet_error *err);

/* error reporting: fills message, position and the caret excerpt */
void		duet_set_error(duet_error *err, duet_errclass cls, const char *src, size_t srclen,
						   int line, int col, const char *expected, const char *fmt,...)
			__attribute__((format(printf, 8, 9)));
void		duet_set_runtime_error(duet_error *err, duet_errclass cls, int line, int col,
								   const char *fmt,...) __attribute__((format(printf, 5, 6)));

/* run-time string space of a vm, reset per evaluation; NULL (with err) when over max */
char	   *duet_vm_alloc(duet_vm *vm, size_t size, duet_error *err);

/* round(x, n): half away from zero on x's shortest decimal (number.c) */
double		duet_round_decimal(double x, int n);

/*
 * Decimal digits d0.d1…d(nd-1) × 10^*exp10 rounded half away from zero to their first `keep`
 * digits; returns how many are left (0: the value rounds to zero), *exp10 + 1 on a carry out of the
 * first digit. digits needs a spare byte. (number.c; round() and format_number share it.)
 */
int			duet_round_digits(char *digits, int nd, int keep, int *exp10);

/* value helpers shared by the vm and the builtins */
/* DUET_T_INT and DUET_T_NUMBER are one family (numbers): comparable, one type for coalesce etc. */
static inline duet_type
duet_type_family(duet_type t)
{
	return t == DUET_T_INT ? DUET_T_NUMBER : t;
}
bool		duet_value_comparable(duet_type a, duet_type b);
int			duet_value_cmp(const duet_value *a, const duet_value *b);	/* both non-null, comparable */
size_t		duet_utf8_length(const char *s, size_t len);
size_t		duet_utf8_seq(const char *s, size_t len, size_t i);	/* lexer.c; 0: not valid UTF-8 */

/* The double value of a number (integer or double). */
static inline double
duet_num(const duet_value *v)
{
	return v->type == DUET_T_INT ? (double) v->u.i : v->u.num;
}

/* The integer-overflow error (DUET_ERR_RANGE); returns the class. */
duet_errclass duet_int_overflow(duet_error *err, const char *what);

/* NULL when not finite, +0 for -0. Inline: the VM calls it for every number it loads or makes. */
static inline duet_value
duet_finite(double d)
{
	if (!(d - d == 0))			/* false for infinities and NaN */
		return duet_null();
	return duet_number(d + 0.0);	/* -0 + 0 = +0 */
}

#endif							/* DUET_CALC_INT_H */
