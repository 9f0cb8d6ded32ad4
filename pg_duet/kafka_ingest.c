/*
 * kafka_ingest.c — one batch of Kafka messages into the target table, through COPY.
 *
 * Messages are rendered as COPY input (text format for json/jsonb/text, csv for csv; kafka_render.c,
 * in the column layout of kafka_layout.c) and loaded with BeginCopyFrom/CopyFrom, so the target's
 * defaults, constraints, indexes, row and statement triggers (with transition tables) and
 * partition routing all apply, with COPY's multi-insert speed. Every message is framed on its own,
 * so nothing a message holds reaches past its own line of the COPY stream. Where COPY would do no
 * more than input functions, defaults, constraints and indexes (a plain table without triggers),
 * the messages are rendered as their values instead and loaded by kafka_direct.c, which does
 * those same steps without COPY's text round trip and words its errors as COPY does.
 *
 * No message loses its batch: a message that cannot be rendered (invalid UTF-8, malformed JSON)
 * is set aside before COPY; a row that COPY rejects (type conversion, constraint, trigger) is
 * found from COPY's error context line, set aside, and the rows before it are loaded again —
 * each attempt in a subtransaction. An error that names no line (a statement trigger) is narrowed
 * by bisection. Deferred constraints (DEFERRABLE INITIALLY DEFERRED unique keys, foreign keys,
 * constraint triggers) are made immediate for the COPY: checked at its end, inside its
 * subtransaction, their violations are bisected to the offending messages like any other bad row.
 * Errors that are not about the data (permissions, a dropped table, shutdown) are re-thrown: the
 * batch is retried later rather than sent to the dead letters.
 *
 * In upsert mode the COPY fills a staging table and the same subtransaction merges it into the
 * target (kafka_upsert.c), so bad rows are isolated the same way.
 *
 * Runs inside the caller's transaction; COPY itself runs as the consumer's owner, restricted.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "commands/copy.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/rls.h"

#include "kafka_ingest_int.h"
#include "privileged.h"

/* ---- COPY with isolation of bad rows ---- */

/* COPY's data source: a slice of the rendered batch (the callback takes no argument). */
static const char *source_data;
static size_t source_pos;
static size_t source_end;

static int
source_read(void *outbuf, int minread, int maxread)
{
	size_t		n = Min((size_t) maxread, source_end - source_pos);

	memcpy(outbuf, source_data + source_pos, n);
	source_pos += n;
	return (int) n;
}

typedef struct Rendered
{
	StringInfoData data;
	int			n;				/* rendered messages */
	int		   *msgidx;			/* rendered → batch index */
	size_t	   *offset;			/* n + 1 byte offsets */
	int		   *lines;			/* n + 1 cumulative line counts */
	int		   *pos;			/* values form (kafka_direct.c): n × ncols value offsets; else NULL */
} Rendered;

/* Errors about one row's data; anything else is re-thrown so the batch is retried later. */
static bool
is_data_error(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_DATA_EXCEPTION:
		case ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION:
		case ERRCODE_RAISE_EXCEPTION:
		case ERRCODE_WITH_CHECK_OPTION_VIOLATION:
		case ERRCODE_TRIGGERED_ACTION_EXCEPTION:
			return true;
		default:
			return sqlerrcode == ERRCODE_DATATYPE_MISMATCH ||
				sqlerrcode == ERRCODE_BAD_COPY_FILE_FORMAT;
	}
}

/*
 * "COPY t, line N..." in the error context → N (1-based), or 0. COPY's is the last context line
 * (its callback is the outermost), so the last "COPY <relname>, line " counts: a table or a
 * function named "t, line 1" cannot point at another row.
 */
static uint64
error_line(ErrorData *edata, const char *relname)
{
	char	   *prefix = psprintf("COPY %s, line ", relname);
	const char *p;
	const char *last = NULL;

	if (edata->context == NULL)
		return 0;
	for (p = edata->context; (p = strstr(p, prefix)) != NULL; p++)
		last = p;
	return last ? strtoull(last + strlen(prefix), NULL, 10) : 0;
}

typedef struct CopyRun
{
	DuetKafkaTarget *t;
	Layout	   *l;
	Rendered   *r;
	int			s;				/* rendered messages [s, e) */
	int			e;
	uint64		processed;		/* out */
	uint64		line;			/* out, direct load: the slice's row an error struck (1-based), or 0 */
	const char *relname;		/* out: the table COPY names in its errors */
} CopyRun;

