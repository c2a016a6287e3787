/* Small shared helpers: allocation, strings, time, files. */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "opsn/log.h"
#include "opsn/util.h"

void *
xmalloc(size_t n)
{
	void	*p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL)
		fatal("malloc %zu", n);
	return (p);
}

void *
xcalloc(size_t n, size_t size)
{
	void	*p;

	if ((p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size)) == NULL)
		fatal("calloc %zu x %zu", n, size);
	return (p);
}

void *
xrealloc(void *old, size_t n)
{
	void	*p;

	if ((p = realloc(old, n == 0 ? 1 : n)) == NULL)
		fatal("realloc %zu", n);
	return (p);
}

char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		fatal("strdup");
	return (p);
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p;

	if ((p = strndup(s, n)) == NULL)
		fatal("strndup");
	return (p);
}

int
xvasprintf(char **ret, const char *fmt, va_list ap)
{
	int	 n;

	if ((n = vasprintf(ret, fmt, ap)) == -1)
		fatal("vasprintf");
	return (n);
}

int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = xvasprintf(ret, fmt, ap);
	va_end(ap);
	return (n);
}

uint64_t
util_mono_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

uint64_t
util_thread_cpu_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/*
 * The time opsn goes by: the wall clock when first asked, plus the time
 * elapsed since on CLOCK_BOOTTIME, which neither NTP nor date(1) steps.
 * It follows the wall clock as long as the two agree within a second
 * (NTP's slewing); a step of the wall clock while the process runs is
 * logged and not followed, so that a clock moved an hour back or forward
 * expires no token early, extends none, and stamps no sample with a time
 * it has already used. A restart takes the wall clock as it is then.
 */
#define UTIL_CLOCK_SLEW_MS	1000
#define UTIL_CLOCK_WARN_MS	(600 * 1000)

static pthread_mutex_t	 util_clock_lock = PTHREAD_MUTEX_INITIALIZER;
static int		 util_clock_set;
static int64_t		 util_clock_wall0, util_clock_boot0;	/* ms */
static int64_t		 util_clock_offset;	/* wall - ours, ms */
static int64_t		 util_clock_warned;	/* boot ms of the last log */

static int64_t
util_clock_ms(clockid_t id)
{
	struct timespec	 ts;

	clock_gettime(id, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Milliseconds since the epoch (UTC) on opsn's clock. */
int64_t
util_now_ms(void)
{
	int64_t	 wall = util_clock_ms(CLOCK_REALTIME);
	int64_t	 boot = util_clock_ms(CLOCK_BOOTTIME);
	int64_t	 ours, diff, warn = 0;

	pthread_mutex_lock(&util_clock_lock);
	if (!util_clock_set) {
		util_clock_wall0 = wall;
		util_clock_boot0 = boot;
		util_clock_set = 1;
	}
	ours = util_clock_wall0 + (boot - util_clock_boot0);
	diff = wall - ours;
	if (diff >= -UTIL_CLOCK_SLEW_MS && diff <= UTIL_CLOCK_SLEW_MS) {
		util_clock_wall0 = wall;
		util_clock_boot0 = boot;
		ours = wall;
		diff = 0;
	} else if (diff - util_clock_offset > UTIL_CLOCK_SLEW_MS ||
	    util_clock_offset - diff > UTIL_CLOCK_SLEW_MS ||
	    boot - util_clock_warned >= UTIL_CLOCK_WARN_MS) {
		/* A new step, or a reminder every ten minutes. */
		util_clock_warned = boot;
		warn = 1;
	}
	util_clock_offset = diff;
	pthread_mutex_unlock(&util_clock_lock);
	if (warn)
		log_warnx("clock: the wall clock is %+lld s from the time this "
		    "process goes by (it moved while running); not followed: "
		    "correct the clock, then restart to adopt it",
		    (long long)((diff + (diff < 0 ? -500 : 500)) / 1000));
	return (ours);
}

/* Seconds since the epoch (UTC) on opsn's clock (see util_now_ms). */
int64_t
util_now(void)
{
	return (util_now_ms() / 1000);
}

/* The wall clock minus opsn's, in ms: 0 unless the clock was stepped. */
int64_t
util_clock_offset_ms(void)
{
	int64_t	 v;

	(void)util_now_ms();
	pthread_mutex_lock(&util_clock_lock);
	v = util_clock_offset;
	pthread_mutex_unlock(&util_clock_lock);
	return (v);
}

/* v (not negative) as n decimal digits, zero-padded, at p. */
static void
util_digits(char *p, int v, int n)
{
	while (n-- > 0) {
		p[n] = '0' + v % 10;
		v /= 10;
	}
}

void
util_time_fmt(int64_t t, char *buf, size_t len)
{
	time_t		 tt = (time_t)t;
	struct tm	 tm;
	char		 s[21];
	int		 y;

	gmtime_r(&tt, &tm);
	y = tm.tm_year + 1900;
	if (y < 0 || y > 9999 || len < sizeof(s)) {
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
		return;
	}
	/* Digit by digit: list replies format thousands of these. */
	util_digits(s, y, 4);
	s[4] = '-';
	util_digits(s + 5, tm.tm_mon + 1, 2);
	s[7] = '-';
	util_digits(s + 8, tm.tm_mday, 2);
	s[10] = 'T';
	util_digits(s + 11, tm.tm_hour, 2);
	s[13] = ':';
	util_digits(s + 14, tm.tm_min, 2);
	s[16] = ':';
	util_digits(s + 17, tm.tm_sec, 2);
	s[19] = 'Z';
	s[20] = '\0';
	memcpy(buf, s, sizeof(s));
}

int
util_parse_hostport(const char *s, char **host, int *port, char **cause)
{
	const char	*colon, *h, *p;
	size_t		 hlen;
	char		*end;
	long		 n;

	if (s[0] == '[') {
		if ((colon = strchr(s, ']')) == NULL || colon[1] != ':') {
			xasprintf(cause, "'%s': expected [ADDRESS]:PORT", s);
			return (-1);
		}
		h = s + 1;
		hlen = colon - h;
		p = colon + 2;
	} else {
		if ((colon = strrchr(s, ':')) == NULL || colon == s) {
			xasprintf(cause, "'%s': expected ADDRESS:PORT", s);
			return (-1);
		}
		if (memchr(s, ':', colon - s) != NULL) {
			xasprintf(cause, "'%s': put IPv6 addresses in brackets",
			    s);
			return (-1);
		}
		h = s;
		hlen = colon - s;
		p = colon + 1;
	}
	errno = 0;
	n = strtol(p, &end, 10);
	if (*p == '\0' || *end != '\0' || errno != 0 || n < 0 || n > 65535) {
		xasprintf(cause, "'%s': port must be a number from 0 to 65535",
		    s);
		return (-1);
	}
	*host = xstrndup(h, hlen);
	*port = (int)n;
	return (0);
}

int
util_parse_duration(const char *s, int64_t *out, char **cause)
{
	char		*end;
	long long	 n;
	int64_t		 mul = 1;

	errno = 0;
	n = strtoll(s, &end, 10);
	if (end == s || errno != 0 || n < 0) {
		xasprintf(cause, "'%s' is not a duration (e.g. 30s, 15m, 1h, "
		    "90d)", s);
		return (-1);
	}
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0)
		mul = 60;
	else if (strcmp(end, "h") == 0)
		mul = 3600;
	else if (strcmp(end, "d") == 0)
		mul = 86400;
	else {
		xasprintf(cause, "'%s': unknown unit '%s' (use s, m, h or d)",
		    s, end);
		return (-1);
	}
	if (n > INT64_MAX / mul / 1000) {
		xasprintf(cause, "'%s' is too long", s);
		return (-1);
	}
	*out = (int64_t)n * mul;
	return (0);
}

int
util_fsync_dir(const char *dir, char **cause)
{
	int	 fd;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fsync(fd) == -1) {
		xasprintf(cause, "fsync %s: %s", dir, strerror(errno));
		if (fd != -1)
			close(fd);
		return (-1);
	}
	close(fd);
	return (0);
}

