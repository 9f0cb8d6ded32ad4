/*
 * calc_bench.c — ns per evaluation of compiled Duet formulas against hand-written C doing the same
 * work on the same inputs (duet_value in, duet_value out, SQL NULL and division-by-zero rules),
 * measured in one run. The baselines are noinline functions over varying rows whose results
 * feed a checksum that is printed, so the compiler cannot drop or hoist them.
 *
 * Then the same formulas through duet_eval_batch (column-major, one call per 1024 rows), and
 * number text: duet_format_number against the search it replaced (test/unit/number_oracle.h) and
 * printf("%.17g"); duet_parse_number against strtod.
 *
 *   usage: calc_bench [iterations]     (default 2000 passes over 1024 rows)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "duet_calc.h"
#include "../test/unit/number_oracle.h"

#define ROWS 1024
#define NOINLINE __attribute__((noinline))

typedef struct row
{
	double		impressions,
				clicks,
				spend,
				revenue,
				budget,
				elapsed,
				period;
	const char *channel;
	const char *region;
} row;

static row rows[ROWS];
static double checksum;

static inline duet_value
num_or_null(double d)
{
	return isfinite(d) ? duet_number(d + 0.0) : duet_null();
}

/* ---- hand-written baselines, same semantics as the formulas ---- */

static NOINLINE duet_value
c_div(const duet_value *a, const duet_value *b)
{
	if (a->type != DUET_T_NUMBER || b->type != DUET_T_NUMBER || b->u.num == 0)
		return duet_null();
	return num_or_null(a->u.num / b->u.num);
}

/* case when budget is null or budget = 0 then null else clamp(spend / (budget * elapsed / period), 0, 2) end */
static NOINLINE duet_value
c_pacing(const duet_value *v)
{
	/* the program's variable order: first appearance in the formula */
	const duet_value *budget = &v[0],
			   *spend = &v[1],
			   *elapsed = &v[2],
			   *period = &v[3];
	double		expected,
				r;

	if (budget->type == DUET_T_NULL || budget->u.num == 0)
		return duet_null();
	if (spend->type != DUET_T_NUMBER || elapsed->type != DUET_T_NUMBER || period->type != DUET_T_NUMBER ||
		period->u.num == 0)
		return duet_null();
	expected = budget->u.num * elapsed->u.num / period->u.num;
	if (expected == 0 || !isfinite(expected))
		return duet_null();
	r = spend->u.num / expected;
	if (!isfinite(r))
		return duet_null();
	return duet_number((r < 0 ? 0 : r > 2 ? 2 : r) + 0.0);
}

/* round(x / y * 100, 2), as C code would write it: half away from zero on the binary value */
static NOINLINE duet_value
c_round(const duet_value *a, const duet_value *b)
{
	double		r;

	if (a->type != DUET_T_NUMBER || b->type != DUET_T_NUMBER || b->u.num == 0)
		return duet_null();
	r = a->u.num / b->u.num * 100;
	if (!isfinite(r))
		return duet_null();
	return num_or_null(round(r * 100) / 100);
}

/* lower(channel) || '/' || region */
static char cbuf[256];

static NOINLINE duet_value
c_label(const duet_value *v)
{
	size_t		a,
				b;

	if (v[0].type != DUET_T_STRING || v[1].type != DUET_T_STRING)
		return duet_null();
	a = v[0].u.str.len;
	b = v[1].u.str.len;
	if (a + b + 1 > sizeof(cbuf))
		return duet_null();
	for (size_t i = 0; i < a; i++)
	{
		char		c = v[0].u.str.ptr[i];

		cbuf[i] = (c >= 'A' && c <= 'Z') ? (char) (c + 32) : c;
	}
	cbuf[a] = '/';
	memcpy(cbuf + a + 1, v[1].u.str.ptr, b);
	return duet_string(cbuf, a + 1 + b);
}

typedef struct bench
{
	const char *name;
	const char *formula;
	int			kind;			/* 0 div(var0, var1), 1 pacing, 2 label, 3 round */
} bench;

static const bench benches[] = {
	{"ctr", "clicks / impressions", 0},
	{"cpc", "spend / clicks", 0},
	{"roas", "revenue / spend", 0},
	{"pacing", "case when budget is null or budget = 0 then null else clamp(spend / (budget * elapsed / period), 0, 2) end", 1},
	{"label", "lower(channel) || '/' || region", 2},
	{"round", "round(x / y * 100, 2)", 3},
};

