/*
 * libFuzzer target for opsnctl's CSV reading: the RFC 4180 parser
 * (cli/csv.c) and the member records made of its rows (cli/import.c).
 * Whatever the bytes: no crash, no leak; and every record that comes out
 * is a JSON object the controller could be sent.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "cli.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct csv	 csv;
	json_t		*recs = NULL, *r;
	char		*cause = NULL, *s;
	size_t		 i;

	if (csv_parse("fuzz.csv", (const char *)data, size, &csv,
	    &cause) == 0)
		csv_free(&csv);
	free(cause);
	cause = NULL;
	if (import_csv_records("fuzz.csv", (const char *)data, size, &recs,
	    &cause) == 0) {
		json_array_foreach(recs, i, r) {
			if (!json_is_object(r))
				abort();
		}
		/* What opsnctl sends: it must encode. */
		if ((s = json_dumps(recs, JSON_COMPACT)) == NULL)
			abort();
		free(s);
	}
	json_decref(recs);
	free(cause);
	return (0);
}
