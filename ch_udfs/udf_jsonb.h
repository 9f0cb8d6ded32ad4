/*
 * udf_jsonb.h — a JSON object read as PostgreSQL's jsonb reads it and as duet_calc binds its
 * values (docs/calc.md, "Integers"): every number exactly from its text, not as jansson converts
 * it. Used by the dictionary mode and by calc's conformance runner, so both bind like duet_calc.
 */
#ifndef DUET_UDF_JSONB_H
#define DUET_UDF_JSONB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "duet_calc.h"

typedef struct udf_jsonb
{
	json_t	   *root;			/* the document; each number is its token's index into nums */
	duet_value *nums;			/* the numbers' values, in order of appearance */
	size_t		nnums;
	size_t		numcap;
	char	   *buf;			/* the text with each number replaced by its index (reused) */
	size_t		bufcap;
} udf_jsonb;

void		udf_jsonb_init(udf_jsonb *d);
/* Releases root, the values and the buffer; d can be parsed into again. */
void		udf_jsonb_free(udf_jsonb *d);

/*
 * Parses text (jansson for the structure and the strings) with every number read as jsonb does.
 * False — d->root NULL — for what jsonb_in rejects: invalid JSON, `\u0000` in a string, a number
 * PostgreSQL's numeric cannot hold ("value overflows numeric format": more than 16383 digits after
 * the point, 10^131072 or more, an exponent beyond ±1073741822). Out of memory is also false.
 */
bool		udf_jsonb_parse(udf_jsonb *d, const char *text, size_t len);

/*
 * The formula value of a parsed JSON value, as duet_calc binds a jsonb value: null → NULL, a
 * boolean, a string (pointing into d->root), a number. False for an array or an object (duet_calc:
 * a type error, 42804).
 */
bool		udf_jsonb_value(const udf_jsonb *d, const json_t *j, duet_value *out);

/*
 * One JSON number token (the whole text must be one, RFC 8259 grammar) as jsonb + duet_calc give
 * it: written without digits after the point once the exponent is applied (`7`, `1E2`, `1.5e1`,
 * `-0`) and within 64 bits → an exact integer; else the correctly rounded double (`7.0`, `1e-2`,
 * `9223372036854775808`), NULL beyond the doubles (`1e400`), 0 below them (`1e-400`). False when
 * the text is no JSON number or numeric cannot hold it (above).
 */
bool		udf_jsonb_number(const char *tok, size_t len, duet_value *out);

#endif							/* DUET_UDF_JSONB_H */
