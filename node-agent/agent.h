/* opsn-agent: state shared by its subsystems (one uv loop thread). */
#ifndef OPSN_AGENT_H
#define OPSN_AGENT_H

#include <stdint.h>
#include <uv.h>
#include <openssl/ssl.h>

#include "opsn.pb-c.h"

struct agent_conf {
	char	*data_dir;
	char	*name;
	char	*controllers;	/* ADDR:PORT[,ADDR:PORT...] */
	char	*join_token;
	char	*ca_file;
	char	*libvirt_uri;
	char	*role;
	char	*virt_type;
	int64_t	 reconnect_min_ms;
	int64_t	 reconnect_max_ms;
	char	*log_level;
	char	*log_file;
};

struct agent_addr {
	char	*host;
	int	 port;
};

struct agent {
	struct agent_conf	 conf;
	uv_loop_t		*loop;
	struct agent_addr	*addrs;
	size_t			 naddrs;
	uint32_t		 proto_min, proto_max;
	Opsn__Inventory		 inv;		/* filled by inventory.c */
	char			 hostname[256];
};

extern struct agent	*agent;

/* node-agent/enrol.c: get a certificate with a join token (blocking run). */
int	enrol_run(struct agent *, char **cause);
/* Paths in the data folder (caller frees). */
char	*enrol_path(const struct agent *, const char *file);
int	enrol_have_cert(const struct agent *);
/* Client TLS context; pinned to the CA file, with our key if enrolled. */
SSL_CTX	*enrol_ssl_ctx(const char *ca_file, const char *cert,
	    const char *key, char **cause);
/* Check the controller's name or address in its certificate. */
void	enrol_set_host(SSL *, const char *host);

/* node-agent/link.c: the connection to the controller. */
void	link_start(struct agent *);
void	link_stop(void);

/* node-agent/inventory.c: gather cpus, memory, disk, libvirt versions. */
void	inventory_collect(struct agent *, void (*done)(struct agent *));

#endif
