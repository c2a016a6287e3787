/*
 * opsnctl: the operator's command line. It only calls the controller's REST
 * API. A command is a row in the table in opsnctl.c plus a handler here.
 */
#ifndef OPSN_CLI_H
#define OPSN_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define CLI_EXIT_OK	0
#define CLI_EXIT_ERROR	1
#define CLI_EXIT_USAGE	2

#define CLI_MAXWORDS	3	/* words in a command path ("node list") */
#define CLI_MAXOPTS	16	/* options of one command */

enum cli_output {
	CLI_OUTPUT_TABLE,
	CLI_OUTPUT_JSON,
};

/* Resolved settings: config file, then environment, then flags. */
struct cli_conf {
	char		*cc_url;	/* https://host:port, no trailing '/' */
	char		*cc_token;	/* never printed */
	char		*cc_ca;		/* CA file (CURLOPT_CAINFO), or NULL */
	char		*cc_file;	/* config file path, for messages */
	enum cli_output	 cc_output;
	int		 cc_quiet;
};

extern struct cli_conf cli_conf;

struct cli_call;
struct format_col;

/* One row per command. */
struct cli_cmd {
	const char	*c_path[CLI_MAXWORDS + 1];	/* {"node", "list"} */
	const char	*c_args;	/* usage after the path, or "" */
	const char	*c_summary;	/* one line for the help list */
	/* Long options: "ttl=" takes a value, "force" is a flag. */
	const char	*c_opts[CLI_MAXOPTS + 1];
	int		 c_min;		/* positional arguments */
	int		 c_max;
	int		 c_flags;
#define CLI_CMD_LOCAL	0x1		/* needs no settings or network */
#define CLI_CMD_OFFLINE	0x2		/* may run without a controller */
	int		(*c_fn)(struct cli_call *);	/* exit status */
};

/* A parsed command line, handed to the command's handler. */
struct cli_call {
	const struct cli_cmd	*ca_cmd;
	int			 ca_argc;	/* positional arguments */
	char			**ca_argv;
	/* Per option: the last value (NULL: not given), and all in order. */
	const char		*ca_optv[CLI_MAXOPTS];
	const char		**ca_optl[CLI_MAXOPTS];
	size_t			 ca_optn[CLI_MAXOPTS];
	/*
	 * CLI_CMD_OFFLINE: why the settings name no controller, or NULL.
	 * The command says it only when it needs one.
	 */
	char			*ca_conf_error;
};

/* Flag-level settings from the command line, before they are merged. */
struct conf_src {
	char	*cs_url;
	char	*cs_token;
	char	*cs_token_file;
	char	*cs_ca;
};

/* conf.c */
/* Merge config file, environment and flags into cli_conf; -1 with *cause. */
int	 conf_load(const struct conf_src *flags, char **cause);
/* Free the strings of cli_conf. */
void	 conf_clear(void);
/* Free the strings of a conf_src (not the struct). */
void	 conf_src_clear(struct conf_src *);

/* cli.c */

#define CLI_HTTP_MAXHDRS 4

/*
 * What cli_request_http adds to a request: headers to send, a long request,
 * and the response headers to keep. The caller fills the first part, the
 * call the second; cli_http_clear frees what it got.
 */
struct cli_http {
	const char	*h_send[CLI_HTTP_MAXHDRS + 1];	/* "If-Match: \"3\"" */
	const char	*h_keep[CLI_HTTP_MAXHDRS + 1];	/* "ETag" */
	int		 h_long;	/* no 30 s limit, only a stall */
	const char	*h_label;	/* progress line on a tty, or NULL */
	/* Filled by the call. */
	long		 h_status;	/* HTTP status, 0 if no answer */
	char		*h_got[CLI_HTTP_MAXHDRS];	/* h_keep values or NULL */
};

/*
 * Call the API: method on path ("/v1/nodes"), with body (consumed, may be
 * NULL). On 2xx, *out (if out is not NULL) gets the parsed reply, or NULL for
 * an empty one. Otherwise the reason is printed to stderr and -1 returned.
 */
int	 cli_request(const char *method, const char *path, json_t *body,
	    json_t **out);
/* cli_request with the headers and limits of http (may be NULL). */
int	 cli_request_http(const char *method, const char *path, json_t *body,
	    struct cli_http *http, json_t **out);
