/*
 * kafka_wake.c — waking the Kafka workers when a change that concerns them commits.
 *
 * The supervisor of a database acts on duet.kafka_consumers (start, stop, restart consumer
 * workers) and the outbox publisher on new duet.kafka_outbox rows. Instead of polling, each waits
 * on its latch (kafka_launcher.c, kafka_outbox.c); the statement trigger below notes which of them
 * the writing transaction concerns, and when it commits (XACT_EVENT_COMMIT runs once the change is
 * visible to other snapshots) sets their latches (duet_kafka_wake, kafka_shmem.c). An aborted
 * transaction wakes no one. A PREPAREd transaction is committed by COMMIT PREPARED, possibly in
 * another session: the workers see it at their poll interval, their fallback.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"

#include "kafka.h"

static int	pending_wakes = 0;	/* DuetKafkaWaitFor bits this transaction's changes concern */
static bool callback_registered = false;

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (pending_wakes != 0)
				duet_kafka_wake(pending_wakes, MyDatabaseId);
			pending_wakes = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			pending_wakes = 0;
			break;
		default:
			break;
	}
}

PG_FUNCTION_INFO_V1(duet_kafka_changed_trigger);

/*
 * duet_kafka_changed_trigger('consumers' | 'outbox'): AFTER ... FOR EACH STATEMENT on
 * duet.kafka_consumers and duet.kafka_outbox; wakes the supervisor or the publisher of this
 * database at commit.
 */
Datum
duet_kafka_changed_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	const char *what;

	if (!CALLED_AS_TRIGGER(fcinfo) || td->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("duet_kafka_changed_trigger() must be called as a trigger with one argument")));
	what = td->tg_trigger->tgargs[0];
	if (strcmp(what, "consumers") == 0)
		pending_wakes |= DUET_WAIT_CONSUMERS;
	else if (strcmp(what, "outbox") == 0)
		pending_wakes |= DUET_WAIT_OUTBOX;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown argument \"%s\" of duet_kafka_changed_trigger()", what),
				 errhint("The argument is \"consumers\" or \"outbox\".")));
	if (!callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		callback_registered = true;
	}
	return PointerGetDatum(NULL);
}
