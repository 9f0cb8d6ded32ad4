/*
 * kafka_outbox.c — the outbox publisher: sends committed duet.kafka_outbox rows to Kafka.
 *
 * duet_kafka_publish() (SQL) inserts into duet.kafka_outbox inside the caller's transaction, so a
 * row exists iff that transaction committed; this worker reads only committed rows, produces them
 * in id order with an idempotent producer (no duplicates or reordering from retries within a
 * session), and marks a row sent once its delivery is acknowledged; a row not acknowledged within
 * a minute (broker down, unknown topic) stays unsent and is produced again in a later round. A crash between acknowledgement and marking re-sends those
 * rows: each message carries a duet-outbox-id header so readers can drop such repeats.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "kafka.h"
#include "pg_duet.h"
#include "privileged.h"
#include "worker.h"

#define OUTBOX_BATCH		1000
#define OUTBOX_RETRY_MS		1000	/* before producing rows again that were not acknowledged */
#define OUTBOX_PRUNE_MS		60000

typedef struct OutboxRow
{
	int64		id;
	char	   *topic;
	char	   *key;
	char	   *value;
	Jsonb	   *headers;
	bool		delivered;
	int32		partition;
	int64		offset;
	rd_kafka_resp_err_t err;
} OutboxRow;

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	OutboxRow  *row = m->_private;

	row->err = m->err;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		row->delivered = true;
		row->partition = m->partition;
		row->offset = m->offset;
	}
}

/* duet.outbox_properties: "name=value;name=value". */
static bool
apply_properties(rd_kafka_conf_t *conf, const char *spec, char *errbuf, size_t errlen)
{
	char	   *copy = pstrdup(spec);
	char	   *save = NULL;

	for (char *item = strtok_r(copy, ";", &save); item; item = strtok_r(NULL, ";", &save))
	{
		char	   *eq = strchr(item, '=');

		while (*item == ' ')
			item++;
		if (*item == '\0')
			continue;
		if (eq == NULL)
		{
			snprintf(errbuf, errlen, "duet.outbox_properties: \"%s\" is not name=value", item);
			return false;
		}
		*eq = '\0';
		if (!duet_kafka_property_allowed(item, true) ||
			!duet_kafka_conf_set(conf, item, eq + 1, errbuf, errlen))
		{
			if (!duet_kafka_property_allowed(item, true))
				snprintf(errbuf, errlen, "duet.outbox_properties: \"%s\" is set by pg_duet", item);
			return false;
		}
	}
	return true;
}

