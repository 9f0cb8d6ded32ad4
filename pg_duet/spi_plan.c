/*
 * spi_plan.c — a statement that runs again and again, prepared once per process.
 *
 * A worker's statements on the extension's own tables (a Kafka batch's offsets, the config
 * lookup, a rule's alerts) are fixed, fully qualified text with parameters: planning them on
 * every call cost a pool worker ~2.5% of its time in a profile of the ingest. The plan is kept
 * (SPI_keepplan) and the plan cache replans it when what it depends on changes. It holds no
 * value of any call, so one tenant's work leaves nothing in it for another's.
 */
#include "postgres.h"

#include "executor/spi.h"

#include "pg_duet.h"

SPIPlanPtr
duet_spi_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}
