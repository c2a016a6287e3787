/*
 * tlsload: full TLS 1.3 handshakes per second against host:port.
 *
 * Keeps `conns` connections in flight on non-blocking sockets and poll(2).
 * Each one connects, runs a full handshake (a fresh SSL, no ticket, no
 * session cache: nothing can be resumed), sends close_notify and waits for
 * the server to close, so the server has finished its side before the
 * handshake is counted as served. The server closes first, so TIME_WAIT
 * sits on its side and the client never runs out of ephemeral ports.
 *
 * Prints one line of key=value figures; exits 1 only if nothing worked.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define TLSLOAD_CONNS_MAX	1024
#define TLSLOAD_TIMEOUT_MS	10000

enum tlsload_state {
	TLSLOAD_IDLE,
	TLSLOAD_CONNECT,	/* waiting for the TCP connect */
	TLSLOAD_HANDSHAKE,	/* SSL_do_handshake wants more */
	TLSLOAD_DRAIN,		/* close_notify sent; read until the peer's FIN */
};

struct tlsload_slot {
	enum tlsload_state	 s_state;
	int			 s_fd;
	SSL			*s_ssl;
	short			 s_events;
	uint64_t		 s_start;
};

static SSL_CTX			*tlsload_ctx;
static struct sockaddr_in	 tlsload_addr;
static struct tlsload_slot	 tlsload_slots[TLSLOAD_CONNS_MAX];
static unsigned long		 tlsload_done, tlsload_failed, tlsload_timeouts;
static char			 tlsload_last_error[256];

static void __attribute__((noreturn))
tlsload_usage(void)
{
	fprintf(stderr, "usage: tlsload [-c conns] [-d seconds] host port\n");
	exit(2);
}

static uint64_t
tlsload_now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

static double
tlsload_cpu_seconds(void)
{
	struct rusage	 ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
}

static SSL_CTX *
tlsload_ctx_new(void)
{
	SSL_CTX	*ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return (NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* The server's CertificateVerify is still checked; its chain is not. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return (ctx);
}

static void
tlsload_note_error(const char *what)
{
	unsigned long	 e = ERR_get_error();
	char		 buf[200];

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "%s", errno ? strerror(errno) :
		    "no detail");
	snprintf(tlsload_last_error, sizeof(tlsload_last_error), "%s: %s",
	    what, buf);
	ERR_clear_error();
}

/* Close the slot; the next loop pass starts a new connection in it. */
static void
tlsload_slot_end(struct tlsload_slot *s)
{
	SSL_free(s->s_ssl);
	s->s_ssl = NULL;
	if (s->s_fd != -1)
		close(s->s_fd);
	s->s_fd = -1;
	s->s_state = TLSLOAD_IDLE;
	s->s_events = 0;
}

static void
tlsload_slot_fail(struct tlsload_slot *s, const char *what)
{
	tlsload_note_error(what);
	tlsload_failed++;
	tlsload_slot_end(s);
}

static void
tlsload_slot_start(struct tlsload_slot *s, uint64_t now)
{
	int	 one = 1;

	s->s_start = now;
	s->s_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (s->s_fd == -1) {
		tlsload_slot_fail(s, "socket");
		return;
	}
	setsockopt(s->s_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s->s_fd, (struct sockaddr *)&tlsload_addr,
	    sizeof(tlsload_addr)) == 0 || errno == EINPROGRESS) {
		s->s_state = TLSLOAD_CONNECT;
		s->s_events = POLLOUT;
		return;
	}
	tlsload_slot_fail(s, "connect");
}

/* Read and discard until the peer closes: we need none of it. */
static void
tlsload_slot_drain(struct tlsload_slot *s)
{
	char	 buf[4096];
	ssize_t	 n;

	for (;;) {
		n = recv(s->s_fd, buf, sizeof(buf), 0);
		if (n > 0)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			s->s_events = POLLIN;
			return;
		}
		if (n == -1 && errno == EINTR)
			continue;
		/* EOF or a reset: either way the server is done with it. */
		tlsload_slot_end(s);
		return;
	}
}

static void
tlsload_slot_handshake(struct tlsload_slot *s)
{
	int	 r, err;

	ERR_clear_error();
	r = SSL_do_handshake(s->s_ssl);
	if (r == 1) {
		tlsload_done++;
		/* Failure to send close_notify shows up as a timeout. */
		ERR_clear_error();
		SSL_shutdown(s->s_ssl);
		ERR_clear_error();
		s->s_state = TLSLOAD_DRAIN;
		tlsload_slot_drain(s);
		return;
	}
	err = SSL_get_error(s->s_ssl, r);
	if (err == SSL_ERROR_WANT_READ)
		s->s_events = POLLIN;
	else if (err == SSL_ERROR_WANT_WRITE)
		s->s_events = POLLOUT;
	else
		tlsload_slot_fail(s, "handshake");
}