static rd_kafka_t *
producer_new(void)
{
	char		errbuf[512];
	rd_kafka_conf_t *conf = duet_kafka_conf_new(duet_outbox_brokers, NULL, errbuf, sizeof(errbuf));
	rd_kafka_t *rk;

	if (conf == NULL ||
		!duet_kafka_conf_set(conf, "enable.idempotence", "true", errbuf, sizeof(errbuf)) ||
		!duet_kafka_conf_set(conf, "message.timeout.ms", "60000", errbuf, sizeof(errbuf)) ||
		!duet_kafka_conf_set(conf, "client.id", "pg_duet-outbox", errbuf, sizeof(errbuf)) ||
		!apply_properties(conf, duet_outbox_properties ? duet_outbox_properties : "", errbuf, sizeof(errbuf)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid outbox producer configuration: %s", errbuf)));
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, sizeof(errbuf));
	if (rk == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not create the outbox producer: %s", errbuf)));
	return rk;
}

static int
fetch_pending(OutboxRow *rows)
{
	int			n;
	MemoryContext outer = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute("SELECT id, topic, key, value, headers FROM duet.kafka_outbox "
					"WHERE sent_at IS NULL ORDER BY id LIMIT " CppAsString2(OUTBOX_BATCH),
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read duet.kafka_outbox");
	n = (int) SPI_processed;
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		h;
		MemoryContext old = MemoryContextSwitchTo(outer);

		memset(&rows[i], 0, sizeof(OutboxRow));
		rows[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		rows[i].topic = SPI_getvalue(tup, desc, 2);
		rows[i].key = SPI_getvalue(tup, desc, 3);
		rows[i].value = SPI_getvalue(tup, desc, 4);
		h = SPI_getbinval(tup, desc, 5, &isnull);
		rows[i].headers = isnull ? NULL : DatumGetJsonbPCopy(h);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return n;
}

static rd_kafka_headers_t *
make_headers(OutboxRow *row)
{
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
	char		id[32];

	snprintf(id, sizeof(id), INT64_FORMAT, row->id);
	rd_kafka_header_add(hdrs, "duet-outbox-id", -1, id, -1);
	if (row->headers && JB_ROOT_IS_OBJECT(row->headers))
	{
		JsonbIterator *it = JsonbIteratorInit(&row->headers->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *name = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				name = pnstrdup(v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE && v.type == jbvString)
				rd_kafka_header_add(hdrs, name, -1, v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE && v.type == jbvNull)
				rd_kafka_header_add(hdrs, name, -1, NULL, 0);
		}
	}
	return hdrs;
}

static void
mark_sent(OutboxRow *rows, int n)
{
	static SPIPlanPtr plan;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	duet_spi_plan(&plan, "UPDATE duet.kafka_outbox SET sent_at = pg_catalog.now(), partition = $2, \"offset\" = $3 "
				  "WHERE id OPERATOR(pg_catalog.=) $1", 3, (Oid[]) {INT8OID, INT4OID, INT8OID});
	for (int i = 0; i < n; i++)
		if (rows[i].delivered)
			SPI_execute_plan(plan, (Datum[]) {Int64GetDatum(rows[i].id), Int32GetDatum(rows[i].partition),
							 Int64GetDatum(rows[i].offset)}, NULL, false, 0);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static void
prune_sent(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	SPI_execute("DELETE FROM duet.kafka_outbox WHERE sent_at OPERATOR(pg_catalog.<) "
			"(pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => 1))", false, 0);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

void
duet_kafka_publisher_main(Datum arg)
{
	DuetKafkaWorkerArgs args;
	rd_kafka_t *rk;
	OutboxRow  *rows;
	MemoryContext loopcxt;
	char	   *brokers;
	TimestampTz last_prune = 0;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	/* SIGTERM is die(): rows not yet marked sent are sent again by the next publisher. */
	duet_worker_init(DUET_WORKER_DIE);
	duet_worker_connect(NULL, args.dboid);
	pgstat_report_appname("pg_duet kafka outbox publisher");
	duet_kafka_waiter_register(DUET_WAIT_OUTBOX);	/* woken when new outbox rows commit */
	brokers = MemoryContextStrdup(TopMemoryContext, duet_outbox_brokers);
	rk = producer_new();
	rows = MemoryContextAlloc(TopMemoryContext, sizeof(OutboxRow) * OUTBOX_BATCH);
	loopcxt = duet_worker_loop_context("duet outbox");

	for (;;)
	{
		int			n;
		int			sent = 0;
		bool		reloaded;

		(void) duet_worker_loop(loopcxt, &reloaded);
		if (reloaded && strcmp(brokers, duet_outbox_brokers) != 0)
			break;				/* the supervisor starts a publisher for the new brokers */
		pgstat_report_activity(STATE_RUNNING, "reading duet.kafka_outbox");
		n = fetch_pending(rows);
		for (int i = 0; i < n; i++)
		{
			for (;;)
			{
				rd_kafka_resp_err_t err = rd_kafka_producev(rk,
															RD_KAFKA_V_TOPIC(rows[i].topic),
															RD_KAFKA_V_KEY(rows[i].key, rows[i].key ? strlen(rows[i].key) : 0),
															RD_KAFKA_V_VALUE(rows[i].value, strlen(rows[i].value)),
															RD_KAFKA_V_HEADERS(make_headers(&rows[i])),
															RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
															RD_KAFKA_V_OPAQUE(&rows[i]),
															RD_KAFKA_V_END);

				if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
					break;
				if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
					ereport(ERROR,
							(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
							 errmsg("could not queue outbox message %lld: %s",
									(long long) rows[i].id, rd_kafka_err2str(err))));
				rd_kafka_poll(rk, 100);
				CHECK_FOR_INTERRUPTS();
			}
		}
		/* Wait for every acknowledgement or timeout, staying responsive. */
		pgstat_report_activity(STATE_RUNNING, "waiting for Kafka acknowledgements");
		while (rd_kafka_outq_len(rk) > 0)
		{
			rd_kafka_flush(rk, 500);
			CHECK_FOR_INTERRUPTS();	/* unmarked rows are sent again by the next publisher */
		}
		for (int i = 0; i < n; i++)
		{
			if (rows[i].delivered)
				sent++;
			else
				ereport(LOG,
						(errmsg("outbox message %lld not delivered: %s", (long long) rows[i].id,
								rd_kafka_err2str(rows[i].err))));
		}
		if (sent > 0)
			mark_sent(rows, n);
		if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			/* An idempotent producer that lost messages must be replaced, not reused. */
			rd_kafka_destroy(rk);
			rk = producer_new();
		}
		if (TimestampDifferenceExceeds(last_prune, GetCurrentTimestamp(), OUTBOX_PRUNE_MS))
		{
			prune_sent();
			last_prune = GetCurrentTimestamp();
		}
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
		/* Idle until an insert commits (kafka_wake.c); the poll interval is the fallback. */
		if (n < OUTBOX_BATCH)
			duet_worker_wait(sent < n ? OUTBOX_RETRY_MS : duet_kafka_poll_ms);
	}
	rd_kafka_destroy(rk);
	proc_exit(0);
}
