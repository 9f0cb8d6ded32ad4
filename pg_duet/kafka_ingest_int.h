/*
 * kafka_ingest_int.h — internals shared by the files of the Kafka ingest path:
 *
 *   kafka_layout.c  the COPY column list of a target table (which column takes which part of a
 *                   message), the format names, the target check
 *   kafka_render.c  one message as one line of COPY input, in named steps
 *   kafka_ingest.c  a batch through COPY, bad rows isolated and set aside
 *   kafka_direct.c  the same for a plain table, without COPY's text round trip
 *   kafka_upsert.c  upsert mode: the staging table and the statement that merges it
 *
 * The public entry points are in kafka.h. Not used outside these files.
 */
#ifndef DUET_KAFKA_INGEST_INT_H
#define DUET_KAFKA_INGEST_INT_H

#include "lib/stringinfo.h"
#include "utils/relcache.h"

#include "kafka.h"

typedef enum ColKind
{
	COL_FIELD,					/* json: the value of a key */
	COL_VALUE,					/* jsonb/text: the whole message */
	COL_TOPIC,
	COL_PARTITION,
	COL_OFFSET,
	COL_TIMESTAMP,
	COL_KEY,
	COL_HEADERS,
	COL_KEYFIELD,				/* upsert, key_source 'key': a key column from the message key */
	COL_SEQ,					/* upsert: the message's place in the batch (staging only) */
	COL_DELETE					/* upsert: whether it is a tombstone (staging only) */
} ColKind;

typedef struct Col
{
	char	   *attname;
	AttrNumber	attnum;
	ColKind		kind;
	char	   *jsonkey;		/* COL_FIELD */
	int			jsonkeylen;
} Col;

/* The COPY column list of this batch, derived from the target's columns and the format. */
typedef struct Layout
{
	int			ncols;
	Col		   *cols;
	int			ncsv;			/* csv: leading columns filled by the message's own fields */
	bool		tombstone_ok;	/* upsert: a tombstone can be staged (its key columns need no value) */
	int			nkeyfields;		/* columns of kind COL_KEYFIELD */
	Oid			stage;			/* upsert: the batch's staging table, while it exists */
	char	   *merge;			/* upsert: the statement applying the staged rows */
} Layout;

/* kafka_layout.c: the layout of a batch for target t, whose table rel is open. */
extern Layout *duet_kafka_build_layout(DuetKafkaTarget *t, Relation rel);

/*
 * kafka_render.c: appends message m to buf as one COPY line of layout l, or with pos (l->ncols
 * entries) as its values, each NUL-terminated at buf->data + pos[column] (-1: NULL); on a message
 * that cannot be rendered returns the dead-letter error (and *detail, or NULL) and leaves buf as
 * it was (pos undefined).
 */
extern const char *duet_kafka_render_message(DuetKafkaTarget *t, Layout *l, rd_kafka_message_t *m,
											 int seq, StringInfo buf, int *pos, char **detail);
extern void duet_kafka_render_copy_line(StringInfo buf, const Layout *l, const char *data,
										const int *pos, int maxlen);

/* kafka_direct.c: rows into a plain table without COPY, where COPY would do no more */
extern bool duet_kafka_direct_fits(DuetKafkaTarget *t, Layout *l, Relation rel);
extern uint64 duet_kafka_direct_load(Relation rel, List *rtable, const Layout *l, const char *data,
									 const int *pos, const size_t *offset, int nrows, uint64 *line);

/*
 * A json field's value as found in a message: v NULL for SQL NULL or an absent key, else len
 * bytes at v (in the message itself where nothing had to be de-escaped; not NUL-terminated).
 */
typedef struct FieldValue
{
	const char *v;
	int			len;
} FieldValue;

/*
 * kafka_json_flat.c: a flat object's values without PostgreSQL's JSON parser, when it can; the
 * layout's column of kind for a key, searched from column from on (-1: none).
 */
extern int	duet_kafka_column_of(const Layout *l, ColKind kind, const char *k, int len, int from);
extern bool duet_kafka_json_flat(const Layout *l, ColKind kind, const char *p, int len, FieldValue *vals);

/* kafka_upsert.c */
extern void duet_kafka_upsert_check(DuetKafkaTarget *t, Relation rel);
extern void duet_kafka_upsert_begin(DuetKafkaTarget *t, Layout *l, Relation rel);
extern void duet_kafka_upsert_apply(Layout *l);
extern void duet_kafka_upsert_end(Layout *l);

#endif							/* DUET_KAFKA_INGEST_INT_H */
