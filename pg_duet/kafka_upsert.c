/*
 * kafka_upsert.c — upsert mode of a consumer, as Kafka Connect's JDBC sink offers: rows are
 * INSERT … ON CONFLICT (key columns) DO UPDATE, and a tombstone (a key with no value) deletes its
 * key's row.
 *
 * A batch in upsert mode is COPYed, as in append mode and with the same isolation of bad
 * messages (kafka_ingest.c), into a staging table of the batch's columns plus the message's
 * place in the batch and whether it is a tombstone; one statement then takes the staged rows out
 * again, keeps the latest message of each key (ON CONFLICT cannot touch a row twice in one
 * statement, and the latest by offset must win), deletes the keys whose latest message is a
 * tombstone and upserts the others. It runs as the consumer's owner, in the same
 * subtransaction as the COPY, so a row the target rejects (a CHECK, a trigger) is isolated like
 * any other bad row, and in the batch's transaction with the offsets: exactly once still holds,
 * and replaying the same messages gives the same table.
 *
 * The staging table is a temporary table of the session that ingests (the worker, or the caller
 * of duet_kafka_replay), created before the owner's restricted section (which may not create
 * one), granted to the owner, and dropped at the end of the batch: no state outlives a batch.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "kafka_ingest_int.h"

#define STAGE_NAME	"duet_kafka_stage"

/* mode, key_columns, key_source as given (to duet_kafka_consume or duet_kafka_alter) → t. */
void
duet_kafka_upsert_parse(DuetKafkaTarget *t, const char *mode, Datum key_columns, const char *key_source)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n = 0;

	t->nkeys = 0;
	t->key_columns = NULL;
	t->keys_from_key = true;
	if (strcmp(mode, "append") != 0 && strcmp(mode, "upsert") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown Kafka consumer mode \"%s\"", mode),
				 errhint("Valid modes are append and upsert.")));
	if (strcmp(key_source, "key") != 0 && strcmp(key_source, "value") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown Kafka key source \"%s\"", key_source),
				 errhint("The key columns come from the message's key (key) or from its value (value).")));
	if (key_columns != (Datum) 0)
		deconstruct_array(DatumGetArrayTypeP(key_columns), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
	if (strcmp(mode, "append") == 0)
	{
		if (n > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key_columns are for mode upsert"),
					 errhint("Pass mode => 'upsert' with the key columns.")));
		return;
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mode upsert needs key_columns"),
				 errhint("Name the target's columns of a unique index, for example key_columns => '{id}'.")));
	t->nkeys = n;
	t->key_columns = palloc(sizeof(char *) * n);
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key_columns must not contain nulls")));
		t->key_columns[i] = TextDatumGetCString(elems[i]);
	}
	t->keys_from_key = strcmp(key_source, "key") == 0;
}

/* Reads the consumer's upsert settings into t (SPI connected, SQL current). */
void
duet_kafka_upsert_load(DuetKafkaTarget *t, int32 consumer_id)
{
	bool		isnull;
	Datum		keys;
	MemoryContext cxt = CurrentMemoryContext;	/* SPI leaves its own current */

	if (SPI_execute_with_args("SELECT c.mode, c.key_columns, c.key_source FROM duet.kafka_consumers c "
							  "WHERE c.id OPERATOR(pg_catalog.=) $1",
							  1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(consumer_id)},
							  NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the upsert settings of Kafka consumer %d", consumer_id);
	MemoryContextSwitchTo(cxt);
	keys = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	duet_kafka_upsert_parse(t, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
							isnull ? (Datum) 0 : keys,
							SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));
}

