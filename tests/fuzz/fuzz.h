/*
 * What the fuzz targets share: a private folder in memory (/dev/shm) for
 * the files the parsers read, and writing an input there.
 */
#ifndef OPSN_FUZZ_H
#define OPSN_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "opsn/util.h"

/* path/name in a new private folder (once per process); caller keeps it. */
static inline char *
fuzz_file(const char *name)
{
	static char	 dir[] = "/dev/shm/opsn-fuzz.XXXXXX";
	static int	 made;
	char		*path;

	if (!made && mkdtemp(dir) == NULL)
		abort();
	made = 1;
	xasprintf(&path, "%s/%s", dir, name);
	return (path);
}

/* Replace the file at path with len bytes of p. */
static inline void
fuzz_write(const char *path, const uint8_t *p, size_t len)
{
	FILE	*f;

	if ((f = fopen(path, "w")) == NULL)
		abort();
	if (len > 0 && fwrite(p, 1, len, f) != len)
		abort();
	fclose(f);
}

#endif
