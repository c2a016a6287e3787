/*
 * A framed TLS 1.3 connection over a libuv TCP stream.
 *
 * OpenSSL never touches the socket: ciphertext read by libuv is written
 * into a memory BIO (rbio) that SSL reads from, and whatever SSL writes
 * into the other memory BIO (wbio) is drained into uv_write requests. So
 * every SSL call is followed by a wbio flush, including failed handshake
 * steps (they may have produced an alert).
 *
 * Lifetime: conn_close() only starts closing; the struct stays valid until
 * the last uv close callback, which calls on_close and frees it. Every
 * callback into the user checks c_closing afterwards and stops at once.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "opsn/conn.h"
#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"

#define CONN_HANDSHAKE_TIMEOUT_MS	10000
#define CONN_SENDQ_HIGH			(8 * 1024 * 1024)
/* How long a closing connection may spend flushing before it is cut. */
#define CONN_CLOSE_TIMEOUT_MS		5000
#define CONN_READ_BUF			(64 * 1024)
#define CONN_TLS_BUF			(16 * 1024)

/*
 * Read buffers are shared by every connection of a loop thread: libuv
 * calls alloc_cb and read_cb back to back, and both buffers are consumed
 * before read_cb returns (the frame reader copies what it keeps). This
 * keeps an idle connection small (1,000 agents on one controller).
 */
static __thread char	 conn_rbuf[CONN_READ_BUF];
static __thread uint8_t	 conn_pbuf[CONN_TLS_BUF];

enum conn_how {
	CONN_GRACEFUL,	/* flush the queue, send close_notify, then FIN */
	CONN_NOTLS,	/* TLS is dead: send what is encrypted (an alert) */
	CONN_ABORT,	/* the socket is unusable: close the handles now */
};

/* One frame of plaintext waiting for SSL_write. */
struct conn_out {
	TAILQ_ENTRY(conn_out)	 o_entry;
	size_t			 o_len;
	size_t			 o_off;
	uint8_t			 o_data[];
};
TAILQ_HEAD(conn_outq, conn_out);

/* A uv_write request owns its ciphertext until conn_write_cb. */
struct conn_wreq {
	uv_write_t		 w_req;
	struct conn		*w_conn;
	size_t			 w_len;
	char			 w_data[];
};

struct conn {
	uv_loop_t		*c_loop;
	uv_tcp_t		 c_tcp;
	uv_timer_t		 c_timer;
	uv_getaddrinfo_t	 c_gai;
	uv_connect_t		 c_connreq;
	uv_shutdown_t		 c_shutreq;
	int			 c_nhandles;	/* initialised, not yet closed */
	int			 c_gai_pending;

	SSL			*c_ssl;
	BIO			*c_rbio;	/* owned by c_ssl */
	BIO			*c_wbio;	/* owned by c_ssl */

	struct conn_opts	 c_opts;
	struct conn_cbs		 c_cbs;
	void			*c_arg;

	struct frame_reader	 c_reader;
	struct conn_outq	 c_outq;
	size_t			 c_outq_bytes;	/* plaintext not yet encrypted */
	size_t			 c_inflight;	/* ciphertext in uv_write */
	int			 c_want_drain;

	char			*c_host;
	int			 c_port;
	char			 c_peer[INET6_ADDRSTRLEN + 16];
	uint64_t		 c_last_rx;	/* uv_now() of the last read */

	int			 c_connected;
	int			 c_ready;
	int			 c_reading;
	int			 c_paused;
	int			 c_tls_dead;	/* no more SSL_write/SSL_shutdown */
	int			 c_wr_shut;	/* no more uv_write */
	int			 c_shut_done;	/* our FIN is out */
	int			 c_peer_eof;	/* the peer's FIN is in */
	int			 c_closing;
	int			 c_handles_closing;
	int			 c_silent;	/* failed constructor: no on_close */
	char			*c_reason;

};

static struct conn *conn_new(uv_loop_t *, SSL_CTX *, const struct conn_opts *,
		    const struct conn_cbs *, void *, char **);
