/*
 * kafka_direct.c — a slice of a batch into a plain table without COPY's text round trip.
 *
 * COPY reads its rows as text: the batch would be rendered as COPY lines (every value escaped, tab
 * separated) only for CopyFrom to split and de-escape them again — a fifth of a worker's time for
 * a narrow table (perf, bench/RESULTS.md). Where COPY itself would insert rows in batches and no
 * code of the target's runs per row, this file does what CopyFrom does for such a table, from the
 * values as rendered: each value through its column's input function, the defaults of the columns
 * the messages do not fill, the NOT NULL and CHECK constraints, table_multi_insert in buffers of
 * COPY's size, then the index entries (unique and exclusion checks included).
 *
 * It applies only where that is all COPY would do (duet_kafka_direct_fits): an ordinary table, not
 * a partition (COPY checks the partition constraint), with no trigger of any kind (foreign keys
 * and deferrable unique keys are triggers), no stored generated column, and no volatile default
 * other than nextval() (with one, COPY itself inserts row by row). Everything else (partitioned
 * tables, triggers, csv, upsert) goes through COPY.
 *
 * Errors are worded as COPY words them ("COPY t, line N, column c: \"v\"", "COPY t, line N:
 * \"...\"", "COPY t, line N" while adding index entries), with line N the row's place in the
 * slice, so a dead letter's detail reads the same whichever path loaded its batch; the row is
 * also reported to kafka_ingest.c as a number, which isolates it as it does for COPY.
 *
 * Runs as the consumer's owner, restricted, after kafka_ingest.c's permission checks.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "kafka_ingest_int.h"

/* COPY's buffer limits (copyfrom.c): rows, and bytes of input, per table_multi_insert */
#define DIRECT_BUFFER_ROWS	1000
#define DIRECT_BUFFER_BYTES 65535

/* What the error context callback needs to word an error as COPY would. */
typedef struct DirectErrorState
{
	const char *relname;
	const Layout *l;
	const char *data;
	const int  *pos;			/* the slice's first row */
	uint64	   *line;			/* the caller's: 1-based row of the slice, 0 for none */
	bool		line_valid;		/* an error about the row as a whole shows the row */
	const char *attname;		/* an error about one value */
	const char *attval;
} DirectErrorState;

/* The bytes of a value or row that errors show: COPY shows at most 100, cut at a character. */
#define PRINTOUT_BYTES 100
#define PRINTOUT_READ (PRINTOUT_BYTES + MAX_MULTIBYTE_CHAR_LEN)

/* COPY's limit_printout_length, reading no further than it shows (a value may be huge). */
static char *
limit_printout(const char *s)
{
	int			len = strnlen(s, PRINTOUT_READ);
	char	   *res;

	if (len <= PRINTOUT_BYTES)
		return pnstrdup(s, len);
	len = pg_mbcliplen(s, len, PRINTOUT_BYTES);
	res = palloc(len + 4);
	memcpy(res, s, len);
	strcpy(res + len, "...");
	return res;
}

static void
direct_error_callback(void *arg)
{
	DirectErrorState *e = arg;
	unsigned long long line = *e->line;

	if (line == 0)
		errcontext("COPY %s", e->relname);
	else if (e->attname && e->attval)
		errcontext("COPY %s, line %llu, column %s: \"%s\"", e->relname, line, e->attname,
				   limit_printout(e->attval));
	else if (e->attname)
		errcontext("COPY %s, line %llu, column %s: null input", e->relname, line, e->attname);
	else if (e->line_valid)
	{
		StringInfoData row;

		/* the start of the row's COPY line, as much as the error shows */
		initStringInfo(&row);
		duet_kafka_render_copy_line(&row, e->l, e->data, e->pos + (line - 1) * e->l->ncols,
									PRINTOUT_READ);
		errcontext("COPY %s, line %llu: \"%s\"", e->relname, line, limit_printout(row.data));
	}
	else
		errcontext("COPY %s, line %llu", e->relname, line);
}

/*
 * The default of column attnum where the messages do not fill it, as BeginCopyFrom finds it
 * (not planned), or NULL. Reads only the catalogs.
 */
static Node *
unfilled_default(Relation rel, const Layout *l, int attnum)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);

	if (att->attisdropped || att->attgenerated)
		return NULL;
	for (int i = 0; i < l->ncols; i++)
		if (l->cols[i].attnum == attnum)
			return NULL;
	return build_column_default(rel, attnum);
}

/*
 * Whether a batch into rel can skip COPY: COPY would insert its rows in batches, and nothing but
 * input functions, defaults, constraints and indexes runs per row. Reads only the catalogs: no
 * code of the target's runs here.
 */
bool
duet_kafka_direct_fits(DuetKafkaTarget *t, Layout *l, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (t->format == DUET_FORMAT_CSV || t->nkeys > 0 ||
		rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relispartition ||
		rel->trigdesc != NULL ||
		(desc->constr && desc->constr->has_generated_stored))
		return false;
	/* COPY inserts row by row when a default may look at the rows before it */
	for (int a = 1; a <= desc->natts; a++)
	{
		Node	   *def = unfilled_default(rel, l, a);

		if (def && contain_volatile_functions_not_nextval(def))
			return false;
	}
	return true;
}

/*
 * table_multi_insert of the buffered rows, then their index entries, in per-row memory as COPY
 * does; clears the slots.
 */