/* Free the response headers a cli_http holds; NULL is fine. */
void	 cli_http_clear(struct cli_http *);
/*
 * GET path as a file (accept: its media type) written to f as it comes;
 * an error reply is printed like cli_request's. 0, or -1.
 */
int	 cli_download(const char *path, const char *accept,
	    struct cli_http *, FILE *f);
/*
 * cli_download into file (written as FILE.part, renamed once whole), or
 * to stdout if file is NULL (refused on a terminal when binary).
 */
int	 cli_save(const char *path, const char *accept, struct cli_http *,
	    const char *file, int binary);
/* GET path like cli_request, but a 404 is no error: 1 and *out NULL. */
int	 cli_lookup(const char *path, json_t **out);
/*
 * PUT size bytes of the regular file open on fd, whose SHA-256 is sha256
 * (hex), to path as application/octet-stream, in parts no larger than the
 * controller takes in one request, resuming after the bytes it already
 * holds; never held in memory. name (the file's) labels the progress line
 * on a terminal and the messages. Returns like cli_request; fd stays open.
 */
int	 cli_upload(const char *path, int fd, uint64_t size,
	    const char *sha256, const char *name, json_t **out);
/*
 * cli_download of a long body into f, its size and SHA-256 out; name
 * labels the progress line. Returns like cli_request.
 */
int	 cli_download_sum(const char *path, FILE *f, const char *name,
	    uint64_t *size, char sha[65]);
