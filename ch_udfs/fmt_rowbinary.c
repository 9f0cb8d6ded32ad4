/*
 * fmt_rowbinary.c — ClickHouse RowBinary: little-endian fixed-width numbers, String as a LEB128
 * length and the bytes, Nullable as a 1-byte flag (1 = NULL, nothing follows) before the value.
 * A row cut short is an error; input may only end between rows.
 */
#include <math.h>
#include <string.h>

#include "udf.h"

static size_t
width_of(udf_base b)
{
	switch (b)
	{
		case UDF_FLOAT64:
		case UDF_INT64:
		case UDF_UINT64:
			return 8;
		case UDF_FLOAT32:
		case UDF_INT32:
		case UDF_UINT32:
		case UDF_DATETIME:
			return 4;
		case UDF_INT16:
		case UDF_UINT16:
		case UDF_DATE:
			return 2;
		case UDF_INT8:
		case UDF_UINT8:
		case UDF_BOOL:
			return 1;
		default:
			return 0;
	}
}

static inline uint64_t
le_bits(const unsigned char *b, size_t w)
{
	uint64_t	v = 0;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(&v, b, w);
#else
	for (size_t i = 0; i < w; i++)
		v |= (uint64_t) b[i] << (8 * i);
#endif
	return v;
}

static bool
decode_fixed(const udf_column *col, const unsigned char *b, duet_value *out, udf_row *row, udf_error *err)
{
	uint64_t	v = le_bits(b, width_of(col->type.base));
	double		d;

	switch (col->type.base)
	{
		case UDF_FLOAT64:
			memcpy(&d, &v, sizeof(d));
			break;
		case UDF_FLOAT32:
			{
				uint32_t	u = (uint32_t) v;
				float		f;

				memcpy(&f, &u, sizeof(f));
				d = f;
				break;
			}
		/* integers are exact (DUET_T_INT) */
		case UDF_INT8:
			*out = duet_int((int8_t) v);
			return true;
		case UDF_INT16:
			*out = duet_int((int16_t) v);
			return true;
		case UDF_INT32:
			*out = duet_int((int32_t) v);
			return true;
		case UDF_INT64:
			*out = duet_int((int64_t) v);
			return true;
		case UDF_UINT64:
			if (v > (uint64_t) INT64_MAX)
				return udf_fail(err, "row %llu: UInt64 value %llu in column %s is beyond the formula integers (2^63 - 1)",
								(unsigned long long) row->number, (unsigned long long) v, col->name);
			*out = duet_int((int64_t) v);
			return true;
		case UDF_DATE:
			*out = duet_date((int32_t) v);	/* UInt16 days since 1970-01-01 */
			return true;
		case UDF_DATETIME:
			*out = duet_timestamp((int64_t) v * 1000000);	/* UInt32 seconds since 1970 UTC */
			return true;
		case UDF_BOOL:
			if (v > 1)
				return udf_fail(err, "row %llu: invalid Bool byte %u in column %s",
								(unsigned long long) row->number, (unsigned) v, col->name);
			*out = duet_bool(v == 1);
			return true;
		default:
			/* UInt8, UInt16, UInt32 */
			*out = duet_int((int64_t) v);
			return true;
	}
	*out = isfinite(d) ? duet_number(d) : duet_null();
	return true;
}

