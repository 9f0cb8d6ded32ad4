/*
 * kafka_layout.c — which column of the target table takes which part of a Kafka message: the
 * COPY column list of a batch (json keys, the whole value, csv fields, metadata columns such as
 * _topic and _offset), derived from the table's columns, the format and column_map. Also the
 * format names and the check duet_kafka_consume runs on a new target.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/catalog.h"
#include "parser/parse_relation.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

#include "kafka_ingest_int.h"

static const struct
{
	const char *name;
	ColKind		kind;
}			meta_columns[] = {
	{"_topic", COL_TOPIC}, {"_partition", COL_PARTITION}, {"_offset", COL_OFFSET},
	{"_timestamp", COL_TIMESTAMP}, {"_key", COL_KEY}, {"_headers", COL_HEADERS},
};

DuetKafkaFormat
duet_kafka_format_parse(const char *name)
{
	if (strcmp(name, "json") == 0)
		return DUET_FORMAT_JSON;
	if (strcmp(name, "jsonb") == 0)
		return DUET_FORMAT_JSONB;
	if (strcmp(name, "csv") == 0)
		return DUET_FORMAT_CSV;
	if (strcmp(name, "text") == 0)
		return DUET_FORMAT_TEXT;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown Kafka message format \"%s\"", name),
			 errhint("Valid formats are json, jsonb, csv and text.")));
	return DUET_FORMAT_JSON;	/* keep compiler quiet */
}

static int
meta_kind(const char *attname)
{
	for (int i = 0; i < lengthof(meta_columns); i++)
		if (strcmp(attname, meta_columns[i].name) == 0)
			return meta_columns[i].kind;
	return -1;
}

/* column_map ->> key, or NULL. */
static char *
map_get(Jsonb *map, const char *key)
{
	JsonbValue	k,
			   *v;

	if (map == NULL || !JB_ROOT_IS_OBJECT(map))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&map->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* json: the key mapped onto column attname by column_map ({"key": "column"}), or NULL. */
static char *
map_key_for_column(Jsonb *map, const char *attname)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (map == NULL || !JB_ROOT_IS_OBJECT(map))
		return NULL;
	it = JsonbIteratorInit(&map->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type == jbvString &&
				 strlen(attname) == v.val.string.len &&
				 strncmp(attname, v.val.string.val, v.val.string.len) == 0)
			return key;
	}
	return NULL;
}

static bool
is_plain_column(Form_pg_attribute att)
{
	return !att->attisdropped && att->attgenerated == '\0' && att->attnum > 0;
}

/*
 * Upsert mode: the key columns and the staging table's two extra columns. With key_source 'key'
 * a key column takes the message key (the whole key for one key column whose key is not a JSON
 * object, else the key's field of the column's name) instead of a field of the value; with
 * 'value' it must be one of the columns the value fills. A tombstone can be staged when every
 * key column comes from the key.
 */
static void
upsert_layout(DuetKafkaTarget *t, Relation rel, Layout *l)
{
	TupleDesc	desc = RelationGetDescr(rel);

	l->tombstone_ok = true;
	for (int k = 0; k < t->nkeys; k++)
	{
		const char *name = t->key_columns[k];
		AttrNumber	attnum = attnameAttNum(rel, name, false);
		Col		   *c = NULL;

		if (attnum <= 0 || !is_plain_column(TupleDescAttr(desc, attnum - 1)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("key column \"%s\" is not a column of %s that a message can fill", name,
							RelationGetRelationName(rel))));
		for (int i = 0; i < l->ncols; i++)
			if (l->cols[i].attnum == attnum)
				c = &l->cols[i];
		if (t->keys_from_key && c && c->kind != COL_KEY &&
			!(c->kind == COL_FIELD && t->format == DUET_FORMAT_JSON))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key column \"%s\" is filled from the message value", name),
					 errhint("With key_source => 'key' the key columns come from the message key; use key_source => 'value', or another column for the value.")));
		if (!t->keys_from_key && c == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key column \"%s\" is not filled by the messages", name),
					 errhint("With key_source => 'value' every key column must be a field of the message (see column_map).")));
		if (t->keys_from_key && c == NULL)
		{
			c = &l->cols[l->ncols++];
			c->attname = pstrdup(name);
			c->attnum = attnum;
		}
		if (t->keys_from_key && c->kind != COL_KEY)
		{
			c->kind = COL_KEYFIELD;
			c->jsonkey = c->attname;
			c->jsonkeylen = strlen(c->attname);
			l->nkeyfields++;
		}
		if (c->kind != COL_KEYFIELD && c->kind != COL_KEY)
			l->tombstone_ok = false;
	}
	l->cols[l->ncols].attname = "_duet_seq";
	l->cols[l->ncols++].kind = COL_SEQ;
	l->cols[l->ncols].attname = "_duet_delete";
	l->cols[l->ncols++].kind = COL_DELETE;
}