/*
 * The rename is durable only once the folder is synced too: without it a
 * crash can leave the old file (or none) after the caller went on.
 */
int
util_write_file(const char *path, const void *buf, size_t len, int mode,
    char **cause)
{
	char		*tmp, *dir;
	int		 fd, saved, rv;
	const char	*p = buf, *slash;
	ssize_t		 n;

	xasprintf(&tmp, "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd == -1) {
		xasprintf(cause, "%s: %s", tmp, strerror(errno));
		free(tmp);
		return (-1);
	}
	if (fchmod(fd, mode) == -1)
		goto fail;
	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		p += n;
		len -= n;
	}
	if (fsync(fd) == -1)
		goto fail;
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1)
		goto fail;
	free(tmp);
	if ((slash = strrchr(path, '/')) == NULL)
		return (util_fsync_dir(".", cause));
	dir = xstrndup(path, slash == path ? 1 : (size_t)(slash - path));
	rv = util_fsync_dir(dir, cause);
	free(dir);
	return (rv);
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	unlink(tmp);
	xasprintf(cause, "%s: %s", path, strerror(saved));
	free(tmp);
	return (-1);
}

int
util_read_file(const char *path, size_t max, char **out, size_t *lenp,
    char **cause)
{
	FILE	*f;
	char	*buf;
	size_t	 len = 0, cap = 4096, n;

	if ((f = fopen(path, "re")) == NULL) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	buf = xmalloc(cap + 1);
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len > max) {
			xasprintf(cause, "%s: larger than %zu bytes", path, max);
			goto fail;
		}
		if (len == cap) {
			cap *= 2;
			buf = xrealloc(buf, cap + 1);
		}
	}
	if (ferror(f)) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		goto fail;
	}
	fclose(f);
	buf[len] = '\0';
	*out = buf;
	if (lenp != NULL)
		*lenp = len;
	return (0);
fail:
	fclose(f);
	free(buf);
	return (-1);
}

int
util_mkdirs(const char *path, int mode, char **cause)
{
	char	*p, *s;

	p = xstrdup(path);
	for (s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, mode) == -1 && errno != EEXIST) {
			xasprintf(cause, "mkdir %s: %s", p, strerror(errno));
			free(p);
			return (-1);
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return (0);
}

void
util_hex(const unsigned char *in, size_t len, char *out)
{
	static const char	 digits[] = "0123456789abcdef";
	size_t			 i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

void
util_random(void *buf, size_t len)
{
	if (RAND_bytes(buf, (int)len) != 1)
		fatalx("RAND_bytes failed");
}

static EVP_MD		*util_sha256_md;
static pthread_once_t	 util_sha256_once = PTHREAD_ONCE_INIT;

static void
util_sha256_fetch(void)
{
	if ((util_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		fatalx("EVP_MD_fetch SHA256 failed");
}

const EVP_MD *
util_sha256(void)
{
	pthread_once(&util_sha256_once, util_sha256_fetch);
	return (util_sha256_md);
}

size_t
strlcpy(char *dst, const char *src, size_t size)
{
	size_t	 len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return (len);
}