static int	conn_init_handles(struct conn *, char **);
static void	conn_free(struct conn *);
static void	conn_maybe_free(struct conn *);
static void	conn_close_cb(uv_handle_t *);
static void	conn_close_handles(struct conn *);
static void	conn_close_silent(struct conn *);
static void	conn_close_how(struct conn *, enum conn_how, const char *);
static void	conn_closef(struct conn *, enum conn_how, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static void	conn_tls_fail(struct conn *, const char *);
static void	conn_set_peer(struct conn *, const struct sockaddr *);
static int	conn_read_start(struct conn *);
static void	conn_read_stop(struct conn *);
static void	conn_alloc_cb(uv_handle_t *, size_t, uv_buf_t *);
static void	conn_read_cb(uv_stream_t *, ssize_t, const uv_buf_t *);
static void	conn_tls_advance(struct conn *);
static int	conn_frame_cb(const struct frame_hdr *, const uint8_t *, void *);
static int	conn_flush_plain(struct conn *);
static int	conn_flush_wbio(struct conn *);
static void	conn_write_cb(uv_write_t *, int);
static void	conn_check_drain(struct conn *);
static void	conn_shutdown_cb(uv_shutdown_t *, int);
static void	conn_timer_cb(uv_timer_t *);
static void	conn_start_connect(struct conn *, const struct sockaddr *);
static void	conn_resolve_cb(uv_getaddrinfo_t *, int, struct addrinfo *);
static void	conn_connect_cb(uv_connect_t *, int);
static int	conn_send_check(struct conn *, size_t);
static struct conn_out *conn_out_new(uint16_t, uint16_t, uint32_t, uint32_t,
		    size_t);
static int	conn_out_push(struct conn *, struct conn_out *);

/* Allocate a connection and its TLS state; no uv handle exists yet. */
static struct conn *
conn_new(uv_loop_t *loop, SSL_CTX *ctx, const struct conn_opts *opts,
    const struct conn_cbs *cbs, void *arg, char **cause)
{
	struct conn	*c;
	char		 buf[256];

	c = xcalloc(1, sizeof(*c));
	c->c_loop = loop;
	if (opts != NULL)
		c->c_opts = *opts;
	if (c->c_opts.co_max_frame == 0)
		c->c_opts.co_max_frame = FRAME_MAX_PREAUTH;
	if (c->c_opts.co_max_frame > FRAME_MAX)
		c->c_opts.co_max_frame = FRAME_MAX;
	if (c->c_opts.co_handshake_timeout_ms == 0)
		c->c_opts.co_handshake_timeout_ms = CONN_HANDSHAKE_TIMEOUT_MS;
	if (c->c_opts.co_sendq_high == 0)
		c->c_opts.co_sendq_high = CONN_SENDQ_HIGH;
	if (c->c_opts.co_sendq_low == 0 ||
	    c->c_opts.co_sendq_low > c->c_opts.co_sendq_high)
		c->c_opts.co_sendq_low = c->c_opts.co_sendq_high / 4;
	if (cbs != NULL)
		c->c_cbs = *cbs;
	c->c_arg = arg;
	frame_reader_init(&c->c_reader, c->c_opts.co_max_frame);
	TAILQ_INIT(&c->c_outq);
	snprintf(c->c_peer, sizeof(c->c_peer), "-");

	ERR_clear_error();
	if ((c->c_ssl = SSL_new(ctx)) == NULL)
		goto fail;
	if ((c->c_rbio = BIO_new(BIO_s_mem())) == NULL)
		goto fail;
	if ((c->c_wbio = BIO_new(BIO_s_mem())) == NULL) {
		BIO_free(c->c_rbio);
		c->c_rbio = NULL;
		goto fail;
	}
	SSL_set_bio(c->c_ssl, c->c_rbio, c->c_wbio);
	/* The caller's ctx should say so already; the code here relies on it. */
	if (SSL_set_min_proto_version(c->c_ssl, TLS1_3_VERSION) != 1)
		goto fail;
	return (c);

fail:
	ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
	ERR_clear_error();
	xasprintf(cause, "cannot set up TLS: %s", buf);
	conn_free(c);
	return (NULL);
}

/* Initialise the TCP and timer handles; on failure none is left open. */
static int
conn_init_handles(struct conn *c, char **cause)
{
	int	 r;

	if ((r = uv_tcp_init(c->c_loop, &c->c_tcp)) != 0) {
		xasprintf(cause, "cannot create socket: %s", uv_strerror(r));
		return (-1);
	}
	c->c_tcp.data = c;
	c->c_nhandles++;
	if ((r = uv_timer_init(c->c_loop, &c->c_timer)) != 0) {
		/* Unreachable in libuv 1.x; the tcp close callback frees. */
		xasprintf(cause, "cannot create timer: %s", uv_strerror(r));
		c->c_silent = 1;
		c->c_closing = 1;
		c->c_handles_closing = 1;
		uv_close((uv_handle_t *)&c->c_tcp, conn_close_cb);
		return (-2);
	}
	c->c_timer.data = c;
	c->c_nhandles++;
	return (0);
}

static void
conn_free(struct conn *c)
{
	struct conn_out	*o;

	if (c == NULL)
		return;
	while ((o = TAILQ_FIRST(&c->c_outq)) != NULL) {
		TAILQ_REMOVE(&c->c_outq, o, o_entry);
		free(o);
	}
	frame_reader_free(&c->c_reader);
	SSL_free(c->c_ssl);
	free(c->c_host);
	free(c->c_reason);
	free(c);
}

/* Free once every handle is closed and no request can call back. */
static void
conn_maybe_free(struct conn *c)
{
	if (c->c_nhandles > 0 || c->c_gai_pending)
		return;
	if (!c->c_silent && c->c_cbs.on_close != NULL)
		c->c_cbs.on_close(c, c->c_reason != NULL ? c->c_reason :
		    "closed", c->c_arg);
	conn_free(c);
}

static void
conn_close_cb(uv_handle_t *h)
{
	struct conn	*c = h->data;

	c->c_nhandles--;
	conn_maybe_free(c);
}

/* Close both handles; pending writes, connect and shutdown get cancelled. */
static void
conn_close_handles(struct conn *c)
{
	if (c->c_handles_closing)
		return;
	c->c_handles_closing = 1;
	c->c_closing = 1;
	c->c_wr_shut = 1;
	if (c->c_gai_pending)
		uv_cancel((uv_req_t *)&c->c_gai);
	uv_close((uv_handle_t *)&c->c_tcp, conn_close_cb);
	uv_close((uv_handle_t *)&c->c_timer, conn_close_cb);
}

/* A constructor failed after the handles existed: free without on_close. */
static void
conn_close_silent(struct conn *c)
{
	c->c_silent = 1;
	c->c_closing = 1;
	conn_close_handles(c);
}

static void
conn_close_how(struct conn *c, enum conn_how how, const char *reason)
{
	if (c->c_closing) {
		/* Already closing: an abort only cuts the flush short. */
		if (how == CONN_ABORT)
			conn_close_handles(c);
		return;
	}
	c->c_closing = 1;
	c->c_reason = xstrdup(reason != NULL ? reason : "closed");
	log_debug("conn %s: closing: %s", c->c_peer, c->c_reason);

	/*
	 * A graceful close keeps reading (and discards) until the peer's FIN:
	 * closing with unread input would send a RST, and the peer could
	 * lose the end of what we sent.
	 */
	if (how == CONN_ABORT || !c->c_connected)
		conn_read_stop(c);
	uv_timer_stop(&c->c_timer);

	if (how == CONN_GRACEFUL && c->c_ready && !c->c_tls_dead) {
		if (conn_flush_plain(c) == 0 && !c->c_tls_dead) {
			/* Once: we do not wait for the peer's close_notify. */
			ERR_clear_error();
			SSL_shutdown(c->c_ssl);
			ERR_clear_error();
		}
	}
	if (how != CONN_ABORT && c->c_connected && !c->c_wr_shut) {
		conn_flush_wbio(c);
		/* uv_shutdown waits for the queued writes, then sends FIN. */
		c->c_shutreq.data = c;
		if (!c->c_handles_closing && uv_shutdown(&c->c_shutreq,
		    (uv_stream_t *)&c->c_tcp, conn_shutdown_cb) == 0) {
			c->c_wr_shut = 1;
			uv_timer_start(&c->c_timer, conn_timer_cb,
			    CONN_CLOSE_TIMEOUT_MS, 0);
			return;
		}
	}
	conn_close_handles(c);
}

static void
conn_closef(struct conn *c, enum conn_how how, const char *fmt, ...)
{
	va_list	 ap;
	char	*reason;

	va_start(ap, fmt);
	xvasprintf(&reason, fmt, ap);
	va_end(ap);
	conn_close_how(c, how, reason);
	free(reason);
}

/* Close after a fatal TLS error, with OpenSSL's reason for it. */
static void
conn_tls_fail(struct conn *c, const char *what)
{
	char		 buf[256];
	unsigned long	 e;
	long		 v;

	c->c_tls_dead = 1;
	if ((e = ERR_get_error()) != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "unexpected TLS error");
	ERR_clear_error();
	v = SSL_get_verify_result(c->c_ssl);
	if (v != X509_V_OK)
		conn_closef(c, CONN_NOTLS, "%s: %s (%s)", what, buf,
		    X509_verify_cert_error_string(v));
	else
		conn_closef(c, CONN_NOTLS, "%s: %s", what, buf);
}

static void
conn_set_peer(struct conn *c, const struct sockaddr *sa)
{
	char	 addr[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		uv_ip4_name(sin, addr, sizeof(addr));
		snprintf(c->c_peer, sizeof(c->c_peer), "%s:%u", addr,
		    ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)sa;

		uv_ip6_name(sin6, addr, sizeof(addr));
		snprintf(c->c_peer, sizeof(c->c_peer), "[%s]:%u", addr,
		    ntohs(sin6->sin6_port));
	}
}

static int
conn_read_start(struct conn *c)
{
	int	 r;

	if (c->c_reading || c->c_paused || !c->c_connected || c->c_closing)
		return (0);
	r = uv_read_start((uv_stream_t *)&c->c_tcp, conn_alloc_cb,
	    conn_read_cb);
	if (r == 0)
		c->c_reading = 1;
	return (r);
}

static void
conn_read_stop(struct conn *c)
{
	if (!c->c_reading)
		return;
	uv_read_stop((uv_stream_t *)&c->c_tcp);
	c->c_reading = 0;
}

/* The shared read buffer: conn_read_cb consumes it at once. */
static void
conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	buf->base = conn_rbuf;
	buf->len = sizeof(conn_rbuf);
}

