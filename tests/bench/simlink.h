/*
 * What the simulated agents of the benchmarks and the soak share
 * (tests/bench/simagents.c, metering_bench.c, tests/soak/soakagents.c):
 * the client TLS context pinned to the controller's CA, and the HELLO an
 * agent sends once its mutual-TLS link is up.
 */
#ifndef OPSN_TESTS_SIMLINK_H
#define OPSN_TESTS_SIMLINK_H

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "opsn/conn.h"
#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "opsn.pb-c.h"

/* TLS 1.3 client context that trusts only ca_file; NULL (logged). */
static inline SSL_CTX *
simlink_ctx(const char *ca_file)
{
	SSL_CTX	*ctx;
	char	 err[256];

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return (ctx);
fail:
	ERR_error_string_n(ERR_get_error(), err, sizeof(err));
	log_warnx("TLS context: %s (CA %s)", err, ca_file);
	SSL_CTX_free(ctx);
	return (NULL);
}

/* Send HELLO for an agent of one role with this inventory. */
static inline int
simlink_hello_inv(struct conn *c, const char *name, const char *role,
    uint32_t reqid, uint32_t cpus, uint64_t memory, uint64_t disk)
{
	Opsn__Hello	 h = OPSN__HELLO__INIT;
	Opsn__Inventory	 inv = OPSN__INVENTORY__INIT;
	char		*roles[1] = { (char *)role };

	inv.cpus = cpus;
	inv.memory_bytes = memory;
	inv.disk_bytes = disk;
	inv.hostname = (char *)name;
	h.name = (char *)name;
	h.roles = roles;
	h.n_roles = 1;
	h.proto_min = OPSN_PROTO_MIN;
	h.proto_max = OPSN_PROTO_MAX;
	h.agent_version = OPSN_VERSION;
	h.inventory = &inv;
	conn_set_max_frame(c, FRAME_MAX);
	return (conn_send_msg(c, OPSN_PROTO_MIN, MSG_HELLO, reqid, ST_OK,
	    &h.base));
}

/* HELLO with a made-up inventory: 64 CPUs, 256 GiB, 4 TiB. */
static inline int
simlink_hello(struct conn *c, const char *name, const char *role,
    uint32_t reqid)
{
	return (simlink_hello_inv(c, name, role, reqid, 64, 256ULL << 30,
	    4ULL << 40));
}

#endif