static void
flush_buffer(ResultRelInfo *rri, EState *estate, TupleTableSlot **slots, int n, uint64 first_line,
			 BulkInsertState bistate, DirectErrorState *err)
{
	MemoryContext old;

	ResetPerTupleExprContext(estate);
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	*err->line = 0;
	err->line_valid = false;
	table_multi_insert(rri->ri_RelationDesc, slots, n, GetCurrentCommandId(true), 0, bistate);
	for (int i = 0; i < n; i++)
	{
		if (rri->ri_NumIndices > 0)
		{
			ResetPerTupleExprContext(estate);
			*err->line = first_line + i;
			(void) ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL);
		}
		ExecClearTuple(slots[i]);
	}
	*err->line = 0;
	MemoryContextSwitchTo(old);
}

/*
 * Inserts the slice's nrows rows (values at data + pos[row * ncols + column], -1 for NULL; row k
 * in bytes [offset[k], offset[k + 1]) of data) into rel, whose range table entry (with its
 * permissions checked) is the only one of rtable; returns the rows inserted. *line is the row
 * being loaded (1-based), for the caller to find the row an error struck. Its memory is a context
 * of its own, a child of the caller's, deleted at the end (on an error, with the caller's).
 */
uint64
duet_kafka_direct_load(Relation rel, List *rtable, const Layout *l, const char *data,
					   const int *pos, const size_t *offset, int nrows, uint64 *line)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "duet kafka direct load",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext caller = MemoryContextSwitchTo(cxt);
	TupleDesc	desc = RelationGetDescr(rel);
	/* a copy without reference counting: a thousand slots pinning rel's descriptor in the
	 * resource owner cost 2% of a worker (its hash probes for the same pointer grow in a row) */
	TupleDesc	slotdesc = CreateTupleDescCopy(desc);
	EState	   *estate = CreateExecutorState();
	ExprContext *econtext;
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	FmgrInfo   *infunc = palloc(sizeof(FmgrInfo) * l->ncols);
	Oid		   *ioparam = palloc(sizeof(Oid) * l->ncols);
	ExprState **defexprs = palloc(sizeof(ExprState *) * desc->natts);
	int		   *defmap = palloc(sizeof(int) * desc->natts);
	int			ndefaults = 0;
	TupleTableSlot *slots[DIRECT_BUFFER_ROWS] = {0};
	BulkInsertState bistate = GetBulkInsertState();
	DirectErrorState err = {RelationGetRelationName(rel), l, data, pos, line};
	ErrorContextCallback errcb = {error_context_stack, direct_error_callback, &err};
	int			nbuffered = 0;
	uint64		first_line = 1;	/* the buffer's first row */

	ExecInitRangeTable(estate, rtable);
	ExecInitResultRelation(estate, rri, 1);
	CheckValidResultRel(rri, CMD_INSERT);
	ExecOpenIndices(rri, false);
	econtext = GetPerTupleExprContext(estate);

	for (int i = 0; i < l->ncols; i++)
	{
		Oid			func;

		getTypeInputInfo(TupleDescAttr(desc, l->cols[i].attnum - 1)->atttypid, &func, &ioparam[i]);
		fmgr_info(func, &infunc[i]);
	}
	/* the defaults of the columns the messages do not fill, planned as BeginCopyFrom does */
	for (int a = 1; a <= desc->natts; a++)
	{
		Expr	   *def = (Expr *) unfilled_default(rel, l, a);

		if (def == NULL)
			continue;
		defexprs[ndefaults] = ExecInitExpr(expression_planner(def), NULL);
		defmap[ndefaults++] = a - 1;
	}

	error_context_stack = &errcb;
	for (int row = 0; row < nrows; row++)
	{
		TupleTableSlot *slot;
		const int  *vals = pos + (size_t) row * l->ncols;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (slots[nbuffered] == NULL)
			slots[nbuffered] = MakeSingleTupleTableSlot(slotdesc, table_slot_callbacks(rel));
		slot = slots[nbuffered];
		ResetPerTupleExprContext(estate);
		old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
		ExecClearTuple(slot);
		memset(slot->tts_values, 0, sizeof(Datum) * desc->natts);
		memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);

		*line = row + 1;
		err.line_valid = true;
		for (int i = 0; i < l->ncols; i++)
		{
			int			m = l->cols[i].attnum - 1;
			char	   *s = vals[i] < 0 ? NULL : (char *) data + vals[i];

			err.attname = l->cols[i].attname;
			err.attval = s;
			slot->tts_values[m] = InputFunctionCall(&infunc[i], s, ioparam[i],
													TupleDescAttr(desc, m)->atttypmod);
			slot->tts_isnull[m] = (s == NULL);
		}
		err.attname = err.attval = NULL;
		for (int d = 0; d < ndefaults; d++)
			slot->tts_values[defmap[d]] = ExecEvalExpr(defexprs[d], econtext,
													   &slot->tts_isnull[defmap[d]]);
		ExecStoreVirtualTuple(slot);
		if (desc->constr)
			ExecConstraints(rri, slot, estate);
		ExecMaterializeSlot(slot);	/* out of the per-row memory, for the buffer */
		MemoryContextSwitchTo(old);

		if (++nbuffered == DIRECT_BUFFER_ROWS || row == nrows - 1 ||
			offset[row + 1] - offset[first_line - 1] >= DIRECT_BUFFER_BYTES)
		{
			flush_buffer(rri, estate, slots, nbuffered, first_line, bistate, &err);
			first_line = row + 2;
			nbuffered = 0;
		}
	}
	error_context_stack = errcb.previous;

	for (int i = 0; i < DIRECT_BUFFER_ROWS && slots[i]; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	FreeBulkInsertState(bistate);
	table_finish_bulk_insert(rel, 0);
	ExecCloseResultRelations(estate);	/* and the indexes */
	ExecCloseRangeTableRelations(estate);
	FreeExecutorState(estate);
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(cxt);
	return nrows;
}
