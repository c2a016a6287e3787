/*
 * The agent's image cache against a real HTTPS server that wants a client
 * certificate (tests/unit/imgcache_server.py, run with /usr/bin/python3),
 * with a throwaway CA made here. Each test has its own temporary folder,
 * server and loop; it ends with the loop empty and closed.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/util.h"
#include "imgcache.h"

#define PYTHON		"/usr/bin/python3"
#define WATCHDOG_S	60
#define NPARTS		3

static const char *const part_names[NPARTS] = { "disk", "kernel", "initrd" };
/* Odd sizes so that no part ends on a chunk boundary. */
static const size_t part_sizes[NPARTS] = { 300001, 70003, 20011 };

/* The throwaway PKI, made once. */
static struct {
	EVP_PKEY	*ca_key, *srv_key, *cli_key, *rogue_key, *rogue_cli_key;
	X509		*ca, *srv, *cli, *rogue, *rogue_cli;
} pki;

struct result {
	int	 called;
	int	 ok;
	char	*error;
	char	*path[NPARTS];
};

struct fx {
	char		 tmp[64];
	char		*data, *srvdir, *images, *cache, *log, *portfile;
	pid_t		 server;
	char		 url[64];
	uv_loop_t	 loop;
	struct agent	 a;
	unsigned char	*part[NPARTS];
	char		 sha[NPARTS][65];
	Opsn__ImageRef	 ref;
};

static void
sha256_hex(const void *buf, size_t len, char out[65])
{
	unsigned char	 d[32];
	unsigned int	 dlen = sizeof(d);

	assert_int_equal(EVP_Digest(buf, len, d, &dlen, EVP_sha256(), NULL),
	    1);
	util_hex(d, sizeof(d), out);
}

static X509 *
client_cert(EVP_PKEY *key, X509 *ca, EVP_PKEY *cakey)
{
	char	*csr, *cause = NULL;
	X509	*x;

	if ((csr = pki_csr_new(key, "node1", &cause)) == NULL)
		return (NULL);
	x = pki_sign_csr(csr, strlen(csr), "node1", ca, cakey, 7, &cause);
	if (x == NULL)
		fprintf(stderr, "setup: %s\n", cause);
	free(csr);
	return (x);
}

static int
group_setup(void **state)
{
	const char *const	 names[] = { "127.0.0.1" };
	char			*cause = NULL;

	/* The cache must hand QEMU 0644 files whatever the agent's umask. */
	umask(027);
	log_init("test_agt_imgcache", LOG_LEVEL_WARN, NULL);
	if ((pki.ca_key = pki_key_new(&cause)) == NULL ||
	    (pki.srv_key = pki_key_new(&cause)) == NULL ||
	    (pki.cli_key = pki_key_new(&cause)) == NULL ||
	    (pki.rogue_key = pki_key_new(&cause)) == NULL ||
	    (pki.rogue_cli_key = pki_key_new(&cause)) == NULL ||
	    (pki.ca = pki_ca_new(pki.ca_key, "test CA", 7, &cause)) == NULL ||
	    (pki.rogue = pki_ca_new(pki.rogue_key, "rogue CA", 7,
	    &cause)) == NULL ||
	    (pki.srv = pki_server_cert_new(pki.srv_key, names, 1, pki.ca,
	    pki.ca_key, 7, &cause)) == NULL) {
		fprintf(stderr, "setup: %s\n", cause);
		return (-1);
	}
	if ((pki.cli = client_cert(pki.cli_key, pki.ca, pki.ca_key)) == NULL ||
	    (pki.rogue_cli = client_cert(pki.rogue_cli_key, pki.rogue,
	    pki.rogue_key)) == NULL)
		return (-1);
	return (0);
}

static int
group_teardown(void **state)
{
	X509_free(pki.ca);
	X509_free(pki.srv);
	X509_free(pki.cli);
	X509_free(pki.rogue);
	X509_free(pki.rogue_cli);
	EVP_PKEY_free(pki.ca_key);
	EVP_PKEY_free(pki.srv_key);
	EVP_PKEY_free(pki.cli_key);
	EVP_PKEY_free(pki.rogue_key);
	EVP_PKEY_free(pki.rogue_cli_key);
	return (0);
}