static duet_value
field(const row *r, const char *name)
{
	if (!strcmp(name, "impressions")) return duet_number(r->impressions);
	if (!strcmp(name, "clicks")) return duet_number(r->clicks);
	if (!strcmp(name, "spend")) return duet_number(r->spend);
	if (!strcmp(name, "revenue")) return duet_number(r->revenue);
	if (!strcmp(name, "budget")) return r->budget < 0 ? duet_null() : duet_number(r->budget);
	if (!strcmp(name, "elapsed")) return duet_number(r->elapsed);
	if (!strcmp(name, "period")) return duet_number(r->period);
	if (!strcmp(name, "channel")) return duet_string(r->channel, strlen(r->channel));
	if (!strcmp(name, "region")) return duet_string(r->region, strlen(r->region));
	if (!strcmp(name, "x")) return duet_number(r->revenue);
	if (!strcmp(name, "y")) return r->spend == 0 ? duet_number(0) : duet_number(r->spend);
	return duet_null();
}

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void
consume(const duet_value *v)
{
	if (v->type == DUET_T_NUMBER)
		checksum += v->u.num;
	else if (v->type == DUET_T_STRING)
		checksum += (double) v->u.str.len + (unsigned char) v->u.str.ptr[0];
	else
		checksum += 0.5;
}