/* COPY of rendered messages [s, e) into the target (or the direct load), as the consumer's owner. */
static void
copy_as_owner(void *arg)
{
	CopyRun    *c = arg;
	Relation	rel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	List	   *attnames = NIL;
	List	   *options = NIL;
	CopyFromState cstate;

	/* upsert mode: COPY into the staging table, whose columns are the layout's, in order */
	rel = table_open(OidIsValid(c->l->stage) ? c->l->stage : c->t->relid, RowExclusiveLock);
	c->relname = pstrdup(RelationGetRelationName(rel));
	pstate = make_parsestate(NULL);
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	nsitem->p_rte->requiredPerms = ACL_INSERT;
	for (int i = 0; i < c->l->ncols; i++)
	{
		AttrNumber	attnum = OidIsValid(c->l->stage) ? i + 1 : c->l->cols[i].attnum;

		attnames = lappend(attnames, makeString(c->l->cols[i].attname));
		nsitem->p_rte->insertedCols = bms_add_member(nsitem->p_rte->insertedCols,
													 attnum - FirstLowInvalidHeapAttributeNumber);
	}
	ExecCheckRTPerms(pstate->p_rtable, true);
	if (check_enable_rls(c->t->relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("Kafka ingestion into \"%s\" is not supported with row-level security",
						RelationGetRelationName(rel))));
	if (c->t->format == DUET_FORMAT_CSV)
		options = list_make1(makeDefElem("format", (Node *) makeString("csv"), -1));

	/*
	 * SET CONSTRAINTS ALL IMMEDIATE: the checks of deferred constraints (unique, foreign key,
	 * constraint triggers) run at the end of this COPY, as the owner and inside this
	 * subtransaction, where a violation is a bad row like any other. Deferred past the restricted
	 * section they could not run at all ("cannot fire deferred trigger within security-restricted
	 * operation", which would fail the batch again and again), and at commit they could not be
	 * traced to a message.
	 */
	{
		ConstraintsSetStmt *stmt = makeNode(ConstraintsSetStmt);

		stmt->constraints = NIL;
		stmt->deferred = false;
		AfterTriggerSetState(stmt);
	}

	if (c->r->pos)
	{
		c->processed = duet_kafka_direct_load(rel, pstate->p_rtable, c->l, c->r->data.data,
											  c->r->pos + (size_t) c->s * c->l->ncols, c->r->offset + c->s,
											  c->e - c->s, &c->line);
		table_close(rel, NoLock);
		free_parsestate(pstate);
		return;
	}
	source_data = c->r->data.data;
	source_pos = c->r->offset[c->s];
	source_end = c->r->offset[c->e];
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, source_read, attnames, options);
	c->processed = CopyFrom(cstate);
	EndCopyFrom(cstate);
	table_close(rel, NoLock);
	free_parsestate(pstate);
	if (OidIsValid(c->l->stage))
		duet_kafka_upsert_apply(c->l);	/* the staged rows into the target, as the owner */
}

/* COPY rendered messages [s, e) in a subtransaction (c); returns the error, or NULL. */
static ErrorData *
run_copy(CopyRun *c)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile err = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		/*
		 * The target's defaults, constraints and triggers are the consumer owner's code: they
		 * run as that role, restricted like maintenance commands run as a table's owner.
		 */
		duet_run_privileged(c->t->owner, DUET_USER_SEARCH_PATH, copy_as_owner, c);

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return err;
}

/*
 * COPY rendered messages [s, e). On a data error returns false with *edata and *failed (the
 * rendered index COPY named, or -1); other errors are re-thrown.
 */
