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
	char	*pool_dir;		/* libvirt dir pool; "" = default */
	int64_t	 resync_ms;		/* full resync period */
	char	*disk_listen;		/* disk server for migrations */
	int64_t	 sample_interval_ms;	/* metering */
	int64_t	 spool_max_samples;
	int64_t	 spool_max_mib;
	int64_t	 reconnect_min_ms;
	int64_t	 reconnect_max_ms;
	char	*log_level;
	char	*log_file;
	/* role mail (node-agent/mail.c); "" = default */
	char	*mail_dir;		/* maildirs and maps; DATA_DIR/mail */
	char	*mail_owner;		/* user owning the maildirs */
	char	*postfix_dir;		/* postfix -c */
	char	*dovecot_conf;		/* doveadm -c */
	char	*postfix_bin;
	char	*doveadm_bin;
	/* role web (node-agent/web.c) */
	char	*web_root;		/* DATA_DIR/web: HOST/htdocs */
	char	*web_listen;		/* nginx listen, comma separated */
	char	*web_pages;		/* placeholder.html, suspended.html */
	char	*nginx_bin;
	char	*nginx_prefix;		/* nginx -p; "" = built-in */
	char	*nginx_conf;		/* nginx -c */
	char	*nginx_confd;		/* server blocks; DATA_DIR/nginx.d */
	char	*web_listen_tls;	/* nginx listen for HTTPS */
	/* certificates (node-agent/acme.c), mail and web roles */
	char	*tls_dir;		/* keys, certificates; DATA_DIR/tls */
	char	*acme_directory;	/* ACME directory URL, or "off" */
	char	*acme_email;		/* account contact; "" none */
	char	*acme_client;		/* uacme */
	char	*acme_webroot;		/* served at /.well-known/acme-challenge */
	int64_t	 acme_retry_min_ms;	/* first backoff after a failure */
	int64_t	 acme_retry_max_ms;
	/* role mail: TLS and DKIM */
	char	*mail_tls_cert;		/* the operator's files, else ACME */
	char	*mail_tls_key;
	char	*dkim_dir;		/* KeyTable, SigningTable, keys */
	char	*dkim_user;		/* opendkim's user (reads the keys) */
	char	*opendkim_pid;		/* SIGUSR1 reloads its tables */
};

#define AGENT_CONF_METERING 1

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
/*
 * Check the controller's name or address in its certificate's
 * subjectAltName (never its CN).
 */
void	enrol_set_host(SSL *, const char *host);
/*
 * Verify the controller's certificate as a TLS server's against the CA
 * among chain whose SHA-256 fingerprint is pin, with the name checks of
 * param (enrol_set_host). 0, or -1 with *cause.
 */
int	enrol_verify_pinned(X509 *leaf, STACK_OF(X509) *chain,
	    const char *pin, const X509_VERIFY_PARAM *param, char **cause);

/* node-agent/link.c: the connection to the controller. */
void	link_start(struct agent *);
void	link_stop(void);
/*
 * Send a frame to the controller. -1 when there is no established link
 * (HELLO answered) or its send queue is full; the role resends its state
 * from on_connected, so nothing is queued here.
 */
int	link_send(uint16_t type, const ProtobufCMessage *);
int	link_is_up(void);

/*
 * What a role (hypervisor, mail, web) plugs into the agent. Frames of
 * types 128 and above go to on_frame; on_connected runs after every
 * HELLO_OK so the role can report its whole state again.
 */
struct role_ops {
	const char	*name;
	int	(*init)(struct agent *, char **cause);
	void	(*on_connected)(void);
	void	(*on_frame)(uint16_t type, const uint8_t *payload, size_t len);
	void	(*stop)(void);
};

extern const struct role_ops	hv_role;	/* node-agent/hv.c */
/* Optional at link time (weak): NULL when not built in. */
extern const struct role_ops	mail_role __attribute__((weak));
extern const struct role_ops	web_role __attribute__((weak));
/*
 * The metering sampler and spool (node-agent/meter*.c), for every role:
 * same hooks as a role; it gets frames of the metering range.
 */
extern const struct role_ops	meter_ops __attribute__((weak));

/*
 * node-agent/hv.c seams for unit tests: an image source instead of the
 * image cache, and a sink for the frames the role would send. Set them
 * before hv_role.init; NULL members keep imgcache.c and link_send.
 */
struct imgcache_result;
struct hv_hooks {
	void	(*hh_image)(const Opsn__ImageRef *, const char *image_url,
		    void (*done)(void *, const struct imgcache_result *),
		    void *arg);
	int	(*hh_send)(uint16_t type, const ProtobufCMessage *);
};
void	hv_set_hooks(const struct hv_hooks *);

/* node-agent/inventory.c: gather cpus, memory, disk, libvirt versions. */
void	inventory_collect(struct agent *, void (*done)(struct agent *));

#endif