Layout *
duet_kafka_build_layout(DuetKafkaTarget *t, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Layout	   *l = palloc0(sizeof(Layout));
	char	   *value_col = NULL;
	List	   *csv_cols = NIL;

	/* every column, plus a key column of the message key's, the sequence and the delete flag */
	l->cols = palloc0(sizeof(Col) * (desc->natts + t->nkeys + 3));
	if (t->format == DUET_FORMAT_JSONB || t->format == DUET_FORMAT_TEXT)
		value_col = map_get(t->column_map, "value");
	if (t->format == DUET_FORMAT_CSV && t->column_map && JB_ROOT_IS_ARRAY(t->column_map))
	{
		JsonbIterator *it = JsonbIteratorInit(&t->column_map->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			if (tok == WJB_ELEM && v.type == jbvString)
				csv_cols = lappend(csv_cols, pnstrdup(v.val.string.val, v.val.string.len));
	}

	/* Data columns first (csv fields are positional), metadata after. */
	if (csv_cols != NIL)
	{
		ListCell   *lc;

		foreach(lc, csv_cols)
		{
			char	   *name = lfirst(lc);
			AttrNumber	attnum = attnameAttNum(rel, name, false);

			if (attnum <= 0 || !is_plain_column(TupleDescAttr(desc, attnum - 1)))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("column_map names column \"%s\", which %s cannot fill", name,
								RelationGetRelationName(rel))));
			l->cols[l->ncols].attname = name;
			l->cols[l->ncols].attnum = attnum;
			l->cols[l->ncols++].kind = COL_FIELD;
		}
		l->ncsv = l->ncols;
	}
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		char	   *attname = pstrdup(NameStr(att->attname));
		bool		has_default = att->atthasdef || att->attidentity != '\0';
		Col		   *c = &l->cols[l->ncols];

		if (!is_plain_column(att) || meta_kind(attname) >= 0)
			continue;
		c->attname = attname;
		c->attnum = att->attnum;
		switch (t->format)
		{
			case DUET_FORMAT_JSON:
				c->jsonkey = map_key_for_column(t->column_map, attname);
				if (c->jsonkey == NULL && !has_default)
					c->jsonkey = attname;
				if (c->jsonkey == NULL)
					continue;
				c->jsonkeylen = strlen(c->jsonkey);
				c->kind = COL_FIELD;
				break;
			case DUET_FORMAT_JSONB:
			case DUET_FORMAT_TEXT:
				if (value_col ? strcmp(value_col, attname) != 0 : (has_default || l->ncols > 0))
					continue;
				c->kind = COL_VALUE;
				break;
			case DUET_FORMAT_CSV:
				if (csv_cols != NIL || has_default)
					continue;
				c->kind = COL_FIELD;
				l->ncsv++;
				break;
		}
		l->ncols++;
	}
	if (value_col && l->ncols == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column_map names value column \"%s\", which %s cannot fill", value_col,
						RelationGetRelationName(rel))));
	if (l->ncols == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("table %s has no column for the message", RelationGetRelationName(rel)),
				 errhint("Add a column without a default, or name one in column_map.")));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		int			kind = meta_kind(NameStr(att->attname));

		if (!is_plain_column(att) || kind < 0)
			continue;
		l->cols[l->ncols].attname = pstrdup(NameStr(att->attname));
		l->cols[l->ncols].attnum = att->attnum;
		l->cols[l->ncols++].kind = kind;
	}
	if (t->nkeys > 0)
		upsert_layout(t, rel, l);
	return l;
}

/* Checks, as the owner, that the target exists and can be filled; used by duet_kafka_consume. */
void
duet_kafka_target_check(DuetKafkaTarget *t)
{
	Relation	rel = table_open(t->relid, AccessShareLock);

	if ((rel->rd_rel->relkind != RELKIND_RELATION && rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE) ||
		IsSystemRelation(rel))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a user table", RelationGetRelationName(rel)),
				 errdetail("Kafka consumers write into ordinary or partitioned tables outside the system catalogs.")));
	(void) duet_kafka_build_layout(t, rel);
	duet_kafka_upsert_check(t, rel);
	table_close(rel, AccessShareLock);
}