static void
conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn	*c = s->data;

	if (c->c_closing) {
		if (nread < 0) {
			conn_read_stop(c);
			c->c_peer_eof = 1;
			if (c->c_shut_done || !c->c_wr_shut)
				conn_close_handles(c);
		}
		return;
	}
	if (nread == 0)
		return;
	if (nread < 0) {
		c->c_reading = 0;
		if (nread == UV_EOF && c->c_ready)
			conn_close_how(c, CONN_ABORT,
			    "peer closed the connection");
		else if (nread == UV_EOF)
			conn_close_how(c, CONN_ABORT, "peer closed the "
			    "connection during the TLS handshake");
		else
			conn_closef(c, CONN_ABORT, "read: %s",
			    uv_strerror((int)nread));
		return;
	}
	c->c_last_rx = uv_now(c->c_loop);
	/* A memory BIO grows as needed; it takes all or fails on ENOMEM. */
	if (BIO_write(c->c_rbio, buf->base, (int)nread) != (int)nread) {
		ERR_clear_error();
		conn_close_how(c, CONN_ABORT, "cannot buffer TLS input");
		return;
	}
	conn_tls_advance(c);
}

/*
 * Run the handshake as far as the buffered input allows, then read every
 * whole record. Input left after the handshake completes (the client's
 * first frames, the server's session tickets) is read in the same call;
 * post-handshake messages are consumed by SSL_read, which then returns
 * WANT_READ without data.
 */
