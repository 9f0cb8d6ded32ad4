/*
 * arena.c — the compile-time arena: the parser's nodes and strings and the compiler's scratch
 * space, allocated in blocks and freed together once compilation ends. Its own file so that the
 * parser (which allocates) and the compiler (which owns and frees the arena) do not call into
 * each other: compile.c -> parser.c -> arena.c <- compile.c.
 */
#include <stddef.h>
#include <stdlib.h>

#include "calc_int.h"

struct arena_block
{
	struct arena_block *next;
	size_t		used,
				cap;
	max_align_t data[];
};

void *
arena_alloc(calc_arena *ar, size_t size)
{
	arena_block *b = ar->head;

	size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!b || b->cap - b->used < size)
	{
		size_t		cap = size > 16384 ? size : 16384;

		b = malloc(sizeof(arena_block) + cap);
		if (!b)
			return NULL;
		b->next = ar->head;
		b->used = 0;
		b->cap = cap;
		ar->head = b;
	}
	b->used += size;
	return (char *) b->data + b->used - size;
}

void
arena_free(calc_arena *ar)
{
	while (ar->head)
	{
		arena_block *next = ar->head->next;

		free(ar->head);
		ar->head = next;
	}
}
