/*
 * Cold migrations on a hypervisor: the disks of stopped VMs go from agent
 * to agent over mutual TLS, with the node certificates the controller's
 * CA signed. The controller tells each side what to do in its desired
 * state (level-triggered, like everything else):
 *
 *   serve	the source lets one node (the certificate's CN) fetch the
 *		overlay of one VM, stopped here, presenting a token;
 *   fetch	the target fetches it from the source's disk server into
 *		POOL/incoming/<id>.qcow2.part, resuming from what it has,
 *		checks the whole file against the source's SHA-256, points
 *		its backing file at its own copy of the base image, and
 *		keeps it as POOL/incoming/<id>.qcow2 until the VM is given
 *		to this node: hv.c then moves it into the pool instead of
 *		creating an empty overlay.
 *
 * Progress goes to the controller as MSG_MIGRATE_PROGRESS. A lost
 * connection is retried with backoff from where the copy stopped; a
 * checksum mismatch starts over, and is given up after a few tries.
 */
#include <sys/queue.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "opsn/conn.h"
#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/util.h"
#include "agent.h"
#include "domxml.h"
#include "imgcache.h"
#include "migrate.h"

#define MG_CHUNK	(256 * 1024)		/* bytes per DISK_DATA */
#define MG_SENDQ_MAX	((size_t)2 << 20)	/* read on below this */
#define MG_MAX_FRAME	(MG_CHUNK + 4096)
#define MG_RETRY_MIN_MS	500
#define MG_RETRY_MAX_MS	10000
#define MG_REPORT_MS	250
#define MG_TRIES	3			/* checksum mismatches */
#define MG_IDLE_MS	30000

/* ---- what the controller asked for ---- */

struct mg_serve {
	char		*vm, *peer, *token;
};

static struct agent	*ma;
static struct mg_serve	*mg_serves;
static size_t		 mg_nserves;
static SSL_CTX		*mg_srv_ctx, *mg_cli_ctx;
static uv_tcp_t		 mg_listener;
static int		 mg_listening;
static char		 mg_host[64];
static int		 mg_port;
static char		*mg_image_url;
static uint64_t		 mg_cut_at;	/* test builds: close once there */
static uint64_t		 mg_flip_at;	/* test builds: corrupt once there */

/* ---- source side: one session per connection ---- */

struct mg_sess {
	TAILQ_ENTRY(mg_sess) s_entry;
	struct conn	*s_conn;
	char		*s_peer;
	char		*s_vm;
	char		*s_path;
	int		 s_fd;
	uint64_t	 s_off, s_size;
	char		 s_sha[65];
	char		*s_err;
	int		 s_busy;	/* a read or a hash is in flight */
	uv_fs_t		 s_fs;
	uv_work_t	 s_work;
	uint8_t		*s_buf;
};
static TAILQ_HEAD(, mg_sess) mg_sessions = TAILQ_HEAD_INITIALIZER(mg_sessions);

/* ---- target side: one fetch per VM coming here ---- */

enum mg_state {
	MG_IMAGE,		/* waiting for the base image */
	MG_CONNECTING,
	MG_RECEIVING,
	MG_RETRY,		/* waiting to try again */
	MG_CHECKING,		/* hash, then rebase */
	MG_DONE,
	MG_FAILED,
};

struct mg_fetch {
	TAILQ_ENTRY(mg_fetch) f_entry;
	char		*f_vm, *f_source, *f_addr, *f_token;
	Opsn__ImageRef	*f_img;
	enum mg_state	 f_state;
	int		 f_gone;	/* cancelled: freed once idle */
	int		 f_pending;	/* callbacks still to come */
	struct conn	*f_conn;
	int		 f_fd;
	uint64_t	 f_have, f_total;
	char		 f_sha[65];	/* the source's */
	char		*f_base;	/* our copy of the base image */
	char		*f_error;
	int		 f_tries;
	unsigned	 f_backoff;
	uint64_t	 f_reported;	/* mono ms */
	uv_timer_t	 f_timer;
	uv_fs_t		 f_fs;
	uint8_t		*f_wbuf;
	uv_work_t	 f_work;
	int		 f_hash_ok;
	uv_process_t	 f_proc;
	int64_t		 f_exit;
};
static TAILQ_HEAD(, mg_fetch) mg_fetches = TAILQ_HEAD_INITIALIZER(mg_fetches);

static void	mg_fetch_connect(struct mg_fetch *);
static void	mg_fetch_release(struct mg_fetch *);
static void	mg_sess_next(struct mg_sess *);

/* ---- paths ---- */

static char *
mg_incoming_dir(void)
{
	char	*p;

	xasprintf(&p, "%s/incoming", hv_pool_folder());
	return (p);
}

/* Where a fetched disk waits for its VM (caller frees). */
char *
migrate_incoming_path(const char *vm_id)
{
	char	*p;

	xasprintf(&p, "%s/incoming/%s.qcow2", hv_pool_folder(), vm_id);
	return (p);
}