static char *
fx_path(struct fx *f, const char *rel)
{
	char	*p;

	xasprintf(&p, "%s/%s", f->tmp, rel);
	return (p);
}

static void
save_cert(const char *dir, const char *file, X509 *x)
{
	char	*p, *cause = NULL;

	xasprintf(&p, "%s/%s", dir, file);
	if (pki_cert_save(p, x, 0644, &cause) == -1)
		fail_msg("%s", cause);
	free(p);
}

static void
save_key(const char *dir, const char *file, EVP_PKEY *k)
{
	char	*p, *cause = NULL;

	xasprintf(&p, "%s/%s", dir, file);
	if (pki_key_save(p, k, 0600, &cause) == -1)
		fail_msg("%s", cause);
	free(p);
}

static void
write_file(const char *path, const void *buf, size_t len)
{
	FILE	*fp;

	if ((fp = fopen(path, "w")) == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	assert_int_equal(fwrite(buf, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* The whole file, or NULL if it does not exist. */
static char *
read_file(const char *path, size_t *len)
{
	char	*buf, *cause = NULL;

	if (access(path, F_OK) == -1)
		return (NULL);
	if (util_read_file(path, 64 * 1024 * 1024, &buf, len, &cause) == -1)
		fail_msg("%s", cause);
	return (buf);
}

/* Requests the server saw whose log line contains what ("" for all). */
static int
count_requests(struct fx *f, const char *what)
{
	char	*buf, *line, *save = NULL;
	size_t	 len;
	int	 n = 0;

	if ((buf = read_file(f->log, &len)) == NULL)
		return (0);
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, what) != NULL)
			n++;
	}
	free(buf);
	return (n);
}

static int
setup(void **state)
{
	struct fx	*f = xcalloc(1, sizeof(*f));
	char		*dir, *p, *cause = NULL;
	int		 i;

	alarm(WATCHDOG_S);
	strlcpy(f->tmp, "/tmp/opsn-imgcache-XXXXXX", sizeof(f->tmp));
	if (mkdtemp(f->tmp) == NULL)
		return (-1);
	f->data = fx_path(f, "data");
	f->srvdir = fx_path(f, "srv");
	f->images = fx_path(f, "images");
	f->cache = fx_path(f, "cache/images");
	f->log = fx_path(f, "requests.log");
	f->portfile = fx_path(f, "port");
	xasprintf(&dir, "%s/tiny", f->images);
	if (util_mkdirs(f->data, 0700, &cause) == -1 ||
	    util_mkdirs(f->srvdir, 0700, &cause) == -1 ||
	    util_mkdirs(dir, 0755, &cause) == -1) {
		fprintf(stderr, "setup: %s\n", cause);
		return (-1);
	}
	save_key(f->data, "key.pem", pki.cli_key);
	save_cert(f->data, "cert.pem", pki.cli);
	save_cert(f->data, "ca.pem", pki.ca);
	save_key(f->srvdir, "key.pem", pki.srv_key);
	save_cert(f->srvdir, "cert.pem", pki.srv);
	save_cert(f->srvdir, "ca.pem", pki.ca);

	for (i = 0; i < NPARTS; i++) {
		f->part[i] = xmalloc(part_sizes[i]);
		util_random(f->part[i], part_sizes[i]);
		sha256_hex(f->part[i], part_sizes[i], f->sha[i]);
		xasprintf(&p, "%s/%s", dir, part_names[i]);
		write_file(p, f->part[i], part_sizes[i]);
		free(p);
	}
	free(dir);
	opsn__image_ref__init(&f->ref);
	f->ref.name = "tiny";
	f->ref.format = "raw";
	f->ref.disk_sha256 = f->sha[0];
	f->ref.disk_size = part_sizes[0];
	f->ref.kernel_sha256 = f->sha[1];
	f->ref.kernel_size = part_sizes[1];
	f->ref.initrd_sha256 = f->sha[2];
	f->ref.initrd_size = part_sizes[2];

	assert_int_equal(uv_loop_init(&f->loop), 0);
	f->a.loop = &f->loop;
	f->a.conf.data_dir = f->data;
	*state = f;
	return (0);
}

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return (remove(path));
}

