/*
 * rules.h — the rule engine (DESIGN.md §7), shared between rules_*.c.
 *
 * rules_formula.c  compiling conditions against a row shape, binding columns, rendering messages
 * rules_api.c      duet_rule_create/alter/drop/enable/disable, duet_rule_test, validation
 * rules_trigger.c  row rules: the statement trigger over the transition table
 * rules_query.c    query rules: duet_rules_evaluate(at)
 * rules_worker.c   duet.rules_interval and the scheduler background worker
 * The state machine is duet.duet_alert_observe() in sql/40_rules.sql.
 */
#ifndef DUET_RULES_H
#define DUET_RULES_H

#include "access/tupdesc.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "calc_pg.h"

/* A formula compiled for one row shape: variable i of the program reads column attnos[i]. */
typedef struct RuleFormula
{
	duet_program *prog;
	int			nvars;
	AttrNumber *attnos;			/* 1-based columns of the row shape */
	PgcalcColumn *cols;			/* how each is read (calc_value.c, as duet_calc reads it) */
} RuleFormula;

/*
 * A message template (message, resolve message, annotations) split into literal text and
 * placeholders: {column}, {value}, or a Duet formula over the columns such as {roas * 100}.
 */
#define TEMPLATE_EXPR	(-2)
typedef struct RuleTemplate
{
	int			nparts;
	char	  **literal;		/* literal[i] precedes placeholder i */
	AttrNumber *attnos;			/* column of placeholder i; 0 means {value}; -1 ends the template;
								 * TEMPLATE_EXPR: the formula exprs[i] */
	RuleFormula **exprs;
	RuleFormula **formats;		/* exprs[i]'s unit formatter (rules_unit_formatter), or NULL */
} RuleTemplate;

/*
 * Compiles src as the rule's `what` ("condition" or "value") against the columns of desc.
 * Errors are raised (positioned for syntax errors). The program is freed with CurrentMemoryContext.
 */
extern RuleFormula *rules_formula_compile(const char *src, const char *what, TupleDesc desc,
										  bool must_be_boolean);

/* Builds the formula's inputs from a row. Strings are allocated in CurrentMemoryContext. */
extern void rules_bind_row(const RuleFormula *f, const Datum *values, const bool *nulls,
						   duet_value *vars);

/* Evaluates; on error returns false with *errmsg set (palloc'd). */
extern bool rules_eval(const RuleFormula *f, duet_vm *vm, const duet_value *vars, duet_value *out,
					   char **errmsg);

/* The formatter of a metric call by its metric's unit (a program over `value`), or NULL (rules_formula.c). */
extern RuleFormula *rules_unit_formatter(const char *src);
/* A result's text, by the unit formatter when there is one (rules_formula.c). */
extern char *rules_format(const RuleFormula *formatter, duet_vm *vm, const duet_value *v);

/* Parses a message template; unknown placeholders are errors. NULL template: NULL. */
extern RuleTemplate *rules_template_parse(const char *tmpl, TupleDesc desc, bool has_value);

/* Renders a template for a row; valuetext fills {value}, vm evaluates formula placeholders. */
extern char *rules_template_render(const RuleTemplate *t, TupleDesc desc, const Datum *values,
								   const bool *nulls, const char *valuetext, duet_vm *vm);

/* The text of column attno of a row ("null" for NULL), as labels and messages show it. */
extern char *rules_column_text(TupleDesc desc, AttrNumber attno, Datum value, bool isnull);

/* Column number of name in desc, or InvalidAttrNumber. */
extern AttrNumber rules_column(TupleDesc desc, const char *name);

/*
 * One evaluation of one rule over a set of rows (a transition table or a query result): rows are
 * grouped into alert instances by their label values; an instance's outcome is 'true' if any of
 * its rows meets the condition, else 'error' if one failed to evaluate, else 'false'.
 */
typedef struct RuleRun
{
	int64		rule_id;
	char	   *tenant;
	MemoryContext cxt;			/* everything below lives here */
	char	   *setup_error;	/* the formulas do not compile for these rows */
	RuleFormula *cond;
	RuleFormula *value;
	RuleFormula *value_format;	/* {value}'s unit formatter, or NULL: the value's text */
	RuleTemplate *tmpl;
	RuleTemplate *resolve_tmpl;
	int			nannot;
	char	  **annot_names;
	RuleTemplate **annot_tmpls;
	int			nlabels;
	char	  **label_names;
	AttrNumber *label_attnos;
	Oid		   *label_types;	/* base types of the label columns */
	StringInfoData keybuf;		/* instance key of the current row */
	duet_value *vars;			/* scratch, sized for the larger formula */
	struct HTAB *instances;		/* label key → RuleInstance */
	List	   *order;			/* RuleInstance, in order of first row */
	int64		nrows;			/* rows fed, for the monitoring counters */
} RuleRun;

/* What a rule reports besides its value: templates of duet.rules (any may be NULL). */
typedef struct RuleContent
{
	const char *message;
	const char *resolve_message;
	Jsonb	   *annotations;	/* object: name -> template */
} RuleContent;

/*
 * The SELECT list of duet.rules' annotations and resolve_message (typed NULLs while the
 * extension's SQL is still 0.1.0): read after message, into RuleContent.
 */
extern const char *rules_content_columns(void);

/*
 * Prepares a run; compile failures (a column dropped since the rule was created, say) are kept in
 * setup_error, never raised. Call within a subtransaction-safe context: it uses one internally.
 */
extern RuleRun *rules_run_begin(int64 rule_id, const char *tenant, const char *condition,
								const char *value, Datum labels_array, bool labels_null,
								const RuleContent *content, TupleDesc desc);

/* Feeds one row (all columns deformed). */
extern void rules_run_row(RuleRun *run, TupleDesc desc, Datum *values, bool *nulls, duet_vm *vm);

/* Observes every instance at `at` through duet.duet_alert_observe (SPI connected, as the owner). */
extern void rules_run_observe(RuleRun *run, TimestampTz at);

/*
 * Observes one outcome for one label set; message is the rendered message ('true') or resolve
 * message ('false'), annotations the rendered annotations ('true').
 */
extern void rules_observe(int64 rule_id, Jsonb *labels, const char *outcome, Jsonb *value,
						  const char *message, const char *error, TimestampTz at,
						  Jsonb *annotations);

/* Label keys of the run's instances (jsonb[] Datum) for duet.duet_alert_sweep. */
extern Datum rules_run_seen(RuleRun *run);

/* The single instance of a one-row run, for duet_rule_test: fires, outcome, labels, value, message. */
extern Jsonb *rules_run_describe(RuleRun *run);

/* Checks that a rule query is one SELECT; its row shape (SPI connected). */
extern TupleDesc rules_query_describe(const char *query);


/* duet.rules_max_rows (rules_worker.c). */
extern int	duet_rules_max_rows;
extern int	duet_rules_query_timeout_ms;

/* rules_query.c: installs the check that keeps a rule's query from turning exit_on_error on. */
extern void rules_query_init(void);

/* Defines duet.rules_interval and registers the scheduler (rules_worker.c). */
extern void duet_rules_init(void);

#endif							/* DUET_RULES_H */
