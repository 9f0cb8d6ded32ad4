/* alloc_count.c — the --wrap targets behind alloc_count.h. */
#include <stddef.h>

#include "alloc_count.h"

void	   *__real_malloc(size_t size);
void	   *__real_realloc(void *ptr, size_t size);
void	   *__real_calloc(size_t n, size_t size);
void	   *__wrap_malloc(size_t size);
void	   *__wrap_realloc(void *ptr, size_t size);
void	   *__wrap_calloc(size_t n, size_t size);

size_t		allocations;

void *
__wrap_malloc(size_t size)
{
	allocations++;
	return __real_malloc(size);
}

void *
__wrap_realloc(void *ptr, size_t size)
{
	allocations++;
	return __real_realloc(ptr, size);
}

void *
__wrap_calloc(size_t n, size_t size)
{
	allocations++;
	return __real_calloc(n, size);
}