static void
conn_tls_advance(struct conn *c)
{
	char	*cause = NULL;
	int	 r, n, err;

	if (!c->c_ready) {
		ERR_clear_error();
		r = SSL_do_handshake(c->c_ssl);
		if (r != 1) {
			err = SSL_get_error(c->c_ssl, r);
			if (err == SSL_ERROR_WANT_READ ||
			    err == SSL_ERROR_WANT_WRITE) {
				conn_flush_wbio(c);
				return;
			}
			/* Fail first so the error queue is read, then flush. */
			conn_tls_fail(c, "TLS handshake failed");
			return;
		}
		if (conn_flush_wbio(c) == -1)
			return;
		c->c_ready = 1;
		c->c_last_rx = uv_now(c->c_loop);
		uv_timer_stop(&c->c_timer);
		if (c->c_opts.co_idle_timeout_ms > 0)
			uv_timer_start(&c->c_timer, conn_timer_cb,
			    c->c_opts.co_idle_timeout_ms, 0);
		log_debug("conn %s: TLS ready (%s, %s)", c->c_peer,
		    SSL_get_version(c->c_ssl), SSL_get_cipher_name(c->c_ssl));
		if (c->c_cbs.on_ready != NULL)
			c->c_cbs.on_ready(c, c->c_arg);
		if (c->c_closing)
			return;
		if (conn_flush_plain(c) == -1)
			return;
	}

	for (;;) {
		ERR_clear_error();
		n = SSL_read(c->c_ssl, conn_pbuf, sizeof(conn_pbuf));
		if (n > 0) {
			r = frame_reader_feed(&c->c_reader, conn_pbuf,
			    (size_t)n, conn_frame_cb, c, &cause);
			if (c->c_closing) {
				if (r == -1)
					free(cause);
				return;
			}
			if (r == -1) {
				conn_close_how(c, CONN_GRACEFUL, cause);
				free(cause);
				return;
			}
			continue;
		}
		err = SSL_get_error(c->c_ssl, n);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			break;
		if (err == SSL_ERROR_ZERO_RETURN) {
			conn_close_how(c, CONN_GRACEFUL,
			    "peer closed the connection");
			return;
		}
		conn_tls_fail(c, "TLS error");
		return;
	}
	/* SSL_read may have answered a KeyUpdate or unblocked a write. */
	if (!TAILQ_EMPTY(&c->c_outq))
		conn_flush_plain(c);
	else
		conn_flush_wbio(c);
}