static void
tlsload_slot_event(struct tlsload_slot *s, short revents)
{
	int		 soerr = 0;
	socklen_t	 len = sizeof(soerr);

	switch (s->s_state) {
	case TLSLOAD_CONNECT:
		if (getsockopt(s->s_fd, SOL_SOCKET, SO_ERROR, &soerr,
		    &len) == -1 || soerr != 0) {
			errno = soerr;
			tlsload_slot_fail(s, "connect");
			return;
		}
		if ((s->s_ssl = SSL_new(tlsload_ctx)) == NULL ||
		    SSL_set_fd(s->s_ssl, s->s_fd) != 1) {
			tlsload_slot_fail(s, "SSL_new");
			return;
		}
		SSL_set_connect_state(s->s_ssl);
		s->s_state = TLSLOAD_HANDSHAKE;
		tlsload_slot_handshake(s);
		break;
	case TLSLOAD_HANDSHAKE:
		tlsload_slot_handshake(s);
		break;
	case TLSLOAD_DRAIN:
		tlsload_slot_drain(s);
		break;
	case TLSLOAD_IDLE:
		break;
	}
}

/* Run for duration_ms with conns connections in flight. */
static void
tlsload_run(int conns, uint64_t duration_ms)
{
	struct pollfd	 pfd[TLSLOAD_CONNS_MAX];
	int		 map[TLSLOAD_CONNS_MAX];
	uint64_t	 now, end;
	int		 i, n, r;

	now = tlsload_now_ms();
	end = now + duration_ms;
	for (i = 0; i < conns; i++) {
		tlsload_slots[i].s_fd = -1;
		tlsload_slots[i].s_state = TLSLOAD_IDLE;
	}
	for (;;) {
		now = tlsload_now_ms();
		n = 0;
		for (i = 0; i < conns; i++) {
			struct tlsload_slot *s = &tlsload_slots[i];

			if (s->s_state != TLSLOAD_IDLE &&
			    now - s->s_start > TLSLOAD_TIMEOUT_MS) {
				tlsload_timeouts++;
				tlsload_slot_end(s);
			}
			if (s->s_state == TLSLOAD_IDLE && now < end)
				tlsload_slot_start(s, now);
			if (s->s_state == TLSLOAD_IDLE)
				continue;
			pfd[n].fd = s->s_fd;
			pfd[n].events = s->s_events;
			pfd[n].revents = 0;
			map[n++] = i;
		}
		/* Connections that started before the end may finish. */
		if (n == 0)
			break;
		if ((r = poll(pfd, (nfds_t)n, 100)) == -1) {
			if (errno == EINTR)
				continue;
			perror("tlsload: poll");
			exit(1);
		}
		for (i = 0; i < n && r > 0; i++) {
			if (pfd[i].revents == 0)
				continue;
			tlsload_slot_event(&tlsload_slots[map[i]],
			    pfd[i].revents);
		}
	}
}

int
main(int argc, char **argv)
{
	int		 ch, conns = 16, seconds = 10, port;
	uint64_t	 t0, t1;
	double		 cpu0, cpu1, wall;

	while ((ch = getopt(argc, argv, "c:d:")) != -1) {
		switch (ch) {
		case 'c':
			conns = atoi(optarg);
			break;
		case 'd':
			seconds = atoi(optarg);
			break;
		default:
			tlsload_usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 2 || conns < 1 || conns > TLSLOAD_CONNS_MAX ||
	    seconds < 1)
		tlsload_usage();
	port = atoi(argv[1]);
	memset(&tlsload_addr, 0, sizeof(tlsload_addr));
	tlsload_addr.sin_family = AF_INET;
	tlsload_addr.sin_port = htons((uint16_t)port);
	if (port < 1 || port > 65535 ||
	    inet_pton(AF_INET, argv[0], &tlsload_addr.sin_addr) != 1) {
		fprintf(stderr, "tlsload: %s:%s is not an IPv4 address and "
		    "port\n", argv[0], argv[1]);
		return (2);
	}
	signal(SIGPIPE, SIG_IGN);
	if ((tlsload_ctx = tlsload_ctx_new()) == NULL) {
		fprintf(stderr, "tlsload: cannot create the TLS context\n");
		return (1);
	}

	cpu0 = tlsload_cpu_seconds();
	t0 = tlsload_now_ms();
	tlsload_run(conns, (uint64_t)seconds * 1000);
	t1 = tlsload_now_ms();
	cpu1 = tlsload_cpu_seconds();
	wall = (double)(t1 - t0) / 1000.0;

	printf("handshakes=%lu seconds=%.2f rate=%.1f failed=%lu timeouts=%lu "
	    "client_cpu_pct=%.0f\n", tlsload_done, wall,
	    wall > 0 ? tlsload_done / wall : 0.0, tlsload_failed,
	    tlsload_timeouts, wall > 0 ? 100.0 * (cpu1 - cpu0) / wall : 0.0);
	if (tlsload_failed > 0 || tlsload_timeouts > 0)
		fprintf(stderr, "tlsload: %lu failed, %lu timed out; last "
		    "error: %s\n", tlsload_failed, tlsload_timeouts,
		    tlsload_last_error[0] ? tlsload_last_error : "timeout");
	SSL_CTX_free(tlsload_ctx);
	return (tlsload_done > 0 ? 0 : 1);
}