/* The unique index ON CONFLICT (key columns) infers, or InvalidOid. */
static Oid
arbiter_index(Relation rel, DuetKafkaTarget *t)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index ind = idx->rd_index;
		bool		match = ind->indisunique && ind->indimmediate && ind->indisvalid &&
			ind->indnkeyatts == t->nkeys && RelationGetIndexPredicate(idx) == NIL &&
			RelationGetIndexExpressions(idx) == NIL;

		for (int k = 0; match && k < t->nkeys; k++)
		{
			bool		has = false;

			for (int j = 0; j < ind->indnkeyatts; j++)
				has |= ind->indkey.values[j] == attnameAttNum(rel, t->key_columns[k], false);
			match = has;
		}
		index_close(idx, AccessShareLock);
		if (match)
		{
			found = lfirst_oid(lc);
			break;
		}
	}
	list_free(indexes);
	return found;
}

/* Checks the target can take upserts by the owner: a unique index on the key columns, privileges. */
void
duet_kafka_upsert_check(DuetKafkaTarget *t, Relation rel)
{
	if (t->nkeys == 0)
		return;
	if (!OidIsValid(arbiter_index(rel, t)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("table %s has no unique index on the key columns", RelationGetRelationName(rel)),
				 errdetail("Upserts are INSERT … ON CONFLICT on the key columns, which needs a unique index or constraint on exactly them, not deferrable and not partial."),
				 errhint("For example: ALTER TABLE %s ADD PRIMARY KEY (%s);", RelationGetRelationName(rel),
						 t->key_columns[0])));
	if (pg_class_aclcheck(RelationGetRelid(rel), t->owner, ACL_INSERT | ACL_UPDATE | ACL_DELETE | ACL_SELECT) !=
		ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", RelationGetRelationName(rel)),
				 errdetail("A consumer in upsert mode needs SELECT, INSERT, UPDATE and DELETE on its target.")));
}

/* "a OPERATOR(nsp.=) b" with the equality operator of the arbiter index's key column att. */
static void
append_key_equal(StringInfo sql, Relation rel, Oid index, AttrNumber att, const char *a, const char *b)
{
	Relation	idx = index_open(index, AccessShareLock);
	Oid			opno = InvalidOid;

	for (int j = 0; j < idx->rd_index->indnkeyatts; j++)
		if (idx->rd_index->indkey.values[j] == att)
			opno = get_opfamily_member(idx->rd_opfamily[j], idx->rd_opcintype[j], idx->rd_opcintype[j],
									   BTEqualStrategyNumber);
	index_close(idx, AccessShareLock);
	if (!OidIsValid(opno))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the unique index on the key columns of %s is not a btree index",
						RelationGetRelationName(rel))));
	{
		HeapTuple	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
		Form_pg_operator op;

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for operator %u", opno);
		op = (Form_pg_operator) GETSTRUCT(tup);
		appendStringInfo(sql, "%s OPERATOR(%s.%s) %s", a,
						 quote_identifier(get_namespace_name(op->oprnamespace)), NameStr(op->oprname), b);
		ReleaseSysCache(tup);
	}
}

/* COLLATE schema.name of a collation, qualified whatever the search_path. */
static void
append_collation(StringInfo sql, Oid coll)
{
	HeapTuple	tup = SearchSysCache1(COLLOID, ObjectIdGetDatum(coll));
	Form_pg_collation c;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for collation %u", coll);
	c = (Form_pg_collation) GETSTRUCT(tup);
	appendStringInfo(sql, " COLLATE %s.%s", quote_identifier(get_namespace_name(c->collnamespace)),
					 quote_identifier(NameStr(c->collname)));
	ReleaseSysCache(tup);
}

/*
 * Creates the batch's staging table (as the current user, SPI connected), granted to the owner;
 * sets l->stage and l->merge, the statement that applies the staged rows to the target.
 */