static int
conn_frame_cb(const struct frame_hdr *h, const uint8_t *payload, void *arg)
{
	struct conn	*c = arg;

	if (c->c_closing)
		return (1);
	/* An empty payload is "" rather than NULL. */
	if (c->c_cbs.on_frame != NULL)
		c->c_cbs.on_frame(c, h, payload != NULL ? payload :
		    (const uint8_t *)"", c->c_arg);
	return (c->c_closing ? 1 : 0);
}

/* Encrypt the queued frames and hand the ciphertext to libuv. */
static int
conn_flush_plain(struct conn *c)
{
	struct conn_out	*o;
	int		 n, err;

	if (!c->c_ready || c->c_tls_dead || c->c_wr_shut)
		return (0);
	while ((o = TAILQ_FIRST(&c->c_outq)) != NULL) {
		ERR_clear_error();
		n = SSL_write(c->c_ssl, o->o_data + o->o_off,
		    (int)(o->o_len - o->o_off));
		if (n <= 0) {
			err = SSL_get_error(c->c_ssl, n);
			if (err == SSL_ERROR_WANT_READ ||
			    err == SSL_ERROR_WANT_WRITE)
				break;
			conn_tls_fail(c, "TLS write failed");
			return (-1);
		}
		o->o_off += (size_t)n;
		c->c_outq_bytes -= (size_t)n;
		if (o->o_off == o->o_len) {
			TAILQ_REMOVE(&c->c_outq, o, o_entry);
			free(o);
		}
	}
	return (conn_flush_wbio(c));
}

/* Move everything SSL wrote into uv_write requests. */
static int
conn_flush_wbio(struct conn *c)
{
	struct conn_wreq	*w;
	uv_buf_t		 buf;
	size_t			 pending;
	int			 n, r;

	if (c->c_wr_shut || !c->c_connected) {
		/* Nowhere to send it (closing, or a failed connect). */
		(void)BIO_reset(c->c_wbio);
		return (c->c_wr_shut ? -1 : 0);
	}
	while ((pending = BIO_ctrl_pending(c->c_wbio)) > 0) {
		if (pending > INT_MAX)
			pending = INT_MAX;
		w = xmalloc(sizeof(*w) + pending);
		if ((n = BIO_read(c->c_wbio, w->w_data, (int)pending)) <= 0) {
			free(w);
			break;
		}
		w->w_conn = c;
		w->w_len = (size_t)n;
		buf = uv_buf_init(w->w_data, (unsigned int)n);
		r = uv_write(&w->w_req, (uv_stream_t *)&c->c_tcp, &buf, 1,
		    conn_write_cb);
		if (r != 0) {
			free(w);
			(void)BIO_reset(c->c_wbio);
			conn_closef(c, CONN_ABORT, "write: %s", uv_strerror(r));
			return (-1);
		}
		c->c_inflight += (size_t)n;
	}
	return (0);
}

static void
conn_write_cb(uv_write_t *req, int status)
{
	struct conn_wreq	*w = (struct conn_wreq *)req;
	struct conn		*c = w->w_conn;

	c->c_inflight -= w->w_len;
	free(w);
	if (status < 0) {
		/* UV_ECANCELED when the handle is being closed. */
		if (!c->c_closing)
			conn_closef(c, CONN_ABORT, "write: %s",
			    uv_strerror(status));
		return;
	}
	conn_check_drain(c);
}