/* DELETE collection/ID ("/v1/backups", name), ID escaped; like cli_request. */
int	 cli_delete(const char *collection, const char *id);
/* Show a one-line status on stderr, rewritten in place, if it is a tty. */
void	 cli_status(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
/* End the status line: keep it (newline) or erase it. */
void	 cli_status_end(int keep);
/* Columns of the terminal on fd: 80 if unknown, 0 if fd is no tty. */
size_t	 cli_columns(int fd);
/* GET every page of a list; *out is {"items":[...],"next_cursor":null}. */
int	 cli_list(const char *path, json_t **out);
/* Escape one path segment or query value; caller frees. */
char	*cli_escape(const char *);
/*
 * path plus "?key=value&..." for each pair of kv ({key, value, ..., NULL})
 * whose value is not NULL, values escaped; caller frees.
 */
char	*cli_path_query(const char *path, const char *const *kv);
/* GET a list and print it as a table of cols, or as JSON with -o json. */
int	 cli_show_list(const char *path, const struct format_col *, size_t);
/* Print obj (consumed) as "field: value" lines, or as JSON. Exit status. */
int	 cli_show_object(json_t *obj, const struct format_col *, size_t);
/* The value of a command option, "" for a flag, NULL if not given. */
const char *cli_opt(const struct cli_call *, const char *name);
/* Every value of a repeatable option, in order; *n of them (0: none). */
const char **cli_opt_list(const struct cli_call *, const char *name,
	    size_t *n);
/* Print "usage: opsnctl PATH ARGS" to f. */
void	 cli_print_usage(FILE *, const struct cli_cmd *);
/* Print the command's usage line to stderr and return CLI_EXIT_USAGE. */
int	 cli_usage(const struct cli_call *);
/* Release the HTTP handle. */
void	 cli_close(void);
/* A password read for --password-stdin (caller wipes, frees), or NULL. */
char	*cli_read_password(size_t max);

/* format.c: human-readable output, independent of the network. */

/* Turn a JSON value into a cell; caller frees. */
typedef char	*(*format_fn)(json_t *);

/* One column of a table or one line of a "field: value" listing. */
struct format_col {
	const char	*fc_header;	/* "MEMORY" or "memory" */
	const char	*fc_key;	/* JSON key in each object */
	format_fn	 fc_fmt;	/* NULL: format_value */
};

/* Print items (an array of objects) as aligned columns under headers. */
void	 format_table(FILE *, const struct format_col *, size_t,
	    json_t *items);
/* Print obj as aligned "field: value" lines. */
void	 format_fields(FILE *, const struct format_col *, size_t, json_t *obj);
/* For each object of list, fmt with its string members k1, k2, k3. */
void	 format_each(FILE *, json_t *list, const char *fmt, const char *k1,
	    const char *k2, const char *k3);
/* Print v as JSON indented by 2 spaces, with a final newline. */
void	 format_json(FILE *, json_t *);
/* Columns a UTF-8 string takes on a terminal (one per code point). */
size_t	 format_width(const char *);
/* Copy s with control characters replaced by '?'; caller frees. */
char	*format_clean(const char *);
/* Bytes as "512B", "1.5K", "15.6G", "512M" (powers of 1024) into buf. */
void	 format_bytes(uint64_t, char *, size_t);
/* "12s ago", "3m ago", "2h ago", "4d ago" for then, seen at now. */
void	 format_ago(int64_t then, int64_t now, char *, size_t);
/* Parse "512M", "2G", "1T" (powers of 1024) or bytes; -1 with *cause. */
int	 format_parse_size(const char *, uint64_t *, char **cause);
/* A size (as above) that is a whole number of MiB; -1 with *cause. */
int	 format_parse_mib(const char *, uint64_t *mib, char **cause);
/* A whole number from min to max, digits only; -1 with *cause. */
int	 format_parse_count(const char *, int64_t min, int64_t max,
	    int64_t *, char **cause);
/* "in 12s", "in 3m", "in 2h", "in 89d" for then, seen at now. */
void	 format_in(int64_t then, int64_t now, char *, size_t);
/* Parse an RFC 3339 time ("2026-11-29T19:38:25Z"); -1 if it is not one. */
int	 format_parse_time(const char *, int64_t *);

/* Cell formatters (format_fn). */
char	*format_value(json_t *);	/* strings, numbers, lists; null "-" */
char	*format_size(json_t *);		/* bytes: "15.6G" */
char	*format_size_exact(json_t *);	/* "15.6G (16777216000 bytes)" */
char	*format_mib(json_t *);		/* MiB: 512 as "512M" */
char	*format_age(json_t *);		/* time: "12s ago"; null "never" */
char	*format_time(json_t *);		/* time: "...Z (12s ago)" */
char	*format_expiry(json_t *);	/* "in 89d", "expired 2d ago"; null "never" */
char	*format_cert(json_t *);		/* "valid until ... by ...", "failed: ..." */
char	*format_counts(json_t *);	/* {"ready":2} as "2 ready" */

/* csv.c */

/* One record of a CSV file. */
struct csv_row {
	size_t	  cr_line;	/* the line it starts on, from 1 */
	size_t	  cr_n;		/* fields */
	char	**cr_fields;	/* unquoted, NUL-terminated */
};

/* A parsed CSV file: cv_rows[0] is the header, if there is one. */
struct csv {
	char		 cv_sep;	/* ';' or ',' */
	size_t		 cv_nrows;
	struct csv_row	*cv_rows;
};

/*
 * Split text (len bytes) into rows; blank lines are skipped, a UTF-8 BOM
 * ignored. -1 with *cause "NAME:LINE: reason". csv_free frees the rows.
 */
int	 csv_parse(const char *name, const char *text, size_t len,
	    struct csv *, char **cause);
/* Free the rows of a csv (not the struct); NULL is fine. */
void	 csv_free(struct csv *);

/* adjustment.c (billing) */
int	 adjustment_add(struct cli_call *);
int	 adjustment_list(struct cli_call *);

/* audit.c */
int	 audit_list(struct cli_call *);
int	 audit_verify(struct cli_call *);
int	 audit_export(struct cli_call *);
int	 audit_checkpoint(struct cli_call *);

/* health.c */
int	 health_show(struct cli_call *);

/* image.c */
int	 image_add(struct cli_call *);
int	 image_list(struct cli_call *);
int	 image_show(struct cli_call *);

/* import.c */
int	 import_tenants(struct cli_call *);
/*
 * The records of a CSV file of members (header insee;siren;name;
 * population;kind) named name, for POST /v1/tenants/import; -1 with
 * *cause "NAME:LINE: field: reason" and nothing in *records.
 */
int	 import_csv_records(const char *name, const char *text, size_t len,
	    json_t **records, char **cause);

/* backup.c */
int	 backup_create(struct cli_call *);
int	 backup_list(struct cli_call *);
int	 backup_delete(struct cli_call *);

/* vm.c: held VMs unknown to a restored controller */
int	 vm_unknown_list(struct cli_call *);
int	 vm_unknown_delete(struct cli_call *);

/* node.c */
int	 node_list(struct cli_call *);
int	 node_show(struct cli_call *);
int	 node_token(struct cli_call *);
int	 node_revoke(struct cli_call *);
int	 node_cordon(struct cli_call *);
int	 node_uncordon(struct cli_call *);
int	 node_drain(struct cli_call *);
int	 node_evacuate(struct cli_call *);
int	 node_set(struct cli_call *);
/* A VM's migration object as "migrating 43 % to hv-b (copying)". */
char	*node_fmt_migration(json_t *);

/* group.c */
int	 group_add(struct cli_call *);
int	 group_list(struct cli_call *);
int	 group_delete(struct cli_call *);

/* cluster.c */
int	 cluster_capacity(struct cli_call *);
int	 cluster_rebalance(struct cli_call *);

/* plan.c */
int	 plan_add(struct cli_call *);
int	 plan_list(struct cli_call *);

/* statement.c (billing) */
int	 statement_generate(struct cli_call *);
int	 statement_close(struct cli_call *);
int	 statement_list(struct cli_call *);
int	 statement_show(struct cli_call *);
int	 statement_periods(struct cli_call *);
int	 statement_export(struct cli_call *);
int	 statement_pes(struct cli_call *);

/* tariff.c (billing) */
int	 tariff_add(struct cli_call *);
int	 tariff_list(struct cli_call *);
int	 tariff_show(struct cli_call *);
int	 tariff_default(struct cli_call *);
int	 tariff_end(struct cli_call *);
int	 tariff_bind(struct cli_call *);

/* tenant.c */
int	 tenant_add(struct cli_call *);
int	 tenant_list(struct cli_call *);
int	 tenant_show(struct cli_call *);
int	 tenant_set(struct cli_call *);
int	 tenant_action(struct cli_call *);	/* suspend, withdraw, activate */

/* token.c */
int	 token_create(struct cli_call *);
int	 token_list(struct cli_call *);
int	 token_revoke(struct cli_call *);

/* user.c */
int	 user_add(struct cli_call *);
int	 user_list(struct cli_call *);
int	 user_show(struct cli_call *);
int	 user_link(struct cli_call *);
int	 user_disable(struct cli_call *);
int	 user_enable(struct cli_call *);
int	 user_totp_reset(struct cli_call *);
int	 user_delete(struct cli_call *);

/* usage.c */
int	 usage_show(struct cli_call *);

/* vm.c */
int	 vm_create(struct cli_call *);
int	 vm_list(struct cli_call *);
int	 vm_show(struct cli_call *);
int	 vm_action(struct cli_call *);	/* start, stop, reboot, delete */
int	 vm_console(struct cli_call *);

/* Hosted services: backend.c, changes.c, mail.c, site.c */
int	 backend_list(struct cli_call *);
int	 backend_show(struct cli_call *);
int	 backend_set(struct cli_call *);
int	 changes_list(struct cli_call *);
int	 mail_domain_add(struct cli_call *);
int	 mail_domain_list(struct cli_call *);
int	 mail_domain_show(struct cli_call *);
int	 mail_domain_dns(struct cli_call *);
int	 mail_domain_delete(struct cli_call *);
int	 mail_box_add(struct cli_call *);
int	 mail_box_list(struct cli_call *);
int	 mail_box_show(struct cli_call *);
int	 mail_box_set(struct cli_call *);
int	 mail_box_passwd(struct cli_call *);
int	 mail_box_action(struct cli_call *);	/* suspend, activate, delete, restore */
int	 mail_box_import(struct cli_call *);
int	 mail_alias_add(struct cli_call *);
int	 mail_alias_list(struct cli_call *);
int	 mail_alias_delete(struct cli_call *);
int	 check_domain(struct cli_call *);	/* mail domain check */
int	 check_site(struct cli_call *);		/* site check */
int	 site_cert(struct cli_call *);		/* site cert set, acme */
int	 mail_domain_dkim_rotate(struct cli_call *);
int	 site_add(struct cli_call *);
int	 site_list(struct cli_call *);
int	 site_show(struct cli_call *);
int	 site_action(struct cli_call *);	/* suspend, activate, delete */
/* A services object's "live": "yes", "pending (...)", "error: ..." */
char	*mail_fmt_live(json_t *);
/*
 * The records of a CSV file of mailboxes (header address;name;quota;
 * password or password_hash) for POST /v1/mail/mailboxes/import; -1 with
 * *cause "NAME:LINE: field: reason".
 */
int	 mail_csv_records(const char *name, const char *text, size_t len,
	    json_t **records, char **cause);

#endif
