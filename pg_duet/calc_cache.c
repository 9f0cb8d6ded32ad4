/*
 * calc_cache.c — per-backend cache of compiled Duet formulas.
 *
 * Compiling is far costlier than evaluating, and the same few formulas recur across queries (a
 * dashboard's CTR, a rule's condition), so a backend keeps the last duet.calc_cache_size programs,
 * keyed by formula text plus the variable types they were compiled for. Call sites (calc_bind.c)
 * pin what they use, so evicting a program that a running query still evaluates only unlinks it;
 * the last unpin frees it. Programs come from the engine's malloc and go back through
 * duet_program_free; the bookkeeping lives in a memory context of its own.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "calc_pg.h"
#include "metrics.h"
#include "pg_duet.h"

int			pgcalc_cache_size = 256;
PgcalcCacheStats pgcalc_cache_stats;

static MemoryContext cache_cxt = NULL;
static PgcalcProgram **buckets = NULL;
static int	nbuckets = 0;
static dlist_head lru = DLIST_STATIC_INIT(lru);	/* most recently used first */
static duet_vm *backend_vm = NULL;

static void evict_to(int limit);

static void
cache_size_assign(int newval, void *extra)
{
	/* Shrinking takes effect at once, so SET frees memory rather than at the next miss. */
	if (cache_cxt != NULL)
		evict_to(newval);
}

/* _PG_init: settings of duet_calc(). */
void
duet_calc_init(void)
{
	DefineCustomIntVariable("duet.calc_cache_size",
							"Compiled formulas kept per backend for duet_calc().",
							"Each query compiles a formula at most once; this cache also spares "
							"the compile across queries. 0 disables it.",
							&pgcalc_cache_size,
							256, 0, 100000,
							PGC_USERSET,
							0,
							NULL, cache_size_assign, NULL);
}