static void
conn_check_drain(struct conn *c)
{
	size_t	 q = conn_sendq_bytes(c);

	if (!c->c_want_drain || c->c_closing)
		return;
	if (q >= c->c_opts.co_sendq_low && q != 0)
		return;
	c->c_want_drain = 0;
	if (c->c_cbs.on_drain != NULL)
		c->c_cbs.on_drain(c, c->c_arg);
}

static void
conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct conn	*c = req->data;

	c->c_shut_done = 1;
	/* Otherwise wait for the peer's FIN, or the close timeout. */
	if (status < 0 || c->c_peer_eof || !c->c_reading)
		conn_close_handles(c);
}

/* One timer, three jobs: handshake timeout, idle timeout, close timeout. */
static void
conn_timer_cb(uv_timer_t *t)
{
	struct conn	*c = t->data;
	uint64_t	 now, idle, elapsed;

	if (c->c_closing) {
		conn_close_handles(c);
		return;
	}
	if (!c->c_ready) {
		if (c->c_connected)
			conn_closef(c, CONN_ABORT, "TLS handshake timed out "
			    "after %u ms", c->c_opts.co_handshake_timeout_ms);
		else
			conn_closef(c, CONN_ABORT, "connect to %s timed out "
			    "after %u ms", c->c_peer,
			    c->c_opts.co_handshake_timeout_ms);
		return;
	}
	if ((idle = c->c_opts.co_idle_timeout_ms) == 0)
		return;
	now = uv_now(c->c_loop);
	/* Paused by the application: not reading is not idleness. */
	if (c->c_paused)
		c->c_last_rx = now;
	elapsed = now - c->c_last_rx;
	if (elapsed >= idle) {
		conn_close_how(c, CONN_GRACEFUL, "idle timeout");
		return;
	}
	uv_timer_start(t, conn_timer_cb, idle - elapsed, 0);
}

static void
conn_start_connect(struct conn *c, const struct sockaddr *sa)
{
	int	 r;

	conn_set_peer(c, sa);
	c->c_connreq.data = c;
	r = uv_tcp_connect(&c->c_connreq, &c->c_tcp, sa, conn_connect_cb);
	if (r != 0)
		conn_closef(c, CONN_ABORT, "connect to %s: %s", c->c_peer,
		    uv_strerror(r));
}

static void
conn_resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct conn	*c = req->data;

	c->c_gai_pending = 0;
	if (c->c_closing) {
		uv_freeaddrinfo(res);
		conn_maybe_free(c);
		return;
	}
	if (status < 0 || res == NULL) {
		conn_closef(c, CONN_ABORT, "cannot resolve %s: %s", c->c_host,
		    status < 0 ? uv_strerror(status) : "no address");
		uv_freeaddrinfo(res);
		return;
	}
	/* The first address only; the resolver already sorted them. */
	conn_start_connect(c, res->ai_addr);
	uv_freeaddrinfo(res);
}

static void
conn_connect_cb(uv_connect_t *req, int status)
{
	struct conn		*c = req->data;
	struct sockaddr_storage	 ss;
	int			 len = sizeof(ss), r;

	if (c->c_closing)
		return;
	if (status < 0) {
		conn_closef(c, CONN_ABORT, "connect to %s: %s", c->c_peer,
		    uv_strerror(status));
		return;
	}
	c->c_connected = 1;
	if (uv_tcp_getpeername(&c->c_tcp, (struct sockaddr *)&ss, &len) == 0)
		conn_set_peer(c, (struct sockaddr *)&ss);
	uv_tcp_nodelay(&c->c_tcp, 1);
	if ((r = conn_read_start(c)) != 0) {
		conn_closef(c, CONN_ABORT, "read: %s", uv_strerror(r));
		return;
	}
	/* Sends the ClientHello. */
	conn_tls_advance(c);
}