static udf_read_status
rb_read_row(udf_in *in, const udf_column *cols, size_t ncols, udf_row *row, udf_error *err)
{
	bool		has_strings = false;

	udf_read_status st = udf_row_begin(in, row, err);

	if (st != UDF_ROW)
		return st;
	for (size_t i = 0; i < ncols; i++)
	{
		const udf_column *col = &cols[i];
		size_t		w;

		row->is_null[i] = false;
		if (col->type.nullable)
		{
			int			flag = udf_in_get(in);

			if (flag < 0)
				return udf_row_truncated(in, row, "RowBinary", i, ncols, err);
			if (flag > 1)
				return udf_fail(err, "row %llu: invalid Nullable flag %d in column %s",
								(unsigned long long) row->number, flag, col->name), UDF_FAIL;
			if (flag == 1)
			{
				row->is_null[i] = true;
				row->vals[i] = duet_null();
				continue;
			}
		}
		if (col->type.base == UDF_NOTHING)
			return udf_fail(err, "row %llu: non-NULL value in column %s of type Nullable(Nothing)",
							(unsigned long long) row->number, col->name), UDF_FAIL;
		if (col->type.base == UDF_STRING)
		{
			uint64_t	len = 0;
			int			shift = 0;

			for (;;)
			{
				int			b = udf_in_get(in);

				if (b < 0)
					return udf_row_truncated(in, row, "RowBinary", i, ncols, err);
				if (shift == 63 && (b & 0x7e))
					return udf_fail(err, "row %llu: String length overflows 64 bits (column %s)",
									(unsigned long long) row->number, col->name), UDF_FAIL;
				len |= (uint64_t) (b & 0x7f) << shift;
				if (!(b & 0x80))
					break;
				shift += 7;
				if (shift > 63)
					return udf_fail(err, "row %llu: String length varint longer than 10 bytes (column %s)",
									(unsigned long long) row->number, col->name), UDF_FAIL;
			}
			if (len > row->max_bytes)
				return udf_fail(err, "row %llu: String of %llu bytes in column %s exceeds the row limit of %zu bytes",
								(unsigned long long) row->number, (unsigned long long) len,
								col->name, row->max_bytes), UDF_FAIL;
			row->start[i] = row->len;
			row->flen[i] = (size_t) len;
			/* grow once, then read straight into the row buffer */
			if (!udf_row_reserve(row, (size_t) len, err))
				return UDF_FAIL;
			if (!udf_in_read(in, row->text + row->len, (size_t) len))
				return udf_row_truncated(in, row, "RowBinary", i, ncols, err);
			row->len += (size_t) len;
			has_strings = true;
			continue;
		}
		w = width_of(col->type.base);
		if (col->type.base == UDF_FLOAT64 && in->end - in->pos >= 8)
		{
			/* the common case, kept branch-light: a whole double in the buffer */
			double		d;
			uint64_t	bits = le_bits(in->buf + in->pos, 8);

			memcpy(&d, &bits, sizeof(d));
			in->pos += 8;
			row->vals[i] = isfinite(d) ? duet_number(d) : duet_null();
			continue;
		}
		if (in->end - in->pos >= w)
		{
			if (!decode_fixed(col, in->buf + in->pos, &row->vals[i], row, err))
				return UDF_FAIL;
			in->pos += w;
		}
		else
		{
			unsigned char b[8];

			if (!udf_in_read(in, b, w))
				return udf_row_truncated(in, row, "RowBinary", i, ncols, err);
			if (!decode_fixed(col, b, &row->vals[i], row, err))
				return UDF_FAIL;
		}
	}
	if (has_strings)
		for (size_t i = 0; i < ncols; i++)
			if (cols[i].type.base == UDF_STRING && !row->is_null[i])
			{
				row->vals[i] = duet_string(row->text + row->start[i], row->flen[i]);
				if (!udf_check_utf8(&cols[i], row->vals[i].u.str.ptr, row->vals[i].u.str.len, err))
				{
					char		msg[sizeof(err->message)];

					memcpy(msg, err->message, sizeof(msg));
					return udf_fail(err, "row %llu: %s", (unsigned long long) row->number, msg), UDF_FAIL;
				}
			}
	return UDF_ROW;
}

static inline void
put_le(udf_out *out, uint64_t v, size_t w)
{
	unsigned char b[8];

	for (size_t i = 0; i < w; i++)
		b[i] = (unsigned char) (v >> (8 * i));
	udf_out_write(out, b, w);
}

static bool
rb_write_row(udf_out *out, const udf_column *cols, const duet_value *vals, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		const udf_column *col = &cols[i];
		duet_value	w;
		uint64_t	bits = 0;

		/* the common case: a Nullable(Float64) result, written with one fixed-size store */
		if (col->type.base == UDF_FLOAT64 && col->type.nullable &&
			(vals[i].type == DUET_T_NUMBER || vals[i].type == DUET_T_NULL))
		{
			if (out->len + 9 > out->cap && !udf_out_reserve(out, 9))
				return false;
			if (vals[i].type == DUET_T_NULL)
				out->buf[out->len++] = 1;
			else
			{
				out->buf[out->len] = 0;
				memcpy(&bits, &vals[i].u.num, 8);
				for (int b = 0; b < 8; b++)
					out->buf[out->len + 1 + b] = (unsigned char) (bits >> (8 * b));
				out->len += 9;
			}
			continue;
		}
		w = udf_value_for_column(col, &vals[i]);

		if (col->type.nullable)
		{
			udf_out_byte(out, w.type == DUET_T_NULL ? 1 : 0);
			if (w.type == DUET_T_NULL)
				continue;
		}
		if (col->type.base == UDF_STRING)
		{
			char		tbuf[40];
			uint64_t	len;

			if (w.type == DUET_T_DATE || w.type == DUET_T_TIMESTAMP)
				w = duet_string(tbuf, duet_format_time_value(&w, tbuf, sizeof(tbuf)));
			len = w.type == DUET_T_STRING ? w.u.str.len : 0;

			do
			{
				udf_out_byte(out, (unsigned char) ((len & 0x7f) | (len > 0x7f ? 0x80 : 0)));
				len >>= 7;
			} while (len);
			if (w.type == DUET_T_STRING)
				udf_out_write(out, w.u.str.ptr, w.u.str.len);
			continue;
		}
		if (col->type.base == UDF_FLOAT64)
		{
			double		d = w.type == DUET_T_NUMBER ? w.u.num : NAN;

			memcpy(&bits, &d, sizeof(bits));
		}
		else if (col->type.base == UDF_FLOAT32)
		{
			float		f = (float) (w.type == DUET_T_NUMBER ? w.u.num : NAN);
			uint32_t	u;

			memcpy(&u, &f, sizeof(u));
			bits = u;
		}
		else if (w.type == DUET_T_BOOL)
			bits = w.u.boolean ? 1 : 0;
		else if (w.type == DUET_T_NUMBER)
			bits = w.u.num < 0 ? (uint64_t) (int64_t) w.u.num : (uint64_t) w.u.num;
		else if (w.type == DUET_T_INT || w.type == DUET_T_DATE)
			bits = (uint64_t) w.u.i;
		else if (w.type == DUET_T_TIMESTAMP)
			bits = (uint64_t) (w.u.i / 1000000);	/* whole seconds (udf_value_for_column) */
		put_le(out, bits, width_of(col->type.base));
	}
	return udf_out_row_done(out);
}

