/*
 * change_epoch.h — validity tokens for per-backend caches of tenant and config tables.
 */
#ifndef DUET_CHANGE_EPOCH_H
#define DUET_CHANGE_EPOCH_H

typedef struct DuetCacheToken
{
	uint64		shared;			/* shared-memory epoch, bumped after each committed change */
	uint64		local;			/* this backend's generation: own writes, aborts, role changes */
} DuetCacheToken;

/* Called from _PG_init: requests the shared counter when preloaded. */
extern void duet_epoch_init(void);

/* Fills *token; false when caching is impossible (no shared memory): do not cache. */
extern bool duet_epoch_token(DuetCacheToken *token);

/* True when nothing changed since *token was taken (and caching is possible). */
extern bool duet_epoch_token_valid(const DuetCacheToken *token);

/* This transaction changed tenant/config tables: distrust caches now, publish at commit. */
extern void duet_epoch_mark_changed(void);

/* Relcache invalidations of relid (e.g. after COMMIT PREPARED) distrust caches too. */
extern void duet_epoch_watch_relation(Oid relid);

#endif							/* DUET_CHANGE_EPOCH_H */