/* Accept a pending connection and start the server side of the handshake. */
struct conn *
conn_accept(uv_stream_t *server, SSL_CTX *ctx, const struct conn_opts *opts,
    const struct conn_cbs *cbs, void *arg, char **cause)
{
	struct conn		*c;
	struct sockaddr_storage	 ss;
	int			 len = sizeof(ss), r;

	if ((c = conn_new(server->loop, ctx, opts, cbs, arg, cause)) == NULL)
		return (NULL);
	SSL_set_accept_state(c->c_ssl);
	if ((r = conn_init_handles(c, cause)) != 0) {
		if (r == -1)
			conn_free(c);
		return (NULL);
	}
	if ((r = uv_accept(server, (uv_stream_t *)&c->c_tcp)) != 0) {
		xasprintf(cause, "accept: %s", uv_strerror(r));
		conn_close_silent(c);
		return (NULL);
	}
	c->c_connected = 1;
	if (uv_tcp_getpeername(&c->c_tcp, (struct sockaddr *)&ss, &len) == 0)
		conn_set_peer(c, (struct sockaddr *)&ss);
	uv_tcp_nodelay(&c->c_tcp, 1);
	if ((r = conn_read_start(c)) != 0) {
		xasprintf(cause, "%s: read: %s", c->c_peer, uv_strerror(r));
		conn_close_silent(c);
		return (NULL);
	}
	uv_timer_start(&c->c_timer, conn_timer_cb,
	    c->c_opts.co_handshake_timeout_ms, 0);
	return (c);
}

/* Connect to host:port and start the client side of the handshake. */
struct conn *
conn_connect(uv_loop_t *loop, const char *host, int port, SSL_CTX *ctx,
    const char *sni, const struct conn_opts *opts, const struct conn_cbs *cbs,
    void *arg, char **cause)
{
	struct conn		*c;
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	struct addrinfo		 hints;
	char			 portstr[16];
	int			 r;

	if (port <= 0 || port > 65535) {
		xasprintf(cause, "%s: port %d is out of range", host, port);
		return (NULL);
	}
	if ((c = conn_new(loop, ctx, opts, cbs, arg, cause)) == NULL)
		return (NULL);
	SSL_set_connect_state(c->c_ssl);
	ERR_clear_error();
	if (sni != NULL && SSL_set_tlsext_host_name(c->c_ssl, sni) != 1) {
		ERR_clear_error();
		xasprintf(cause, "'%s' cannot be sent as TLS server name", sni);
		conn_free(c);
		return (NULL);
	}
	c->c_host = xstrdup(host);
	c->c_port = port;
	snprintf(c->c_peer, sizeof(c->c_peer),
	    strchr(host, ':') != NULL ? "[%s]:%d" : "%s:%d", host, port);
	if ((r = conn_init_handles(c, cause)) != 0) {
		if (r == -1)
			conn_free(c);
		return (NULL);
	}

	if (uv_ip4_addr(host, port, &sin) == 0) {
		conn_set_peer(c, (struct sockaddr *)&sin);
		c->c_connreq.data = c;
		r = uv_tcp_connect(&c->c_connreq, &c->c_tcp,
		    (struct sockaddr *)&sin, conn_connect_cb);
	} else if (uv_ip6_addr(host, port, &sin6) == 0) {
		conn_set_peer(c, (struct sockaddr *)&sin6);
		c->c_connreq.data = c;
		r = uv_tcp_connect(&c->c_connreq, &c->c_tcp,
		    (struct sockaddr *)&sin6, conn_connect_cb);
	} else {
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_ADDRCONFIG;
		snprintf(portstr, sizeof(portstr), "%d", port);
		c->c_gai.data = c;
		r = uv_getaddrinfo(loop, &c->c_gai, conn_resolve_cb, host,
		    portstr, &hints);
		if (r == 0)
			c->c_gai_pending = 1;
	}
	if (r != 0) {
		xasprintf(cause, "connect to %s: %s", c->c_peer,
		    uv_strerror(r));
		conn_close_silent(c);
		return (NULL);
	}
	/* The handshake timeout covers resolving and connecting too. */
	uv_timer_start(&c->c_timer, conn_timer_cb,
	    c->c_opts.co_handshake_timeout_ms, 0);
	return (c);
}

static int
conn_send_check(struct conn *c, size_t len)
{
	if (c->c_closing || len > FRAME_MAX)
		return (-1);
	if (conn_sendq_bytes(c) > c->c_opts.co_sendq_high) {
		c->c_want_drain = 1;
		return (-1);
	}
	return (0);
}

static struct conn_out *
conn_out_new(uint16_t version, uint16_t type, uint32_t reqid,
    uint32_t status, size_t len)
{
	struct conn_out	*o;
	struct frame_hdr h;

	o = xmalloc(sizeof(*o) + FRAME_HDR_LEN + len);
	o->o_len = FRAME_HDR_LEN + len;
	o->o_off = 0;
	h.fh_len = (uint32_t)len;
	h.fh_version = version;
	h.fh_type = type;
	h.fh_reqid = reqid;
	h.fh_status = status;
	frame_hdr_encode(&h, o->o_data);
	return (o);
}

