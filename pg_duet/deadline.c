/*
 * deadline.c — bounding work inside a statement (a generated query, a rule's query) with
 * statement_timeout's own timer: armed for the work, or left alone when the statement's own
 * deadline comes sooner, and put back afterwards. Cancellation then is PostgreSQL's usual
 * "canceling statement due to statement timeout", with CHECK_FOR_INTERRUPTS wherever it waits.
 */
#include "postgres.h"

#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "pg_duet.h"

bool
duet_deadline_arm(int ms, TimestampTz *previous)
{
	TimestampTz ours = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	*previous = get_timeout_active(STATEMENT_TIMEOUT) ? get_timeout_finish_time(STATEMENT_TIMEOUT) : 0;
	if (*previous != 0 && *previous <= ours)
		return false;
	enable_timeout_at(STATEMENT_TIMEOUT, ours);	/* also clears the fired indicator */
	return true;
}

void
duet_deadline_disarm(TimestampTz previous)
{
	if (previous != 0)
		enable_timeout_at(STATEMENT_TIMEOUT, previous);
	else
		disable_timeout(STATEMENT_TIMEOUT, false);
}

bool
duet_deadline_fired(void)
{
	return get_timeout_indicator(STATEMENT_TIMEOUT, false);
}
