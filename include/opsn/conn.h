/*
 * A framed TLS 1.3 connection over a libuv TCP stream. TLS runs on OpenSSL
 * memory BIOs, so the same code serves the controller (accept) and the
 * agent (connect). A connection has a send queue with backpressure, a
 * maximum frame size for reads, and idle and handshake timeouts.
 *
 * Ownership: the connection frees itself after its on_close callback has
 * run (its uv handles are closed first). No callback runs after on_close.
 * conn_close() may be called from inside any callback.
 */
#ifndef OPSN_CONN_H
#define OPSN_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <openssl/ssl.h>
#include <protobuf-c/protobuf-c.h>

#include "opsn/frame.h"

struct conn;

struct conn_cbs {
	/* The TLS handshake completed; the peer certificate can be read. */
	void	(*on_ready)(struct conn *, void *arg);
	/* A whole frame arrived; payload valid only during the call. */
	void	(*on_frame)(struct conn *, const struct frame_hdr *,
		    const uint8_t *payload, void *arg);
	/* The send queue fell back under its low watermark (may be NULL). */
	void	(*on_drain)(struct conn *, void *arg);
	/*
	 * The connection is closed: reason says why in a sentence ("peer
	 * closed", "idle timeout", "TLS handshake failed: ..."). Last call.
	 */
	void	(*on_close)(struct conn *, const char *reason, void *arg);
};

struct conn_opts {
	uint32_t	co_max_frame;		/* read limit; FRAME_MAX_PREAUTH if 0 */
	uint32_t	co_idle_timeout_ms;	/* nothing received: close; 0 = none */
	uint32_t	co_handshake_timeout_ms; /* 0 = 10000 */
	size_t		co_sendq_high;		/* conn_send_* refuse above; 0 = 8 MiB */
	size_t		co_sendq_low;		/* on_drain below; 0 = high / 4 */
};

/*
 * Accept a pending connection on a listening server stream and start the
 * server side of the TLS handshake with ctx. NULL (with *cause) if the
 * accept failed; callbacks never run then.
 */
struct conn	*conn_accept(uv_stream_t *server, SSL_CTX *ctx,
		    const struct conn_opts *, const struct conn_cbs *,
		    void *arg, char **cause);

/*
 * Connect to host:port (numeric IPv4/IPv6 or a name, resolved on the
 * thread pool) and run the client side of the TLS handshake with ctx,
 * sending sni as server name when not NULL. Connection errors arrive
 * through on_close. NULL (with *cause) only on immediate failure.
 */
struct conn	*conn_connect(uv_loop_t *, const char *host, int port,
		    SSL_CTX *ctx, const char *sni, const struct conn_opts *,
		    const struct conn_cbs *, void *arg, char **cause);

/*
 * Queue one frame. The protobuf message (may be NULL for an empty payload)
 * is packed at once. Returns -1 when the connection is closing or the send
 * queue is over its high watermark (the caller waits for on_drain), or the
 * packed message is over FRAME_MAX.
 */
int	conn_send_msg(struct conn *, uint16_t version, uint16_t type,
	    uint32_t reqid, uint32_t status, const ProtobufCMessage *);
/* Same with a raw payload (copied). */
int	conn_send_raw(struct conn *, uint16_t version, uint16_t type,
	    uint32_t reqid, uint32_t status, const void *, size_t);

/* Flush what is queued, send a TLS close_notify, then close. Idempotent. */
void	conn_close(struct conn *, const char *reason);

/* Change the read limit (raised after the peer is authenticated). */
void	conn_set_max_frame(struct conn *, uint32_t);
void	conn_set_idle_timeout(struct conn *, uint32_t ms);
/* Stop / restart reading from the socket (receiver-side backpressure). */
void	conn_pause_read(struct conn *);
void	conn_resume_read(struct conn *);

SSL		*conn_ssl(struct conn *);
/* The verified peer certificate (not owned by the caller), or NULL. */
X509		*conn_peer_cert(struct conn *);
/* "127.0.0.1:4321" or "[::1]:4321". */
const char	*conn_peer_addr(struct conn *);
size_t		 conn_sendq_bytes(struct conn *);
int		 conn_is_ready(struct conn *);
void		 conn_set_arg(struct conn *, void *);

#endif
