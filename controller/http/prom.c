/*
 * The Prometheus text exposition format (version 0.0.4), as every module
 * writes its own metrics into one reply: a family header (HELP and TYPE)
 * once, then its samples. promtool check metrics must find nothing to
 * say, so every family has a HELP line and counters end in _total.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "http.h"

/* Start writing (open_memstream: the text grows as it is written). */
void
prom_open(struct prom *pr)
{
	pr->pr_b = NULL;
	pr->pr_len = 0;
	if ((pr->pr_f = open_memstream(&pr->pr_b, &pr->pr_len)) == NULL)
		fatal("prom: open_memstream");
}

/* Finish: pr_b and pr_len hold the text (the caller frees pr_b). */
void
prom_close(struct prom *pr)
{
	if (fclose(pr->pr_f) != 0)
		fatal("prom: writing the exposition");
	pr->pr_f = NULL;
}

/* Append formatted text. */
void
prom_add(struct prom *pr, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vfprintf(pr->pr_f, fmt, ap);
	va_end(ap);
}

/* Start a family: its HELP and TYPE lines. */
void
prom_family(struct prom *pr, const char *name, const char *type,
    const char *help)
{
	prom_add(pr, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, quote and newline escaped (caller frees). */
char *
prom_label(const char *s)
{
	char	*out = xmalloc(2 * strlen(s) + 1), *o = out;

	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"') {
			*o++ = '\\';
			*o++ = *s;
		} else if (*s == '\n') {
			*o++ = '\\';
			*o++ = 'n';
		} else
			*o++ = *s;
	}
	*o = '\0';
	return (out);
}

/* A value: integers as such (counters, bytes), others to 15 digits. */
static void
prom_value(double v, char *buf, size_t len)
{
	if (v == floor(v) && fabs(v) < 9e15)
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%.15g", v);
}

/* One sample with one label (name="value", escaped here), or none. */
void
prom_sample(struct prom *pr, const char *metric, const char *label,
    const char *value, double v)
{
	char	*l, num[32];

	prom_value(v, num, sizeof(num));
	if (label == NULL) {
		prom_add(pr, "%s %s\n", metric, num);
		return;
	}
	l = prom_label(value);
	prom_add(pr, "%s{%s=\"%s\"} %s\n", metric, label, l, num);
	free(l);
}

/* A whole family of one unlabelled sample. */
void
prom_single(struct prom *pr, const char *name, const char *type,
    const char *help, double v)
{
	prom_family(pr, name, type, help);
	prom_sample(pr, name, NULL, NULL, v);
}

/*
 * A whole family of one unlabelled histogram: counts[i] (not cumulative)
 * for the bounds, in seconds, and counts[n] past the last one.
 */
void
prom_histogram(struct prom *pr, const char *name, const char *help,
    const double *bounds, const uint64_t *counts, size_t n, double sum)
{
	uint64_t	 cum = 0;
	size_t		 i;

	prom_family(pr, name, "histogram", help);
	for (i = 0; i < n; i++) {
		cum += counts[i];
		prom_add(pr, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
		    (unsigned long long)cum);
	}
	cum += counts[n];
	prom_add(pr, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n"
	    "%s_count %llu\n", name, (unsigned long long)cum, name, sum, name,
	    (unsigned long long)cum);
}
