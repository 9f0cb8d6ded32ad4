/*
 * alloc_count.h — allocation counting for the calc unit tests. Test binaries are linked with
 * --wrap=malloc,--wrap=realloc,--wrap=calloc (mk/calc.mk), so every allocation the engine makes
 * passes through alloc_count.c and no hook is needed in the engine itself.
 */
#ifndef DUET_ALLOC_COUNT_H
#define DUET_ALLOC_COUNT_H

#include <stddef.h>

extern size_t allocations;		/* malloc, realloc and calloc calls so far */

#endif