int
main(int argc, char **argv)
{
	int			iters = argc > 1 ? atoi(argv[1]) : 2000;
	static const char *channels[] = {"Search", "SOCIAL", "Display", "Video"};
	static const char *regions[] = {"eu", "us-east", "apac", "latam"};
	double		worst = 0;

	srand(42);
	for (int i = 0; i < ROWS; i++)
	{
		rows[i].impressions = (i % 97 == 0) ? 0 : 1000 + rand() % 100000;
		rows[i].clicks = (i % 89 == 0) ? 0 : rand() % 5000;
		rows[i].spend = (rand() % 1000000) / 100.0;
		rows[i].revenue = (rand() % 3000000) / 100.0;
		rows[i].budget = (i % 50 == 0) ? -1 : (i % 71 == 0) ? 0 : 1000 + rand() % 50000;
		rows[i].elapsed = 1 + rand() % 30;
		rows[i].period = 30;
		rows[i].channel = channels[rand() % 4];
		rows[i].region = regions[rand() % 4];
	}
	printf("%-8s %10s %10s %7s   formula\n", "expr", "calc ns", "C ns", "ratio");
	for (size_t b = 0; b < sizeof(benches) / sizeof(benches[0]); b++)
	{
		duet_error	err;
		duet_program *p = duet_compile(benches[b].formula, SIZE_MAX, NULL, &err);
		duet_vm    *vm = duet_vm_new();
		size_t		nv;
		duet_value *in;
		double		t0,
					t_calc,
					t_c,
					best_calc = 1e30,
					best_c = 1e30;

		if (!p)
		{
			fprintf(stderr, "%s: %s\n", benches[b].name, err.message);
			return 1;
		}
		nv = duet_program_nvars(p);
		in = malloc(sizeof(duet_value) * nv * ROWS);
		for (int i = 0; i < ROWS; i++)
			for (size_t k = 0; k < nv; k++)
				in[i * nv + k] = field(&rows[i], duet_program_var(p, k));
		/* best of 5 alternating rounds, so both sides see the same machine state */
		for (int round = 0; round < 5; round++)
		{
			duet_value	out;

			t0 = now_ns();
			for (int it = 0; it < iters / 5; it++)
				for (int i = 0; i < ROWS; i++)
				{
					if (duet_eval(p, in + i * nv, vm, &out, &err) != DUET_OK)
						return 1;
					consume(&out);
				}
			t_calc = (now_ns() - t0) / ((double) (iters / 5) * ROWS);
			t0 = now_ns();
			for (int it = 0; it < iters / 5; it++)
				for (int i = 0; i < ROWS; i++)
				{
					const duet_value *v = in + i * nv;

					out = benches[b].kind == 0 ? c_div(&v[0], &v[1]) : benches[b].kind == 1 ? c_pacing(v) :
						benches[b].kind == 2 ? c_label(v) : c_round(&v[0], &v[1]);
					consume(&out);
				}
			t_c = (now_ns() - t0) / ((double) (iters / 5) * ROWS);
			if (t_calc < best_calc)
				best_calc = t_calc;
			if (t_c < best_c)
				best_c = t_c;
		}
		printf("%-8s %10.2f %10.2f %6.2fx   %s\n", benches[b].name, best_calc, best_c, best_calc / best_c,
			   benches[b].formula);
		if (best_calc / best_c > worst)
			worst = best_calc / best_c;
		free(in);
		duet_vm_free(vm);
		duet_program_free(p);
	}
	printf("worst ratio %.2fx (goal <= 1.5x; round <= 3x)\n", worst);

	/* ---- the same, one duet_eval_batch call per 1024 rows (column-major input) ---- */
	printf("\n%-8s %10s %10s %7s   (duet_eval_batch, column-major)\n", "expr", "batch ns", "C ns", "ratio");
	for (size_t b = 0; b < sizeof(benches) / sizeof(benches[0]); b++)
	{
		duet_error	err;
		duet_program *p = duet_compile(benches[b].formula, SIZE_MAX, NULL, &err);
		duet_vm    *vm = duet_vm_new();
		size_t		nv = duet_program_nvars(p),
					done;
		duet_value *cols = malloc(sizeof(duet_value) * nv * ROWS),
				   *rowv = malloc(sizeof(duet_value) * nv * ROWS),
				   *outs = malloc(sizeof(duet_value) * ROWS);
		double		best_b = 1e30,
					best_c = 1e30,
					t0,
					t;

		for (int i = 0; i < ROWS; i++)
			for (size_t k = 0; k < nv; k++)
				cols[k * ROWS + i] = rowv[i * nv + k] = field(&rows[i], duet_program_var(p, k));
		for (int round = 0; round < 5; round++)
		{
			duet_value	out;

			t0 = now_ns();
			for (int it = 0; it < iters / 5; it++)
			{
				if (duet_eval_batch(p, cols, ROWS, ROWS, vm, outs, &err, &done) != DUET_OK)
					return 1;
				for (int i = 0; i < ROWS; i++)
					consume(&outs[i]);
			}
			t = (now_ns() - t0) / ((double) (iters / 5) * ROWS);
			best_b = t < best_b ? t : best_b;
			t0 = now_ns();
			for (int it = 0; it < iters / 5; it++)
				for (int i = 0; i < ROWS; i++)
				{
					const duet_value *v = rowv + i * nv;

					out = benches[b].kind == 0 ? c_div(&v[0], &v[1]) : benches[b].kind == 1 ? c_pacing(v) :
						benches[b].kind == 2 ? c_label(v) : c_round(&v[0], &v[1]);
					consume(&out);
				}
			t = (now_ns() - t0) / ((double) (iters / 5) * ROWS);
			best_c = t < best_c ? t : best_c;
		}
		printf("%-8s %10.2f %10.2f %6.2fx   %s\n", benches[b].name, best_b, best_c, best_b / best_c,
			   benches[b].formula);
		free(cols);
		free(rowv);
		free(outs);
		duet_vm_free(vm);
		duet_program_free(p);
	}

	/* ---- number text ---- */
	{
		static double nums[ROWS];
		static char texts[ROWS][32];
		char		buf[40];
		double		t_new = 1e30,
					t_old = 1e30,
					t_printf = 1e30,
					t_parse = 1e30,
					t_strtod = 1e30,
					t0,
					t,
					d;
		int			reps = iters / 20 > 0 ? iters / 20 : 1;

		for (int i = 0; i < ROWS; i++)
		{
			nums[i] = rows[i].spend ? rows[i].revenue / rows[i].spend : rows[i].clicks;
			duet_format_number(nums[i], texts[i], sizeof(texts[i]));
		}
		for (int round = 0; round < 5; round++)
		{
#define TIME(dst, stmt) \
			t0 = now_ns(); \
			for (int it = 0; it < reps; it++) \
				for (int i = 0; i < ROWS; i++) \
				{ stmt; } \
			t = (now_ns() - t0) / ((double) reps * ROWS); \
			dst = t < dst ? t : dst;
			TIME(t_new, checksum += (double) duet_format_number(nums[i], buf, sizeof(buf)));
			TIME(t_old, checksum += (double) oracle_format_number(nums[i], buf, sizeof(buf)));
			TIME(t_printf, checksum += snprintf(buf, sizeof(buf), "%.17g", nums[i]));
			TIME(t_parse, duet_parse_number(texts[i], strlen(texts[i]), &d); checksum += d);
			TIME(t_strtod, checksum += strtod(texts[i], NULL));
		}
		printf("\nnumber text (ns per number; revenue/spend results):\n");
		printf("  duet_format_number (Ryu)        %8.1f\n", t_new);
		printf("  previous %%.{p}e search          %8.1f   (%.1fx the new)\n", t_old, t_old / t_new);
		printf("  snprintf %%.17g                  %8.1f   (%.1fx the new)\n", t_printf, t_printf / t_new);
		printf("  duet_parse_number               %8.1f\n", t_parse);
		printf("  strtod                          %8.1f   (%.1fx the new)\n", t_strtod, t_strtod / t_parse);
	}
	printf("checksum %.6g\n", checksum);
	return 0;
}
