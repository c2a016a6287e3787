/*
 * The agents module: what the rest of the controller may ask of the
 * connected agents and of the nodes they run on.
 */
#ifndef OPSN_AGENTS_H
#define OPSN_AGENTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/x509.h>
#include <protobuf-c/protobuf-c.h>

extern const struct ctl_module agents_module;

/* Send a frame to a connected node; -1 if it is not connected. */
int	nodes_send(int64_t node_id, uint16_t type, const ProtobufCMessage *);
/* Node id by name, and whether it may get new work (enrolled, not revoked). */
int64_t	nodes_id(const char *name, int *usable);
const char *nodes_name(int64_t id);
/* Check a client certificate presented to the API: 0 and the node name. */
int	nodes_cert_ok(X509 *, char *name, size_t len);
int	nodes_is_ready(int64_t id);
/* Nodes by state, {"ready": 3, ...} (caller owns). */
json_t	*nodes_state_counts(void);

/*
 * agents/reports.c: what an agent reports is believed only about what is
 * placed on its node and of its roles (the modules check placement).
 */
/* Did the node name this role ("hypervisor", "mail", "web") at HELLO? */
int	reports_has_role(int64_t node_id, const char *role);
/*
 * Count a refused report of kind from a node; the first of each node and
 * kind is logged as a warning.
 */
void	reports_reject(int64_t node_id, const char *kind, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
/* Call cb for each node and kind with refused reports (for /metrics). */
void	reports_foreach_rejected(void (*cb)(int64_t node_id, const char *kind,
	    uint64_t count, void *), void *);
/* How many reports of kind the node had refused. */
uint64_t reports_rejected(int64_t node_id, const char *kind);

#endif