/*
 * Block reader: whole rows of fixed-width columns straight from the input buffer into the batch's
 * columns. A row cut by the buffer's end, a bad Nullable flag or a value decode_fixed refuses
 * stops the block before that row, for rb_read_row to read or report.
 */
static size_t
rb_read_rows(udf_in *in, const udf_column *cols, size_t ncols, duet_value *vals, size_t nstore,
			 size_t stride, size_t max, udf_row *row)
{
	const unsigned char *p = in->buf + in->pos,
			   *e = in->buf + in->end;
	size_t		r = 0;
	size_t		width[UDF_MAX_COLUMNS];
	udf_error	ignored;

	bool		all_f64 = true;

	if (ncols == 0)
		return 0;
	for (size_t i = 0; i < ncols; i++)
	{
		if ((width[i] = width_of(cols[i].type.base)) == 0)
			return 0;			/* String or Nothing: rb_read_row's */
		all_f64 &= cols[i].type.base == UDF_FLOAT64 && i < nstore;
	}
	if (all_f64)
	{
		/* the usual metric's arguments, [Nullable(]Float64[)]: one tight loop per row */
		for (; r < max; r++)
		{
			const unsigned char *q = p;

			for (size_t i = 0; i < ncols; i++)
			{
				duet_value *v = &vals[i * stride + r];
				uint64_t	bits;
				double		d;

				if (cols[i].type.nullable)
				{
					if (q == e || *q > 1)
						return r;
					if (*q++ == 1)
					{
						*v = duet_null();
						continue;
					}
				}
				if (e - q < 8)
					return r;
				bits = le_bits(q, 8);
				memcpy(&d, &bits, sizeof(d));
				q += 8;
				*v = isfinite(d) ? duet_number(d) : duet_null();
			}
			p = q;
			in->pos = (size_t) (p - in->buf);
			row->number++;
		}
		return r;
	}
	for (; r < max; r++)
	{
		const unsigned char *q = p;

		for (size_t i = 0; i < ncols; i++)
		{
			const udf_column *col = &cols[i];
			duet_value	v;

			if (col->type.nullable)
			{
				if (q == e || *q > 1)
					return r;
				if (*q++ == 1)
				{
					if (i < nstore)
						vals[i * stride + r] = duet_null();
					continue;
				}
			}
			if ((size_t) (e - q) < width[i])
				return r;
			if (col->type.base == UDF_FLOAT64)
			{
				uint64_t	bits = le_bits(q, 8);
				double		d;

				memcpy(&d, &bits, sizeof(d));
				v = isfinite(d) ? duet_number(d) : duet_null();
			}
			else if (!decode_fixed(col, q, &v, row, &ignored))
				return r;
			q += width[i];
			if (i < nstore)
				vals[i * stride + r] = v;
		}
		p = q;
		in->pos = (size_t) (p - in->buf);
		row->number++;
	}
	return r;
}

/* Block writer: a Nullable(Float64) or Float64 column in one reservation; others per row. */
static bool
rb_write_col(udf_out *out, const udf_column *col, const duet_value *vals, size_t n)
{
	unsigned char *b;
	bool		nullable = col->type.nullable;

	if (col->type.base != UDF_FLOAT64)
	{
		for (size_t k = 0; k < n; k++)
			if (!rb_write_row(out, col, &vals[k], 1))
				return false;
		return !out->failed;
	}
	if (out->len + 9 * n > out->cap && !udf_out_reserve(out, 9 * n))
		return false;
	b = out->buf + out->len;
	for (size_t k = 0; k < n; k++)
	{
		double		d;
		uint64_t	bits;

		if (vals[k].type == DUET_T_NUMBER)
			d = vals[k].u.num;
		else
		{
			duet_value	w = udf_value_for_column(col, &vals[k]);

			if (w.type == DUET_T_NULL)
			{
				/* only in a Nullable column: elsewhere udf_value_for_column made it nan */
				*b++ = 1;
				continue;
			}
			d = w.type == DUET_T_NUMBER ? w.u.num : NAN;
		}
		if (nullable)
			*b++ = 0;
		memcpy(&bits, &d, sizeof(bits));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		memcpy(b, &bits, 8);
#else
		for (int i = 0; i < 8; i++)
			b[i] = (unsigned char) (bits >> (8 * i));
#endif
		b += 8;
	}
	out->len = (size_t) (b - out->buf);
	return udf_out_row_done(out);
}

const udf_format udf_format_rowbinary = {
	.name = "RowBinary",
	.read_row = rb_read_row,
	.write_row = rb_write_row,
	.read_rows = rb_read_rows,
	.write_col = rb_write_col,
};
