/* Small shared helpers: fatal-on-failure allocation, strings, time. */
#ifndef OPSN_UTIL_H
#define OPSN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#define OPSN_VERSION "0.1.0"

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation failure is fatal: these never return NULL. */
void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xrealloc(void *, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
int	 xvasprintf(char **, const char *, va_list);

/* Copy with truncation, always NUL-terminated (glibc 2.36 lacks it). */
size_t	 strlcpy(char *, const char *, size_t);

/* Milliseconds on a monotonic clock, for timeouts. */
uint64_t	 util_mono_ms(void);
/* CPU time of the calling thread, ms: what it cost, whatever the load. */
uint64_t	 util_thread_cpu_ms(void);
/*
 * Seconds and milliseconds since the epoch (UTC) on a clock that follows
 * the wall clock's slewing but not its steps while the process runs.
 */
int64_t		 util_now(void);
int64_t		 util_now_ms(void);
/* The wall clock minus that clock, ms: not 0 after a step. */
int64_t		 util_clock_offset_ms(void);
/* RFC 3339 UTC time ("2026-11-29T18:38:25Z") into buf (at least 21 bytes). */
void		 util_time_fmt(int64_t, char *, size_t);

/* Parse "ADDR:PORT" or "[V6]:PORT" into host (caller frees) and port. */
int	 util_parse_hostport(const char *, char **, int *, char **cause);
/* Parse a duration such as "90", "30s", "15m", "1h", "90d" into seconds. */
int	 util_parse_duration(const char *, int64_t *, char **cause);

/* fsync a folder: what a rename into it did is then on disk. */
int	 util_fsync_dir(const char *dir, char **cause);
/*
 * Write a whole file atomically (temporary name, fsync, rename, fsync of
 * the folder) with mode.
 */
int	 util_write_file(const char *, const void *, size_t, int mode,
	    char **cause);
/* Read a whole file (at most max bytes) into a NUL-terminated buffer. */
int	 util_read_file(const char *, size_t max, char **out, size_t *len,
	    char **cause);
/* mkdir -p with mode for the created folders. */
int	 util_mkdirs(const char *, int mode, char **cause);

/* Hex-encode len bytes of in into out (2*len+1 bytes). */
void	 util_hex(const unsigned char *, size_t, char *);
/* Fill buf with cryptographically strong random bytes; fatal on failure. */
void	 util_random(void *, size_t);
/*
 * SHA-256 fetched once from the default provider and shared by every
 * thread (EVP_sha256() is fetched anew at each EVP_DigestInit_ex()).
 */
struct evp_md_st;
const struct evp_md_st	*util_sha256(void);

#endif