duet_vm *
pgcalc_vm(void)
{
	if (backend_vm == NULL)
	{
		backend_vm = duet_vm_new();
		if (backend_vm == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not allocate the formula evaluator.")));
	}
	pgcalc_set_now(backend_vm);
	return backend_vm;
}

static void
cache_init(void)
{
	if (cache_cxt != NULL)
		return;
	cache_cxt = AllocSetContextCreate(TopMemoryContext, "duet calc cache",
									  ALLOCSET_SMALL_SIZES);
	nbuckets = 256;
	buckets = MemoryContextAllocZero(cache_cxt, nbuckets * sizeof(PgcalcProgram *));
}

static void
program_destroy(PgcalcProgram *prog)
{
	duet_program_free(prog->program);
	pfree(prog->key);
	pfree(prog);
}

static void
bucket_unlink(PgcalcProgram *prog)
{
	PgcalcProgram **link = &buckets[prog->hash & (nbuckets - 1)];

	while (*link != prog)
		link = &(*link)->bucket_next;
	*link = prog->bucket_next;
	prog->bucket_next = NULL;
}

/* Removes prog from the cache; frees it unless a call site still holds it. */
static void
cache_remove(PgcalcProgram *prog)
{
	bucket_unlink(prog);
	dlist_delete(&prog->lru_node);
	prog->cached = false;
	pgcalc_cache_stats.entries--;
	pgcalc_cache_stats.evictions++;
	if (prog->pins == 0)
		program_destroy(prog);
}

static void
evict_to(int limit)
{
	while (pgcalc_cache_stats.entries > limit && !dlist_is_empty(&lru))
		cache_remove(dlist_tail_element(PgcalcProgram, lru_node, &lru));
}

/* Doubles the bucket array when chains would grow past one entry on average. */
static void
maybe_grow(void)
{
	PgcalcProgram **old = buckets;
	int			oldn = nbuckets;

	if (pgcalc_cache_stats.entries < nbuckets || nbuckets >= (1 << 20))
		return;
	nbuckets *= 2;
	buckets = MemoryContextAllocZero(cache_cxt, nbuckets * sizeof(PgcalcProgram *));
	for (int i = 0; i < oldn; i++)
	{
		PgcalcProgram *p = old[i];

		while (p != NULL)
		{
			PgcalcProgram *next = p->bucket_next;
			PgcalcProgram **head = &buckets[p->hash & (nbuckets - 1)];

			p->bucket_next = *head;
			*head = p;
			p = next;
		}
	}
	pfree(old);
}

/* Compile-time types for the typed compile: the signature of the untyped program's variables. */
typedef struct SigTypes
{
	const PgcalcProgram *untyped;
	const char *sig;
	size_t		sig_len;
} SigTypes;

static duet_type
sig_var_type(void *arg, const char *name, size_t len)
{
	SigTypes   *st = arg;

	for (size_t i = 0; i < st->sig_len; i++)
	{
		const char *v = duet_program_var(st->untyped->program, i);

		if (strncmp(v, name, len) == 0 && v[len] == '\0')
		{
			return pgcalc_sig_type(st->sig[i]);
		}
	}
	return DUET_T_ANY;
}

PgcalcProgram *
pgcalc_program_get(const char *formula, size_t formula_len, const PgcalcProgram *untyped,
				   const char *sig, size_t sig_len)
{
	size_t		key_len = formula_len + 1 + sig_len;
	char	   *key;
	uint32		hash;
	PgcalcProgram *prog;
	duet_program *compiled;
	duet_compile_options opts;
	SigTypes	st;
	duet_error	err;
	uint64		metrics_stamp;

	cache_init();
	pgcalc_cache_stats.lookups++;

	key = MemoryContextAlloc(cache_cxt, key_len);
	memcpy(key, formula, formula_len);
	key[formula_len] = '\0';
	memcpy(key + formula_len + 1, sig, sig_len);
	hash = hash_bytes((const unsigned char *) key, (int) key_len);

	for (prog = buckets[hash & (nbuckets - 1)]; prog != NULL; prog = prog->bucket_next)
	{
		if (prog->hash == hash && prog->key_len == key_len &&
			memcmp(prog->key, key, key_len) == 0)
		{
			/* a metric it expanded may have changed since: compile it again */
			if (prog->metrics_stamp != 0 && prog->metrics_stamp != duet_metrics_load(false))
			{
				cache_remove(prog);
				break;
			}
			pfree(key);
			dlist_move_head(&lru, &prog->lru_node);
			prog->pins++;
			return prog;
		}
	}

	/* A miss: compile (with the variables' types when the binding knows them). */
	pgcalc_cache_stats.compiles++;
	memset(&opts, 0, sizeof(opts));
	if (sig_len > 0)
	{
		Assert(untyped != NULL && (size_t) untyped->nvars == sig_len);
		st.untyped = untyped;
		st.sig = sig;
		st.sig_len = sig_len;
		opts.var_type = sig_var_type;
		opts.var_type_arg = &st;
	}
	metrics_stamp = duet_metrics_load(false);
	duet_metrics_options(&opts);
	compiled = duet_compile(formula, formula_len, &opts, &err);
	if (compiled == NULL)
	{
		pfree(key);
		pgcalc_report(&err, false);
	}

	/* From here on nothing may raise before the program is owned by an entry. */
	prog = MemoryContextAllocExtended(cache_cxt, sizeof(PgcalcProgram), MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
	if (prog == NULL)
	{
		duet_program_free(compiled);
		pfree(key);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	prog->hash = hash;
	prog->key = key;
	prog->key_len = key_len;
	prog->program = compiled;
	prog->nvars = (int) duet_program_nvars(compiled);
	prog->result_type = duet_program_type(compiled);
	prog->metrics_stamp = duet_metrics_used() ? metrics_stamp : 0;
	prog->pins = 1;

	if (pgcalc_cache_size > 0)
	{
		PgcalcProgram **head;

		evict_to(pgcalc_cache_size - 1);
		maybe_grow();
		head = &buckets[hash & (nbuckets - 1)];
		prog->bucket_next = *head;
		*head = prog;
		dlist_push_head(&lru, &prog->lru_node);
		prog->cached = true;
		pgcalc_cache_stats.entries++;
	}
	return prog;
}

void
pgcalc_program_unpin(PgcalcProgram *prog)
{
	Assert(prog->pins > 0);
	if (--prog->pins == 0 && !prog->cached)
		program_destroy(prog);
}