static int
teardown(void **state)
{
	struct fx	*f = *state;
	int		 i, rv = 0;

	imgcache_stop();
	uv_run(&f->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&f->loop) != 0) {
		fprintf(stderr, "teardown: the loop still has handles\n");
		rv = -1;
	}
	if (f->server > 0) {
		kill(f->server, SIGTERM);
		waitpid(f->server, NULL, 0);
	}
	if (nftw(f->tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS) == -1)
		rv = -1;
	for (i = 0; i < NPARTS; i++)
		free(f->part[i]);
	free(f->data);
	free(f->srvdir);
	free(f->images);
	free(f->cache);
	free(f->log);
	free(f->portfile);
	free(f);
	alarm(0);
	return (rv);
}

/* The server script sits next to this file. */
static char *
server_script(void)
{
	char	*p, *slash;

	p = xstrdup(__FILE__);
	if ((slash = strrchr(p, '/')) != NULL)
		slash[1] = '\0';
	else
		p[0] = '\0';
	xasprintf(&slash, "%simgcache_server.py", p);
	free(p);
	return (slash);
}

/* Start the server with extra options (NULL-terminated) and wait for it. */
static void
start_server(struct fx *f, ...)
{
	const char	*argv[32];
	char		*script = server_script(), *cert, *key, *ca, *buf;
	size_t		 n = 0, len;
	va_list		 ap;
	int		 i, port = 0;

	xasprintf(&cert, "%s/cert.pem", f->srvdir);
	xasprintf(&key, "%s/key.pem", f->srvdir);
	xasprintf(&ca, "%s/ca.pem", f->srvdir);
	argv[n++] = "python3";
	argv[n++] = script;
	argv[n++] = "--root";
	argv[n++] = f->images;
	argv[n++] = "--cert";
	argv[n++] = cert;
	argv[n++] = "--key";
	argv[n++] = key;
	argv[n++] = "--ca";
	argv[n++] = ca;
	argv[n++] = "--log";
	argv[n++] = f->log;
	argv[n++] = "--port-file";
	argv[n++] = f->portfile;
	va_start(ap, f);
	while (n < nitems(argv) - 1 &&
	    (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;

	if ((f->server = fork()) == -1)
		fail_msg("fork: %s", strerror(errno));
	if (f->server == 0) {
		execv(PYTHON, (char *const *)argv);
		_exit(127);
	}
	for (i = 0; i < 200 && port == 0; i++) {
		if ((buf = read_file(f->portfile, &len)) != NULL) {
			port = atoi(buf);
			free(buf);
		} else if (waitpid(f->server, NULL, WNOHANG) == f->server) {
			f->server = 0;
			fail_msg("the image server exited at start");
		} else
			usleep(50 * 1000);
	}
	if (port == 0)
		fail_msg("the image server did not start");
	snprintf(f->url, sizeof(f->url), "https://127.0.0.1:%d/v1/images",
	    port);
	free(script);
	free(cert);
	free(key);
	free(ca);
}

static void
start_cache(struct fx *f)
{
	char	*cause = NULL;

	if (imgcache_init(&f->a, f->cache, &cause) == -1)
		fail_msg("imgcache_init: %s", cause);
}

static void
done_cb(void *arg, const struct imgcache_result *ir)
{
	struct result	*r = arg;
	const char	*p[NPARTS] = { ir->ir_disk, ir->ir_kernel,
			    ir->ir_initrd };
	int		 i;

	r->called++;
	r->ok = ir->ir_ok;
	if (!ir->ir_ok)
		r->error = xstrdup(ir->ir_error);
	for (i = 0; i < NPARTS; i++)
		r->path[i] = p[i] != NULL ? xstrdup(p[i]) : NULL;
}

static void
result_free(struct result *r)
{
	int	 i;

	free(r->error);
	for (i = 0; i < NPARTS; i++)
		free(r->path[i]);
	memset(r, 0, sizeof(*r));
}

/* Ask for ref and run the loop until the cache has answered. */
static void
ensure(struct fx *f, const Opsn__ImageRef *ref, struct result *r)
{
	memset(r, 0, sizeof(*r));
	imgcache_ensure(ref, f->url, done_cb, r);
	assert_int_equal(r->called, 0);		/* never synchronously */
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(r->called, 1);
}

static char *
cache_file(struct fx *f, const char *sha, const char *suffix)
{
	char	*p;

	xasprintf(&p, "%s/%s%s", f->cache, sha, suffix);
	return (p);
}

static int
exists(const char *path)
{
	return (access(path, F_OK) == 0);
}

/* Part i is in the cache under its sum, readable by QEMU, intact. */
static void
assert_cached(struct fx *f, const struct result *r, int i)
{
	struct stat	 st;
	char		*want = cache_file(f, f->sha[i], ""), *buf;
	size_t		 len;

	assert_non_null(r->path[i]);
	assert_string_equal(r->path[i], want);
	assert_int_equal(stat(want, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	buf = read_file(want, &len);
	assert_non_null(buf);
	assert_int_equal(len, part_sizes[i]);
	assert_memory_equal(buf, f->part[i], len);
	free(buf);
	free(want);
	want = cache_file(f, f->sha[i], ".part");
	assert_false(exists(want));
	free(want);
}

static void
imgcache_fetches_every_part_by_sha256(void **state)
{
	struct fx	*f = *state;
	struct result	 r;
	struct stat	 st;
	int		 i;

	start_server(f, NULL);
	start_cache(f);
	ensure(f, &f->ref, &r);
	if (!r.ok)
		fail_msg("%s", r.error);
	for (i = 0; i < NPARTS; i++)
		assert_cached(f, &r, i);
	assert_int_equal(stat(f->cache, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(count_requests(f, "GET /v1/images/tiny/"), NPARTS);
	assert_int_equal(count_requests(f, "range=bytes"), 0);
	result_free(&r);
}

static void
imgcache_uses_cache_without_a_request(void **state)
{
	struct fx	*f = *state;
	struct result	 r;
	char		*disk;
	FILE		*fp;
	int		 i;

	start_server(f, NULL);
	start_cache(f);
	ensure(f, &f->ref, &r);
	assert_true(r.ok);
	result_free(&r);
	ensure(f, &f->ref, &r);
	assert_true(r.ok);
	for (i = 0; i < NPARTS; i++)
		assert_cached(f, &r, i);
	assert_int_equal(count_requests(f, ""), NPARTS);
	result_free(&r);

	/* After a restart, a cached disk whose bytes changed is fetched. */
	imgcache_stop();
	uv_run(&f->loop, UV_RUN_DEFAULT);
	disk = cache_file(f, f->sha[0], "");
	assert_non_null(fp = fopen(disk, "r+"));
	assert_int_equal(fseek(fp, 1000, SEEK_SET), 0);
	assert_int_not_equal(fputc(f->part[0][1000] ^ 0xff, fp), EOF);
	assert_int_equal(fclose(fp), 0);
	free(disk);
	start_cache(f);
	ensure(f, &f->ref, &r);
	if (!r.ok)
		fail_msg("%s", r.error);
	assert_cached(f, &r, 0);
	assert_int_equal(count_requests(f, "/tiny/disk"), 2);
	assert_int_equal(count_requests(f, ""), NPARTS + 1);
	result_free(&r);
}

static void
imgcache_rejects_checksum_mismatch(void **state)
{
	struct fx	*f = *state;
	struct result	 r;
	char		 wrong[65], *p;

	start_server(f, NULL);
	start_cache(f);
	sha256_hex("other bytes", 11, wrong);
	f->ref.disk_sha256 = wrong;
	ensure(f, &f->ref, &r);
	assert_false(r.ok);
	assert_non_null(strstr(r.error, "image tiny: disk: SHA-256 mismatch"));
	assert_non_null(strstr(r.error, wrong));
	assert_non_null(strstr(r.error, f->sha[0]));
	p = cache_file(f, wrong, "");
	assert_false(exists(p));
	free(p);
	p = cache_file(f, wrong, ".part");
	assert_false(exists(p));
	free(p);
	result_free(&r);
}

static void
imgcache_resumes_interrupted_download(void **state)
{
	struct fx	*f = *state;
	struct result	 r;
	int		 i;

	/* Every response stops after 100000 bytes: the disk needs four. */
	start_server(f, "--drop-after", "100000", NULL);
	start_cache(f);
	ensure(f, &f->ref, &r);
	if (!r.ok)
		fail_msg("%s", r.error);
	for (i = 0; i < NPARTS; i++)
		assert_cached(f, &r, i);
	assert_int_equal(count_requests(f, "/tiny/disk range=-"), 1);
	assert_int_equal(count_requests(f, "/tiny/disk range=bytes=100000-"),
	    1);
	assert_int_equal(count_requests(f, "/tiny/disk range=bytes=300000-"),
	    1);
	result_free(&r);
}

static void
imgcache_resumes_from_part_file(void **state)
{
	struct fx	*f = *state;
	struct result	 r;
	char		*cause = NULL, *p;

	start_server(f, NULL);
	/* What an agent killed mid-download leaves behind. */
	if (util_mkdirs(f->cache, 0755, &cause) == -1)
		fail_msg("%s", cause);
	p = cache_file(f, f->sha[0], ".part");
	write_file(p, f->part[0], 1000);
	free(p);
	start_cache(f);
	ensure(f, &f->ref, &r);
	if (!r.ok)
		fail_msg("%s", r.error);
	assert_cached(f, &r, 0);
	assert_int_equal(count_requests(f, "/tiny/disk range=bytes=1000-"), 1);
	assert_int_equal(count_requests(f, "/tiny/disk"), 1);
	result_free(&r);
}

static void
imgcache_restarts_when_range_ignored(void **state)
{
	struct fx	*f = *state;
	struct result	 r;
	char		*cause = NULL, *p, junk[1000];

	start_server(f, "--no-range", NULL);
	if (util_mkdirs(f->cache, 0755, &cause) == -1)
		fail_msg("%s", cause);
	/* Bytes that are not the image's: only a restart from 0 fixes them. */
	memset(junk, 'x', sizeof(junk));
	p = cache_file(f, f->sha[0], ".part");
	write_file(p, junk, sizeof(junk));
	free(p);
	start_cache(f);
	ensure(f, &f->ref, &r);
	if (!r.ok)
		fail_msg("%s", r.error);
	assert_cached(f, &r, 0);
	assert_int_equal(count_requests(f, "/tiny/disk range=bytes=1000-"), 1);
	result_free(&r);
}

static void
imgcache_reports_server_error(void **state)
{
	struct fx	*f = *state;
	struct result	 r;

	start_server(f, NULL);
	start_cache(f);
	f->ref.name = "nope";
	ensure(f, &f->ref, &r);
	assert_false(r.ok);
	assert_non_null(strstr(r.error, "image nope: "));
	assert_non_null(strstr(r.error, "HTTP 404: no image named 'nope'"));
	result_free(&r);
}

static void
imgcache_escapes_image_name(void **state)
{
	struct fx	*f = *state;
	struct result	 r;

	start_server(f, NULL);
	start_cache(f);
	f->ref.name = "../tiny?x=1 #";
	ensure(f, &f->ref, &r);
	assert_false(r.ok);
	assert_non_null(strstr(r.error, "no image named '../tiny?x=1 #'"));
	assert_int_equal(count_requests(f,
	    "/v1/images/..%2Ftiny%3Fx%3D1%20%23/"), count_requests(f, ""));
	result_free(&r);
}

static void
imgcache_shares_one_download(void **state)
{
	struct fx	*f = *state;
	struct result	 r1, r2;
	int		 i;

	start_server(f, NULL);
	start_cache(f);
	memset(&r1, 0, sizeof(r1));
	memset(&r2, 0, sizeof(r2));
	imgcache_ensure(&f->ref, f->url, done_cb, &r1);
	imgcache_ensure(&f->ref, f->url, done_cb, &r2);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(r1.called, 1);
	assert_int_equal(r2.called, 1);
	assert_true(r1.ok);
	assert_true(r2.ok);
	for (i = 0; i < NPARTS; i++) {
		assert_cached(f, &r1, i);
		assert_cached(f, &r2, i);
	}
	assert_int_equal(count_requests(f, ""), NPARTS);
	result_free(&r1);
	result_free(&r2);
}

static void
imgcache_refuses_untrusted_client(void **state)
{
	struct fx	*f = *state;
	struct result	 r;
	char		*p;

	start_server(f, NULL);
	/* A certificate from another CA, as a node that was never enrolled. */
	save_key(f->data, "key.pem", pki.rogue_cli_key);
	save_cert(f->data, "cert.pem", pki.rogue_cli);
	start_cache(f);
	ensure(f, &f->ref, &r);
	assert_false(r.ok);
	assert_non_null(strstr(r.error, "image tiny: "));
	assert_int_equal(count_requests(f, ""), 0);
	p = cache_file(f, f->sha[0], "");
	assert_false(exists(p));
	free(p);
	result_free(&r);
}

static void
imgcache_refuses_unknown_server(void **state)
{
	struct fx	*f = *state;
	struct result	 r;

	start_server(f, NULL);
	/* The agent trusts only its controller's CA. */
	save_cert(f->data, "ca.pem", pki.rogue);
	start_cache(f);
	ensure(f, &f->ref, &r);
	assert_false(r.ok);
	assert_int_equal(count_requests(f, ""), 0);
	result_free(&r);
}

static void
imgcache_rejects_bad_sha256(void **state)
{
	struct fx	*f = *state;
	struct result	 r;
	char		 upper[65];
	size_t		 i;

	start_server(f, NULL);
	start_cache(f);
	f->ref.kernel_sha256 = "../../../../etc/passwd";
	ensure(f, &f->ref, &r);
	assert_false(r.ok);
	assert_string_equal(r.error, "image tiny: kernel: the SHA-256 is not "
	    "64 lowercase hex digits");
	result_free(&r);

	for (i = 0; i < 64; i++)
		upper[i] = f->sha[1][i] >= 'a' ? f->sha[1][i] - 32 :
		    f->sha[1][i];
	upper[64] = '\0';
	f->ref.kernel_sha256 = upper;
	ensure(f, &f->ref, &r);
	assert_false(r.ok);
	result_free(&r);
	assert_int_equal(count_requests(f, ""), 0);
}

static void
stop_timer_cb(uv_timer_t *t)
{
	imgcache_stop();
	uv_close((uv_handle_t *)t, NULL);
}

static void
imgcache_stop_fails_downloads(void **state)
{
	struct fx	*f = *state;
	struct result	 r;
	uv_timer_t	 t;
	uint64_t	 start;

	/* About 300 ms per 100 KiB: still running when the stop comes. */
	start_server(f, "--delay-ms", "50", NULL);
	start_cache(f);
	memset(&r, 0, sizeof(r));
	imgcache_ensure(&f->ref, f->url, done_cb, &r);
	uv_timer_init(&f->loop, &t);
	uv_timer_start(&t, stop_timer_cb, 300, 0);
	start = util_mono_ms();
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(r.called, 1);
	assert_false(r.ok);
	assert_non_null(strstr(r.error, "stopping"));
	assert_true(util_mono_ms() - start < 5000);
	/* Asked for after the stop: an error too, never a download. */
	result_free(&r);
	ensure(f, &f->ref, &r);
	assert_false(r.ok);
	assert_non_null(strstr(r.error, "stopping"));
	result_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    imgcache_fetches_every_part_by_sha256, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_uses_cache_without_a_request, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_rejects_checksum_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_resumes_interrupted_download, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_resumes_from_part_file, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_restarts_when_range_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_reports_server_error, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_escapes_image_name, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_shares_one_download, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_refuses_untrusted_client, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_refuses_unknown_server, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_rejects_bad_sha256, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    imgcache_stop_fails_downloads, setup, teardown),
	};

	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