static char *
mg_part_path(const char *vm_id)
{
	char	*p;

	xasprintf(&p, "%s/incoming/%s.qcow2.part", hv_pool_folder(), vm_id);
	return (p);
}

/* ---- reports ---- */

static void
mg_report(struct mg_fetch *f, int force)
{
	Opsn__MigrateProgress	 p = OPSN__MIGRATE_PROGRESS__INIT;
	uint64_t		 now = util_mono_ms();

	if (!force && now - f->f_reported < MG_REPORT_MS)
		return;
	f->f_reported = now;
	p.vm_id = f->f_vm;
	p.have = f->f_have;
	p.total = f->f_total;
	p.done = f->f_state == MG_DONE;
	p.failed = f->f_state == MG_FAILED;
	p.error = f->f_error != NULL ? f->f_error : "";
	link_send(MSG_MIGRATE_PROGRESS, &p.base);
}

static void
mg_set_error(struct mg_fetch *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
mg_set_error(struct mg_fetch *f, const char *fmt, ...)
{
	va_list	 ap;

	free(f->f_error);
	va_start(ap, fmt);
	xvasprintf(&f->f_error, fmt, ap);
	va_end(ap);
	log_warnx("migrate: VM %s from %s: %s", f->f_vm, f->f_source,
	    f->f_error);
}

/* ---- TLS ---- */

/*
 * Node certificates are client certificates (extendedKeyUsage clientAuth),
 * and that is what the source presents here: both sides check that the
 * peer holds one signed by the controller's CA, then its CN.
 */
static int
mg_tls_init(char **cause)
{
	char	*ca = ma->conf.ca_file ? xstrdup(ma->conf.ca_file) :
		    enrol_path(ma, "ca.pem");
	char	*cert = enrol_path(ma, "cert.pem");
	char	*key = enrol_path(ma, "key.pem");
	int	 rc = -1;

	if ((mg_cli_ctx = enrol_ssl_ctx(ca, cert, key, cause)) == NULL)
		goto out;
	SSL_CTX_set_purpose(mg_cli_ctx, X509_PURPOSE_SSL_CLIENT);
	if ((mg_srv_ctx = SSL_CTX_new(TLS_server_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(mg_srv_ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_use_certificate_file(mg_srv_ctx, cert,
	    SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(mg_srv_ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(mg_srv_ctx, ca, NULL) != 1) {
		xasprintf(cause, "the disk server's TLS context (%s, %s)",
		    cert, ca);
		goto out;
	}
	SSL_CTX_set_verify(mg_srv_ctx, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	rc = 0;
out:
	free(ca);
	free(cert);
	free(key);
	return (rc);
}

/* The verified peer's CN (caller frees), or NULL. */
static char *
mg_peer_cn(struct conn *c)
{
	X509	*x = conn_peer_cert(c);

	return (x != NULL ? pki_cert_cn(x) : NULL);
}

/* ---- source: the disk server ---- */

static void
mg_sess_error(struct mg_sess *s, uint32_t status, const char *code,
    const char *msg)
{
	Opsn__Error	 e = OPSN__ERROR__INIT;

	log_warnx("migrate: %s asked for %s: %s", s->s_peer ? s->s_peer :
	    conn_peer_addr(s->s_conn), s->s_vm ? s->s_vm : "?", msg);
	e.code = (char *)code;
	e.message = (char *)msg;
	conn_send_msg(s->s_conn, OPSN_PROTO_MAX, MSG_ERROR, 0, status, &e.base);
	conn_close(s->s_conn, msg);
}

static void
mg_sess_free(struct mg_sess *s)
{
	TAILQ_REMOVE(&mg_sessions, s, s_entry);
	if (s->s_fd != -1)
		close(s->s_fd);
	free(s->s_peer);
	free(s->s_vm);
	free(s->s_path);
	free(s->s_err);
	free(s->s_buf);
	free(s);
}

/* On the pool: the file's size and SHA-256. */
static void
mg_sess_hash_cb(uv_work_t *w)
{
	struct mg_sess	*s = w->data;
	struct stat	 st;

	if ((s->s_fd = open(s->s_path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(s->s_fd, &st) == -1) {
		xasprintf(&s->s_err, "%s: %s", s->s_path, strerror(errno));
		return;
	}
	s->s_size = (uint64_t)st.st_size;
	imgcache_sha256_file(s->s_path, s->s_size, s->s_sha, &s->s_err);
}

static void
mg_sess_hash_after_cb(uv_work_t *w, int status)
{
	struct mg_sess		*s = w->data;
	Opsn__DiskInfo		 info = OPSN__DISK_INFO__INIT;

	s->s_busy = 0;
	if (s->s_conn == NULL) {
		mg_sess_free(s);
		return;
	}
	if (s->s_err != NULL) {
		mg_sess_error(s, ST_INTERNAL, "disk", s->s_err);
		return;
	}
	if (s->s_off > s->s_size) {
		mg_sess_error(s, ST_BAD_REQUEST, "offset", "the offset is past "
		    "the end of the disk");
		return;
	}
	info.size = s->s_size;
	info.sha256 = s->s_sha;
	conn_send_msg(s->s_conn, OPSN_PROTO_MAX, MSG_DISK_INFO, 0, ST_OK,
	    &info.base);
	log_info("migrate: sending the disk of VM %s to %s from byte %llu of "
	    "%llu", s->s_vm, s->s_peer, (unsigned long long)s->s_off,
	    (unsigned long long)s->s_size);
	mg_sess_next(s);
}

static void
mg_sess_read_cb(uv_fs_t *req)
{
	struct mg_sess		*s = req->data;
	Opsn__DiskData		 d = OPSN__DISK_DATA__INIT;
	ssize_t			 n = req->result;

	uv_fs_req_cleanup(req);
	s->s_busy = 0;
	if (s->s_conn == NULL) {
		mg_sess_free(s);
		return;
	}
	if (n <= 0) {
		mg_sess_error(s, ST_INTERNAL, "disk", n == 0 ? "the disk "
		    "shrank while it was sent" : uv_strerror((int)n));
		return;
	}
	if (mg_flip_at > s->s_off && mg_flip_at < s->s_off + (uint64_t)n) {
		/* Test builds: one byte goes wrong once on the way. */
		s->s_buf[mg_flip_at - s->s_off] ^= 0xff;
		mg_flip_at = 0;
	}
	d.offset = s->s_off;
	d.data.data = s->s_buf;
	d.data.len = (size_t)n;
	conn_send_msg(s->s_conn, OPSN_PROTO_MAX, MSG_DISK_DATA, 0, ST_OK,
	    &d.base);
	s->s_off += (uint64_t)n;
	if (mg_cut_at > 0 && s->s_off >= mg_cut_at) {
		/* Test builds: lose the connection once, mid-way. */
		mg_cut_at = 0;
		conn_close(s->s_conn, "cut on purpose (test build)");
		return;
	}
	mg_sess_next(s);
}

/* Read and send the next chunk, unless the send queue is full. */
static void
mg_sess_next(struct mg_sess *s)
{
	size_t	 len;

	if (s->s_busy || s->s_conn == NULL || s->s_off >= s->s_size ||
	    conn_sendq_bytes(s->s_conn) >= MG_SENDQ_MAX)
		return;
	if (s->s_buf == NULL)
		s->s_buf = xmalloc(MG_CHUNK);
	len = s->s_size - s->s_off < MG_CHUNK ? (size_t)(s->s_size -
	    s->s_off) : MG_CHUNK;
	s->s_busy = 1;
	s->s_fs.data = s;
	if (uv_fs_read(ma->loop, &s->s_fs, s->s_fd, &(uv_buf_t){
	    .base = (char *)s->s_buf, .len = len }, 1, (int64_t)s->s_off,
	    mg_sess_read_cb) != 0) {
		s->s_busy = 0;
		mg_sess_error(s, ST_INTERNAL, "disk", "cannot read the disk");
	}
}

static const struct mg_serve *
mg_serve_find(const char *vm, const char *peer)
{
	size_t	 i;

	for (i = 0; i < mg_nserves; i++)
		if (strcmp(mg_serves[i].vm, vm) == 0 &&
		    strcmp(mg_serves[i].peer, peer) == 0)
			return (&mg_serves[i]);
	return (NULL);
}

static void
mg_sess_ready_cb(struct conn *c, void *arg)
{
	struct mg_sess	*s = arg;

	if ((s->s_peer = mg_peer_cn(c)) == NULL)
		conn_close(c, "no node certificate");
}

static void
mg_sess_frame_cb(struct conn *c, const struct frame_hdr *h, const uint8_t *p,
    void *arg)
{
	struct mg_sess		*s = arg;
	const struct mg_serve	*sv;
	Opsn__DiskGet		*g;

	if (h->fh_type != MSG_DISK_GET || s->s_vm != NULL ||
	    s->s_peer == NULL) {
		mg_sess_error(s, ST_BAD_REQUEST, "bad_request", "one DISK_GET "
		    "per connection");
		return;
	}
	if ((g = opsn__disk_get__unpack(NULL, h->fh_len, p)) == NULL) {
		mg_sess_error(s, ST_BAD_REQUEST, "bad_request", "DISK_GET does "
		    "not decode");
		return;
	}
	s->s_vm = xstrndup(g->vm_id, 64);
	s->s_off = g->offset;
	sv = mg_serve_find(g->vm_id, s->s_peer);
	if (sv == NULL || strlen(sv->token) != strlen(g->token) ||
	    CRYPTO_memcmp(sv->token, g->token, strlen(sv->token)) != 0) {
		mg_sess_error(s, ST_DENIED, "not_expected", "no transfer of "
		    "this VM to this node is expected here (yet)");
		goto out;
	}
	/* Never a disk a running guest writes to. */
	if (!hv_vm_is_off(g->vm_id)) {
		mg_sess_error(s, ST_DENIED, "running", "the VM is not shut "
		    "off here (yet)");
		goto out;
	}
	s->s_path = hv_disk_path(g->vm_id);
	s->s_busy = 1;
	s->s_work.data = s;
	if (uv_queue_work(ma->loop, &s->s_work, mg_sess_hash_cb,
	    mg_sess_hash_after_cb) != 0)
		fatalx("migrate: cannot queue work");
out:
	opsn__disk_get__free_unpacked(g, NULL);
}

static void
mg_sess_drain_cb(struct conn *c, void *arg)
{
	mg_sess_next(arg);
}

static void
mg_sess_close_cb(struct conn *c, const char *reason, void *arg)
{
	struct mg_sess	*s = arg;

	log_debug("migrate: %s: disk server connection closed: %s",
	    s->s_peer ? s->s_peer : conn_peer_addr(c), reason);
	s->s_conn = NULL;
	if (!s->s_busy)
		mg_sess_free(s);
}

static const struct conn_cbs mg_sess_cbs = {
	mg_sess_ready_cb, mg_sess_frame_cb, mg_sess_drain_cb, mg_sess_close_cb
};

static void
mg_accept_cb(uv_stream_t *server, int status)
{
	struct conn_opts	 o = { 0 };
	struct mg_sess		*s;
	char			*cause = NULL;

	if (status < 0)
		return;
	s = xcalloc(1, sizeof(*s));
	s->s_fd = -1;
	o.co_idle_timeout_ms = MG_IDLE_MS;
	if ((s->s_conn = conn_accept(server, mg_srv_ctx, &o, &mg_sess_cbs, s,
	    &cause)) == NULL) {
		log_warnx("migrate: %s", cause);
		free(cause);
		free(s);
		return;
	}
	TAILQ_INSERT_TAIL(&mg_sessions, s, s_entry);
}

/* ---- target: fetches ---- */

static struct mg_fetch *
mg_fetch_find(const char *vm)
{
	struct mg_fetch	*f;

	TAILQ_FOREACH(f, &mg_fetches, f_entry)
		if (!f->f_gone && strcmp(f->f_vm, vm) == 0)
			return (f);
	return (NULL);
}

static void
mg_fetch_free_cb(uv_handle_t *h)
{
	struct mg_fetch	*f = h->data;

	free(f->f_vm);
	free(f->f_source);
	free(f->f_addr);
	free(f->f_token);
	free(f->f_base);
	free(f->f_error);
	opsn__image_ref__free_unpacked(f->f_img, NULL);
	free(f);
}

/* Free a cancelled fetch once nothing of it is in flight. */
static void
mg_fetch_release(struct mg_fetch *f)
{
	if (!f->f_gone || f->f_pending > 0 || f->f_conn != NULL)
		return;
	if (f->f_fd != -1)
		close(f->f_fd);
	f->f_fd = -1;
	TAILQ_REMOVE(&mg_fetches, f, f_entry);
	uv_close((uv_handle_t *)&f->f_timer, mg_fetch_free_cb);
}

static void
mg_fetch_retry_cb(uv_timer_t *t)
{
	mg_fetch_connect(t->data);
}

/* Try again later, from where the copy is. */
static void
mg_fetch_retry(struct mg_fetch *f)
{
	uint64_t	 delay;

	if (f->f_gone || f->f_state == MG_DONE || f->f_state == MG_FAILED)
		return;
	delay = (uint64_t)MG_RETRY_MIN_MS << (f->f_backoff < 5 ?
	    f->f_backoff : 5);
	if (delay > MG_RETRY_MAX_MS)
		delay = MG_RETRY_MAX_MS;
	f->f_backoff++;
	f->f_state = MG_RETRY;
	mg_report(f, 1);
	uv_timer_start(&f->f_timer, mg_fetch_retry_cb, delay, 0);
}

/* The whole disk is here: hash it on the pool. */
static void
mg_check_work_cb(uv_work_t *w)
{
	struct mg_fetch	*f = w->data;
	char		*part = mg_part_path(f->f_vm), sha[65], *cause = NULL;

	f->f_hash_ok = 0;
	if (f->f_fd != -1 && fsync(f->f_fd) == -1)
		xasprintf(&cause, "fsync: %s", strerror(errno));
	else if (imgcache_sha256_file(part, f->f_total, sha, &cause) == 0)
		f->f_hash_ok = strcmp(sha, f->f_sha) == 0 ? 1 : -1;
	free(f->f_error);
	f->f_error = cause;
	free(part);
}

static void
mg_rebase_close_cb(uv_handle_t *h)
{
	struct mg_fetch	*f = h->data;
	char		*part, *final;
	unsigned long	 uid, gid;

	f->f_pending--;
	if (f->f_gone) {
		mg_fetch_release(f);
		return;
	}
	part = mg_part_path(f->f_vm);
	final = migrate_incoming_path(f->f_vm);
	if (f->f_exit != 0) {
		mg_set_error(f, "qemu-img rebase onto %s failed (status %lld)",
		    f->f_base, (long long)f->f_exit);
		f->f_state = MG_FAILED;
	} else if (hv_qemu_label() != NULL && domxml_label_ids(
	    hv_qemu_label(), &uid, &gid) == 0 && chown(part, (uid_t)uid,
	    (gid_t)gid) == -1) {
		mg_set_error(f, "chown %s: %s", part, strerror(errno));
		f->f_state = MG_FAILED;
	} else if (rename(part, final) == -1) {
		mg_set_error(f, "rename %s: %s", part, strerror(errno));
		f->f_state = MG_FAILED;
	} else {
		free(f->f_error);
		f->f_error = NULL;
		f->f_state = MG_DONE;
		log_info("migrate: VM %s: disk from %s complete and checked "
		    "(%llu bytes)", f->f_vm, f->f_source,
		    (unsigned long long)f->f_total);
	}
	mg_report(f, 1);
	free(part);
	free(final);
}

static void
mg_rebase_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	struct mg_fetch	*f = p->data;

	f->f_exit = sig != 0 ? -sig : status;
	uv_close((uv_handle_t *)p, mg_rebase_close_cb);
}

/* Point the overlay's backing file at our copy of the base image. */
static void
mg_rebase(struct mg_fetch *f)
{
	uv_process_options_t	 o;
	uv_stdio_container_t	 io[3];
	char			*part = mg_part_path(f->f_vm);
	char			*argv[] = { "qemu-img", "rebase", "-u", "-F",
				    f->f_img->format, "-b", f->f_base, part,
				    NULL };
	int			 r;

	memset(&o, 0, sizeof(o));
	memset(io, 0, sizeof(io));
	io[0].flags = io[1].flags = io[2].flags = UV_IGNORE;
	o.file = "qemu-img";
	o.args = argv;
	o.exit_cb = mg_rebase_exit_cb;
	o.stdio = io;
	o.stdio_count = 3;
	f->f_proc.data = f;
	if ((r = uv_spawn(ma->loop, &f->f_proc, &o)) != 0) {
		/* A failed spawn still has a handle to close. */
		f->f_exit = r;
		f->f_pending++;
		uv_close((uv_handle_t *)&f->f_proc, mg_rebase_close_cb);
	} else
		f->f_pending++;
	free(part);
}

static void
mg_check_after_cb(uv_work_t *w, int status)
{
	struct mg_fetch	*f = w->data;
	char		*part;

	f->f_pending--;
	if (f->f_fd != -1)
		close(f->f_fd);
	f->f_fd = -1;
	if (f->f_gone) {
		mg_fetch_release(f);
		return;
	}
	if (f->f_hash_ok == 1) {
		mg_rebase(f);
		return;
	}
	if (f->f_hash_ok == -1) {
		/* Start over: what we have is not what the source has. */
		part = mg_part_path(f->f_vm);
		unlink(part);
		free(part);
		f->f_have = 0;
		mg_set_error(f, "the copy's SHA-256 does not match the "
		    "source's (try %d of %d)", f->f_tries + 1, MG_TRIES);
		if (++f->f_tries >= MG_TRIES) {
			f->f_state = MG_FAILED;
			mg_report(f, 1);
			return;
		}
	}
	mg_fetch_retry(f);
}

static void
mg_check(struct mg_fetch *f)
{
	f->f_state = MG_CHECKING;
	f->f_pending++;
	f->f_work.data = f;
	mg_report(f, 1);
	if (uv_queue_work(ma->loop, &f->f_work, mg_check_work_cb,
	    mg_check_after_cb) != 0)
		fatalx("migrate: cannot queue work");
}

static void
mg_write_cb(uv_fs_t *req)
{
	struct mg_fetch	*f = req->data;
	ssize_t		 n = req->result;

	uv_fs_req_cleanup(req);
	free(f->f_wbuf);
	f->f_wbuf = NULL;
	f->f_pending--;
	if (f->f_gone) {
		if (f->f_conn != NULL)
			conn_close(f->f_conn, "cancelled");
		mg_fetch_release(f);
		return;
	}
	if (n < 0) {
		mg_set_error(f, "writing the disk: %s", uv_strerror((int)n));
		if (f->f_conn != NULL)
			conn_close(f->f_conn, f->f_error);
		else
			mg_fetch_retry(f);
		return;
	}
	f->f_have += (uint64_t)n;
	f->f_backoff = 0;
	if (f->f_have >= f->f_total) {
		if (f->f_conn != NULL)
			conn_close(f->f_conn, "complete");
		mg_check(f);
		return;
	}
	mg_report(f, 0);
	if (f->f_conn != NULL)
		conn_resume_read(f->f_conn);
	else
		mg_fetch_retry(f);
}

static int
mg_open_part(struct mg_fetch *f)
{
	char	*part = mg_part_path(f->f_vm);

	if (f->f_fd == -1 && (f->f_fd = open(part, O_WRONLY | O_CREAT |
	    O_CLOEXEC, 0600)) == -1)
		mg_set_error(f, "%s: %s", part, strerror(errno));
	free(part);
	return (f->f_fd == -1 ? -1 : 0);
}

static void
mg_fetch_ready_cb(struct conn *c, void *arg)
{
	struct mg_fetch	*f = arg;
	Opsn__DiskGet	 g = OPSN__DISK_GET__INIT;
	char		*cn = mg_peer_cn(c);

	if (cn == NULL || strcmp(cn, f->f_source) != 0) {
		mg_set_error(f, "%s answered as '%s', not as node %s",
		    f->f_addr, cn ? cn : "?", f->f_source);
		free(cn);
		conn_close(c, f->f_error);
		return;
	}
	free(cn);
	f->f_state = MG_RECEIVING;
	g.vm_id = f->f_vm;
	g.token = f->f_token;
	g.offset = f->f_have;
	conn_send_msg(c, OPSN_PROTO_MAX, MSG_DISK_GET, 0, ST_OK, &g.base);
}

static void
mg_fetch_frame_cb(struct conn *c, const struct frame_hdr *h,
    const uint8_t *p, void *arg)
{
	struct mg_fetch	*f = arg;
	Opsn__DiskInfo	*info;
	Opsn__DiskData	*d;
	Opsn__Error	*e;

	if (f->f_gone)
		return;
	switch (h->fh_type) {
	case MSG_ERROR:
		if ((e = opsn__error__unpack(NULL, h->fh_len, p)) != NULL) {
			mg_set_error(f, "%s: %s", f->f_source, e->message);
			opsn__error__free_unpacked(e, NULL);
		}
		return;
	case MSG_DISK_INFO:
		if ((info = opsn__disk_info__unpack(NULL, h->fh_len, p)) ==
		    NULL || strlen(info->sha256) != 64) {
			if (info != NULL)
				opsn__disk_info__free_unpacked(info, NULL);
			conn_close(c, "DISK_INFO does not decode");
			return;
		}
		f->f_total = info->size;
		strlcpy(f->f_sha, info->sha256, sizeof(f->f_sha));
		opsn__disk_info__free_unpacked(info, NULL);
		if (mg_open_part(f) == -1) {
			conn_close(c, f->f_error);
			return;
		}
		if (f->f_have >= f->f_total) {
			/* All here already (an earlier attempt). */
			conn_close(c, "complete");
			mg_check(f);
		} else
			mg_report(f, 1);
		return;
	case MSG_DISK_DATA:
		if ((d = opsn__disk_data__unpack(NULL, h->fh_len, p)) == NULL ||
		    d->offset != f->f_have || f->f_fd == -1 ||
		    d->data.len == 0 || d->offset + d->data.len > f->f_total) {
			if (d != NULL)
				opsn__disk_data__free_unpacked(d, NULL);
			conn_close(c, "DISK_DATA out of place");
			return;
		}
		/* One write at a time: stop reading until it is done. */
		conn_pause_read(c);
		f->f_wbuf = xmalloc(d->data.len);
		memcpy(f->f_wbuf, d->data.data, d->data.len);
		f->f_fs.data = f;
		f->f_pending++;
		if (uv_fs_write(ma->loop, &f->f_fs, f->f_fd, &(uv_buf_t){
		    .base = (char *)f->f_wbuf, .len = d->data.len }, 1,
		    (int64_t)d->offset, mg_write_cb) != 0) {
			f->f_pending--;
			free(f->f_wbuf);
			f->f_wbuf = NULL;
			conn_close(c, "cannot write the disk");
		}
		opsn__disk_data__free_unpacked(d, NULL);
		return;
	}
	conn_close(c, "unexpected message");
}

static void
mg_fetch_close_cb(struct conn *c, const char *reason, void *arg)
{
	struct mg_fetch	*f = arg;

	f->f_conn = NULL;
	if (f->f_gone) {
		mg_fetch_release(f);
		return;
	}
	if (f->f_state == MG_CONNECTING || f->f_state == MG_RECEIVING) {
		if (f->f_error == NULL || strcmp(reason, "peer closed") != 0)
			mg_set_error(f, "connection to %s (%s): %s",
			    f->f_source, f->f_addr, reason);
		/* A write in flight decides when it is done. */
		if (f->f_wbuf == NULL)
			mg_fetch_retry(f);
	}
}

static const struct conn_cbs mg_fetch_cbs = {
	mg_fetch_ready_cb, mg_fetch_frame_cb, NULL, mg_fetch_close_cb
};

static void
mg_fetch_connect(struct mg_fetch *f)
{
	struct conn_opts	 o = { 0 };
	struct stat		 st;
	char			*host = NULL, *cause = NULL, *part, *dir;
	int			 port;

	if (f->f_gone)
		return;
	dir = mg_incoming_dir();
	if (util_mkdirs(dir, 0700, &cause) == -1) {
		mg_set_error(f, "%s", cause);
		free(cause);
		free(dir);
		f->f_state = MG_FAILED;
		mg_report(f, 1);
		return;
	}
	free(dir);
	/* Resume: what is already in the part file stays. */
	part = mg_part_path(f->f_vm);
	f->f_have = stat(part, &st) == 0 ? (uint64_t)st.st_size : 0;
	free(part);
	if (util_parse_hostport(f->f_addr, &host, &port, &cause) == -1) {
		mg_set_error(f, "node %s has no disk server address (%s)",
		    f->f_source, cause);
		free(cause);
		mg_fetch_retry(f);
		return;
	}
	o.co_max_frame = MG_MAX_FRAME;
	o.co_idle_timeout_ms = MG_IDLE_MS;
	f->f_state = MG_CONNECTING;
	if ((f->f_conn = conn_connect(ma->loop, host, port, mg_cli_ctx, NULL,
	    &o, &mg_fetch_cbs, f, &cause)) == NULL) {
		mg_set_error(f, "%s", cause);
		free(cause);
		mg_fetch_retry(f);
	}
	free(host);
}

static void
mg_image_cb(void *arg, const struct imgcache_result *res)
{
	struct mg_fetch	*f = arg;

	f->f_pending--;
	if (f->f_gone) {
		mg_fetch_release(f);
		return;
	}
	if (!res->ir_ok) {
		mg_set_error(f, "the base image: %s", res->ir_error ?
		    res->ir_error : "not available");
		f->f_state = MG_FAILED;
		mg_report(f, 1);
		return;
	}
	free(f->f_base);
	f->f_base = xstrdup(res->ir_disk);
	mg_fetch_connect(f);
}

static void
mg_fetch_start(const Opsn__DiskFetch *df)
{
	struct mg_fetch	*f = xcalloc(1, sizeof(*f));
	char		*final = migrate_incoming_path(df->vm_id);

	f->f_vm = xstrdup(df->vm_id);
	f->f_source = xstrdup(df->source);
	f->f_addr = xstrdup(df->address);
	f->f_token = xstrdup(df->token);
	f->f_img = hv_image_copy(df->image);
	f->f_fd = -1;
	uv_timer_init(ma->loop, &f->f_timer);
	f->f_timer.data = f;
	TAILQ_INSERT_TAIL(&mg_fetches, f, f_entry);
	if (access(final, F_OK) == 0) {
		/* Fetched and checked before a restart. */
		f->f_state = MG_DONE;
		mg_report(f, 1);
	} else {
		log_info("migrate: VM %s: fetching its disk from %s (%s)",
		    f->f_vm, f->f_source, f->f_addr);
		f->f_state = MG_IMAGE;
		f->f_pending++;
		imgcache_ensure(f->f_img, mg_image_url, mg_image_cb, f);
	}
	free(final);
}

/* Stop a fetch the controller no longer wants; keep a disk hv.c takes. */
static void
mg_fetch_cancel(struct mg_fetch *f)
{
	char	*p;

	f->f_gone = 1;
	uv_timer_stop(&f->f_timer);
	if (f->f_conn != NULL)
		conn_close(f->f_conn, "no longer wanted");
	p = mg_part_path(f->f_vm);
	unlink(p);
	free(p);
	if (!hv_vm_wanted(f->f_vm)) {
		p = migrate_incoming_path(f->f_vm);
		if (unlink(p) == 0)
			log_info("migrate: VM %s: the fetched disk is not "
			    "wanted any more: removed", f->f_vm);
		free(p);
	}
	mg_fetch_release(f);
}

/* A new desired state: its serve and fetch lists replace the old ones. */
void
migrate_desired(const Opsn__DesiredState *ds)
{
	struct mg_fetch	*f, *next;
	size_t		 i;

	if (ma == NULL)
		return;
	for (i = 0; i < mg_nserves; i++) {
		free(mg_serves[i].vm);
		free(mg_serves[i].peer);
		free(mg_serves[i].token);
	}
	free(mg_serves);
	mg_serves = xcalloc(ds->n_serve + 1, sizeof(*mg_serves));
	mg_nserves = ds->n_serve;
	for (i = 0; i < ds->n_serve; i++) {
		mg_serves[i].vm = xstrdup(ds->serve[i]->vm_id);
		mg_serves[i].peer = xstrdup(ds->serve[i]->peer);
		mg_serves[i].token = xstrdup(ds->serve[i]->token);
	}
	free(mg_image_url);
	mg_image_url = xstrdup(ds->image_url);
	for (f = TAILQ_FIRST(&mg_fetches); f != NULL; f = next) {
		next = TAILQ_NEXT(f, f_entry);
		if (f->f_gone)
			continue;
		for (i = 0; i < ds->n_fetch; i++)
			if (strcmp(ds->fetch[i]->vm_id, f->f_vm) == 0)
				break;
		if (i == ds->n_fetch)
			mg_fetch_cancel(f);
	}
	for (i = 0; i < ds->n_fetch; i++) {
		if (ds->fetch[i]->image == NULL || strlen(ds->fetch[i]->vm_id) !=
		    36 || strchr(ds->fetch[i]->vm_id, '/') != NULL)
			continue;
		if ((f = mg_fetch_find(ds->fetch[i]->vm_id)) != NULL) {
			/* The source may have moved (a new address). */
			free(f->f_addr);
			f->f_addr = xstrdup(ds->fetch[i]->address);
			free(f->f_token);
			f->f_token = xstrdup(ds->fetch[i]->token);
			continue;
		}
		mg_fetch_start(ds->fetch[i]);
	}
}

/* The link is up: where our disk server is, and every fetch's state. */
void
migrate_on_connected(void)
{
	Opsn__DiskServer	 ds = OPSN__DISK_SERVER__INIT;
	struct mg_fetch		*f;

	if (ma == NULL)
		return;
	if (mg_listening) {
		ds.host = mg_host;
		ds.port = (uint32_t)mg_port;
		link_send(MSG_DISK_SERVER, &ds.base);
	}
	TAILQ_FOREACH(f, &mg_fetches, f_entry)
		if (!f->f_gone)
			mg_report(f, 1);
}

/* Listen for other agents on [hypervisor] disk_listen. */
int
migrate_init(struct agent *a, char **cause)
{
	struct sockaddr_storage	 ss;
	int			 len = sizeof(ss), r, port;
	char			*host = NULL;
	const char		*cut, *flip;

	ma = a;
#ifdef OPSN_TEST_BUILD
	/*
	 * Test builds: cut a disk transfer once, to show it resumes; corrupt
	 * one byte once, to show the checksum catches it and the copy starts
	 * over.
	 */
	if ((cut = getenv("OPSN_TEST_DISK_CUT")) != NULL)
		mg_cut_at = strtoull(cut, NULL, 10);
	if ((flip = getenv("OPSN_TEST_DISK_FLIP")) != NULL)
		mg_flip_at = strtoull(flip, NULL, 10);
#else
	(void)cut;
	(void)flip;
#endif
	if (mg_tls_init(cause) == -1)
		return (-1);
	if (util_parse_hostport(a->conf.disk_listen, &host, &port,
	    cause) == -1)
		return (-1);
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
		xasprintf(cause, "disk_listen: '%s' is not an IP address",
		    host);
		free(host);
		return (-1);
	}
	uv_tcp_init(a->loop, &mg_listener);
	if ((r = uv_tcp_bind(&mg_listener, (struct sockaddr *)&ss, 0)) != 0 ||
	    (r = uv_listen((uv_stream_t *)&mg_listener, 64,
	    mg_accept_cb)) != 0 || (r = uv_tcp_getsockname(&mg_listener,
	    (struct sockaddr *)&ss, &len)) != 0) {
		xasprintf(cause, "disk_listen %s: %s", a->conf.disk_listen,
		    uv_strerror(r));
		free(host);
		uv_close((uv_handle_t *)&mg_listener, NULL);
		return (-1);
	}
	mg_port = ntohs(ss.ss_family == AF_INET6 ?
	    ((struct sockaddr_in6 *)&ss)->sin6_port :
	    ((struct sockaddr_in *)&ss)->sin_port);
	/* A wildcard address: the controller uses the one it sees. */
	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
		mg_host[0] = '\0';
	else
		strlcpy(mg_host, host, sizeof(mg_host));
	free(host);
	mg_listening = 1;
	log_info("migrate: disk server on %s (port %d)", a->conf.disk_listen,
	    mg_port);
	return (0);
}

/* Close the listener and every transfer (the process is ending). */
void
migrate_stop(void)
{
	struct mg_sess	*s;
	struct mg_fetch	*f, *next;

	if (ma == NULL)
		return;
	if (mg_listening && !uv_is_closing((uv_handle_t *)&mg_listener))
		uv_close((uv_handle_t *)&mg_listener, NULL);
	mg_listening = 0;
	TAILQ_FOREACH(s, &mg_sessions, s_entry)
		if (s->s_conn != NULL)
			conn_close(s->s_conn, "agent stopping");
	/* Fetches keep their part files: the next start resumes them. */
	for (f = TAILQ_FIRST(&mg_fetches); f != NULL; f = next) {
		next = TAILQ_NEXT(f, f_entry);
		if (f->f_gone)
			continue;
		f->f_gone = 1;
		uv_timer_stop(&f->f_timer);
		if (f->f_conn != NULL)
			conn_close(f->f_conn, "agent stopping");
		mg_fetch_release(f);
	}
	SSL_CTX_free(mg_srv_ctx);
	SSL_CTX_free(mg_cli_ctx);
	mg_srv_ctx = mg_cli_ctx = NULL;
}