static bool
copy_slice(DuetKafkaTarget *t, Layout *l, Rendered *r, int s, int e, uint64 *processed,
		   ErrorData **edata, int *failed)
{
	CopyRun		c = {t, l, r, s, e, 0, 0, NULL};
	ErrorData  *err = run_copy(&c);
	uint64		line;

	*processed = c.processed;
	if (err == NULL)
		return true;
	if (!is_data_error(err->sqlerrcode))
		ReThrowError(err);
	*edata = err;
	*failed = -1;
	line = r->pos ? c.line : c.relname ? error_line(err, c.relname) : 0;
	if (line > 0)
	{
		/* Line → the message it belongs to (csv messages may span lines). */
		int			lo = s,
					hi = e - 1;
		uint64		base = r->lines[s];

		while (lo < hi)
		{
			int			mid = (lo + hi) / 2;

			if (r->lines[mid + 1] - base < line)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (r->lines[lo] - base < line && line <= r->lines[lo + 1] - base)
			*failed = lo;
	}
	return false;
}

/*
 * A rejected row's detail: the error's own detail, then its context with COPY's column and value
 * ("COPY events, column cost: \"lots\""). COPY's line number is left out: it counts lines of this
 * batch's COPY input, not messages (the dead letter has the offset).
 */
static char *
copy_error_detail(ErrorData *edata)
{
	StringInfoData s;

	initStringInfo(&s);
	if (edata->detail)
		appendStringInfoString(&s, edata->detail);
	if (edata->context)
	{
		char	   *ctx = pstrdup(edata->context);
		char	   *line = ctx;

		while (line && *line)
		{
			char	   *next = strchr(line, '\n');
			char	   *at;

			if (next)
				*next++ = '\0';
			if (s.len > 0)
				appendStringInfoChar(&s, '\n');
			if (strncmp(line, "COPY ", 5) == 0 && (at = strstr(line, ", line ")) != NULL)
			{
				char	   *rest = at + 7;

				while (isdigit((unsigned char) *rest))
					rest++;
				appendBinaryStringInfo(&s, line, at - line);
				appendStringInfoString(&s, rest);
			}
			else
				appendStringInfoString(&s, line);
			line = next;
		}
	}
	return s.len > 0 ? s.data : NULL;
}

static DuetKafkaDeadLetter *
dead_letter(int msgidx, const char *error, const char *detail)
{
	DuetKafkaDeadLetter *dl = palloc(sizeof(DuetKafkaDeadLetter));

	dl->msgidx = msgidx;
	dl->error = pstrdup(error);
	dl->detail = detail ? pstrdup(detail) : NULL;
	return dl;
}

/*
 * Loads msgs[0..n) into the target; returns the rows loaded and appends the messages set aside to
 * *dead_letters. Must run in a transaction with an active snapshot (and SPI connected, in upsert
 * mode: the staging table is created and dropped through it).
 */
uint64
duet_kafka_ingest(DuetKafkaTarget *t, rd_kafka_message_t **msgs, int n, List **dead_letters)
{
	Relation	rel;
	Layout	   *l;
	Rendered	r;
	uint64		total = 0;
	int			s,
				e;
	MemoryContext msgcxt;
	MemoryContext outer;

	/*
	 * RowExclusiveLock, held to the end of the transaction (COPY takes it anyway): no trigger,
	 * partition, column or default can be added between the layout and the load, so the way
	 * chosen for the batch stays the right one across every attempt of its isolation.
	 */
	rel = table_open(t->relid, RowExclusiveLock);
	l = duet_kafka_build_layout(t, rel);
	if (t->nkeys > 0)
		duet_kafka_upsert_begin(t, l, rel);
	r.pos = duet_kafka_direct_fits(t, l, rel) ?
		MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int) * (Size) l->ncols * (n + 1)) : NULL;
	ereport(DEBUG1,
			(errmsg_internal("Kafka batch of %d messages into \"%s\" by %s", n,
							 RelationGetRelationName(rel), r.pos ? "direct load" : "COPY")));
	table_close(rel, NoLock);

	/* the rendered batch is about the messages' size: one allocation instead of a dozen doublings */
	{
		Size		est = 1024;

		for (int i = 0; i < n; i++)
			est += msgs[i]->len + 16 * (l->ncols + 1);
		initStringInfo(&r.data);
		enlargeStringInfo(&r.data, (int) Min(est, (Size) (MaxAllocSize / 2)));
	}
	r.n = 0;
	r.msgidx = palloc(sizeof(int) * (n + 1));
	r.offset = palloc(sizeof(size_t) * (n + 1));
	r.lines = palloc(sizeof(int) * (n + 1));
	r.offset[0] = 0;
	r.lines[0] = 0;
	/*
	 * Each message's parse (field values, JSON lexer) lives in msgcxt, reset after it: the batch's
	 * memory is its rendered text only, not a fresh allocation per field that the batch's reset
	 * hands back to the kernel (page faults were a tenth of the ingest's profile).
	 */
	msgcxt = AllocSetContextCreate(CurrentMemoryContext, "duet kafka message", ALLOCSET_SMALL_SIZES);
	outer = CurrentMemoryContext;
	for (int i = 0; i < n; i++)
	{
		char	   *detail = NULL;
		int			before = r.data.len;
		const char *err;

		MemoryContextSwitchTo(msgcxt);
		err = duet_kafka_render_message(t, l, msgs[i], i, &r.data,
										r.pos ? r.pos + (size_t) r.n * l->ncols : NULL, &detail);
		MemoryContextSwitchTo(outer);
		if (err)
		{
			r.data.len = before;
			r.data.data[before] = '\0';
			*dead_letters = lappend(*dead_letters, dead_letter(i, err, detail));
			MemoryContextReset(msgcxt);
			continue;
		}
		MemoryContextReset(msgcxt);
		r.msgidx[r.n] = i;
		r.offset[r.n + 1] = r.data.len;
		r.lines[r.n + 1] = r.lines[r.n] + 1;
		if (t->format == DUET_FORMAT_CSV)
			for (int p = before; p < r.data.len - 1; p++)
				if (r.data.data[p] == '\n')
					r.lines[r.n + 1]++;
		r.n++;
	}
	MemoryContextDelete(msgcxt);

	/*
	 * Load [s, e); on a row error at k retry [s, k) then skip k; on an error with no row, halve the
	 * slice. Every message is either loaded once or set aside once.
	 */
	s = 0;
	e = r.n;
	while (s < r.n)
	{
		uint64		processed = 0;
		ErrorData  *edata = NULL;
		int			failed = -1;

		CHECK_FOR_INTERRUPTS();
		if (copy_slice(t, l, &r, s, e, &processed, &edata, &failed))
		{
			total += processed;
			s = e;
			e = r.n;
			continue;
		}
		if (failed < 0 && e - s > 1)
		{
			e = s + (e - s) / 2;
			continue;
		}
		if (failed < 0)
			failed = s;
		if (failed == s)
		{
			*dead_letters = lappend(*dead_letters,
									dead_letter(r.msgidx[s], edata->message, copy_error_detail(edata)));
			s++;
			e = r.n;
		}
		else
			e = failed;
		FreeErrorData(edata);
	}
	if (OidIsValid(l->stage))
		duet_kafka_upsert_end(l);
	return total;
}