void
duet_kafka_upsert_begin(DuetKafkaTarget *t, Layout *l, Relation rel)
{
	StringInfoData def;
	StringInfoData sql;
	StringInfoData keys;
	StringInfoData cols;
	StringInfoData set;
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			index = arbiter_index(rel, t);
	bool		first = true;
	MemoryContext cxt = CurrentMemoryContext;	/* SPI leaves its own current */

	if (!OidIsValid(index))
		duet_kafka_upsert_check(t, rel);	/* raises the error */
	initStringInfo(&def);
	initStringInfo(&cols);
	initStringInfo(&set);
	for (int i = 0; i < l->ncols; i++)
	{
		Form_pg_attribute att;
		bool		is_key = false;

		if (l->cols[i].kind == COL_SEQ || l->cols[i].kind == COL_DELETE)
			continue;
		att = TupleDescAttr(desc, l->cols[i].attnum - 1);
		appendStringInfo(&def, "%s%s %s", i > 0 ? ", " : "", quote_identifier(l->cols[i].attname),
						 format_type_extended(att->atttypid, att->atttypmod,
											  FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY));
		if (OidIsValid(att->attcollation))
			append_collation(&def, att->attcollation);
		appendStringInfo(&cols, "%s%s", i > 0 ? ", " : "", quote_identifier(l->cols[i].attname));
		for (int k = 0; k < t->nkeys; k++)
			is_key |= strcmp(t->key_columns[k], l->cols[i].attname) == 0;
		if (!is_key)
		{
			appendStringInfo(&set, "%s%s = EXCLUDED.%s", first ? "" : ", ",
							 quote_identifier(l->cols[i].attname), quote_identifier(l->cols[i].attname));
			first = false;
		}
	}
	appendStringInfoString(&def, ", _duet_seq pg_catalog.int4, _duet_delete pg_catalog.bool");

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TEMPORARY TABLE " STAGE_NAME " (%s)", def.data);
	if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not create the Kafka staging table");
	MemoryContextSwitchTo(cxt);
	l->stage = RangeVarGetRelid(makeRangeVar("pg_temp", STAGE_NAME, -1), NoLock, false);
	resetStringInfo(&sql);
	appendStringInfo(&sql, "GRANT SELECT, INSERT, DELETE ON pg_temp." STAGE_NAME " TO %s",
					 quote_identifier(GetUserNameFromId(t->owner, false)));
	if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not grant the Kafka staging table");
	MemoryContextSwitchTo(cxt);

	/*
	 * The merge: the staged rows (taken out, so the table is empty for the next slice), the
	 * latest of each key, deletes for tombstones, upserts for the rest. A key is deleted or
	 * upserted, never both, so the two parts do not meet.
	 */
	initStringInfo(&keys);
	for (int k = 0; k < t->nkeys; k++)
		appendStringInfo(&keys, "%s%s", k > 0 ? ", " : "", quote_identifier(t->key_columns[k]));
	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH staged AS (DELETE FROM pg_temp." STAGE_NAME " RETURNING *), "
					 "latest AS (SELECT DISTINCT ON (%s) * FROM staged ORDER BY %s, _duet_seq DESC), "
					 "deleted AS (DELETE FROM %s AS t USING latest AS s WHERE s._duet_delete",
					 keys.data, keys.data,
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)));
	for (int k = 0; k < t->nkeys; k++)
	{
		char	   *q = (char *) quote_identifier(t->key_columns[k]);

		appendStringInfoString(&sql, " AND ");
		append_key_equal(&sql, rel, index, attnameAttNum(rel, t->key_columns[k], false),
						 psprintf("t.%s", q), psprintf("s.%s", q));
	}
	appendStringInfo(&sql, ") INSERT INTO %s AS t (%s) SELECT %s FROM latest WHERE NOT _duet_delete "
					 "ON CONFLICT (%s) DO %s%s",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)),
					 cols.data, cols.data, keys.data, first ? "NOTHING" : "UPDATE SET ", set.data);
	l->merge = sql.data;
}

/* Drops the batch's staging table (SPI connected). */
void
duet_kafka_upsert_end(Layout *l)
{
	MemoryContext cxt = CurrentMemoryContext;	/* SPI leaves its own current */

	if (SPI_execute("DROP TABLE pg_temp." STAGE_NAME, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not drop the Kafka staging table");
	MemoryContextSwitchTo(cxt);
	l->stage = InvalidOid;
}

/* As the owner, after the COPY into the staging table: applies it to the target. */
void
duet_kafka_upsert_apply(Layout *l)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(l->merge, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not apply the staged Kafka rows");
	SPI_finish();
}