/* Queue a frame (consumes o) and send it now if the handshake is done. */
static int
conn_out_push(struct conn *c, struct conn_out *o)
{
	TAILQ_INSERT_TAIL(&c->c_outq, o, o_entry);
	c->c_outq_bytes += o->o_len;
	if (conn_flush_plain(c) == -1 || c->c_closing)
		return (-1);
	if (conn_sendq_bytes(c) > c->c_opts.co_sendq_high)
		c->c_want_drain = 1;
	return (0);
}

/* Pack a protobuf message into a frame and queue it. */
int
conn_send_msg(struct conn *c, uint16_t version, uint16_t type, uint32_t reqid,
    uint32_t status, const ProtobufCMessage *msg)
{
	struct conn_out	*o;
	size_t		 len;

	len = msg != NULL ? protobuf_c_message_get_packed_size(msg) : 0;
	if (conn_send_check(c, len) == -1)
		return (-1);
	o = conn_out_new(version, type, reqid, status, len);
	if (msg != NULL &&
	    protobuf_c_message_pack(msg, o->o_data + FRAME_HDR_LEN) != len) {
		free(o);
		return (-1);
	}
	return (conn_out_push(c, o));
}

/* Copy a raw payload into a frame and queue it. */
int
conn_send_raw(struct conn *c, uint16_t version, uint16_t type, uint32_t reqid,
    uint32_t status, const void *payload, size_t len)
{
	struct conn_out	*o;

	if (conn_send_check(c, len) == -1)
		return (-1);
	o = conn_out_new(version, type, reqid, status, len);
	if (len > 0)
		memcpy(o->o_data + FRAME_HDR_LEN, payload, len);
	return (conn_out_push(c, o));
}

/* Start a graceful close; on_close follows from the loop. Idempotent. */
void
conn_close(struct conn *c, const char *reason)
{
	conn_close_how(c, CONN_GRACEFUL, reason);
}

/* Change the largest payload accepted from the peer. */
void
conn_set_max_frame(struct conn *c, uint32_t max)
{
	if (max == 0)
		max = FRAME_MAX_PREAUTH;
	if (max > FRAME_MAX)
		max = FRAME_MAX;
	c->c_opts.co_max_frame = max;
	frame_reader_set_max(&c->c_reader, max);
}

/* Change the idle timeout (0 = none); counts from the last byte received. */
void
conn_set_idle_timeout(struct conn *c, uint32_t ms)
{
	c->c_opts.co_idle_timeout_ms = ms;
	if (!c->c_ready || c->c_closing)
		return;
	if (ms == 0)
		uv_timer_stop(&c->c_timer);
	else
		uv_timer_start(&c->c_timer, conn_timer_cb, ms, 0);
}

/* Stop reading from the socket; frames already decrypted still arrive. */
void
conn_pause_read(struct conn *c)
{
	c->c_paused = 1;
	conn_read_stop(c);
}

/* Read from the socket again after conn_pause_read. */
void
conn_resume_read(struct conn *c)
{
	int	 r;

	if (!c->c_paused)
		return;
	c->c_paused = 0;
	c->c_last_rx = uv_now(c->c_loop);
	if ((r = conn_read_start(c)) != 0)
		conn_closef(c, CONN_ABORT, "read: %s", uv_strerror(r));
}

/* The SSL object, for the caller's own checks (names, ALPN). */
SSL *
conn_ssl(struct conn *c)
{
	return (c->c_ssl);
}

/* The peer certificate once the handshake verified it, else NULL. */
X509 *
conn_peer_cert(struct conn *c)
{
	if (!c->c_ready || SSL_get_verify_result(c->c_ssl) != X509_V_OK)
		return (NULL);
	return (SSL_get0_peer_certificate(c->c_ssl));
}

/* The peer's address as text, for logs. */
const char *
conn_peer_addr(struct conn *c)
{
	return (c->c_peer);
}

/* Plaintext queued plus ciphertext not yet written to the socket. */
size_t
conn_sendq_bytes(struct conn *c)
{
	return (c->c_outq_bytes + c->c_inflight);
}

/* Whether the handshake is done and the connection is not closing. */
int
conn_is_ready(struct conn *c)
{
	return (c->c_ready && !c->c_closing);
}

/* Replace the argument passed to the callbacks. */
void
conn_set_arg(struct conn *c, void *arg)
{
	c->c_arg = arg;
}
