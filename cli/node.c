/*
 * opsnctl node: list, show, enrol (join tokens) and revoke nodes; and for
 * hypervisors their placement: settings, cordon, drain, evacuate.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define NODE_TTL_DEFAULT	"1h"
#define NODE_DRAIN_TIMEOUT	"1h"
#define NODE_POLL_MS		500

static char	*node_fmt_ratios(json_t *);
static char	*node_fmt_reserve(json_t *);
static char	*node_fmt_tags(json_t *);
static char	*node_fmt_alloc(json_t *);
static char	*node_fmt_report(json_t *);
static char	*node_fmt_migrations(json_t *);

static const struct format_col node_cols[] = {
	{ "NAME",	"name",		NULL },
	{ "STATE",	"state",	NULL },
	{ "ROLES",	"roles",	NULL },
	{ "ADDRESS",	"address",	NULL },
	{ "CPUS",	"cpus",		NULL },
	{ "MEMORY",	"memory_bytes",	format_size },
	{ "LAST-SEEN",	"last_seen",	format_age },
};

static const struct format_col node_fields[] = {
	{ "name",		"name",			NULL },
	{ "state",		"state",		NULL },
	{ "roles",		"roles",		NULL },
	{ "address",		"address",		NULL },
	{ "proto-version",	"proto_version",	NULL },
	{ "agent-version",	"agent_version",	NULL },
	{ "cpus",		"cpus",			NULL },
	{ "memory",		"memory_bytes",		format_size_exact },
	{ "disk",		"disk_bytes",		format_size_exact },
	{ "libvirt",		"libvirt_version",	NULL },
	{ "qemu",		"qemu_version",		NULL },
	{ "last-seen",		"last_seen",		format_time },
	{ "enrolled-at",	"enrolled_at",		format_time },
	{ "fingerprint",	"cert_fingerprint",	NULL },
	{ "ratios",		"placement",		node_fmt_ratios },
	{ "reserve",		"placement",		node_fmt_reserve },
	{ "tags",		"placement",		node_fmt_tags },
	{ "allocated",		"placement",		node_fmt_alloc },
	{ "migrations",		"placement",		node_fmt_migrations },
	{ "drain-report",	"placement",		node_fmt_report },
};

/* The placement lines: node_fields from "ratios" on. */
#define NODE_PLACEMENT_FIRST	14

static const char *
node_str(json_t *o, const char *key)
{
	json_t	*v = json_object_get(o, key);

	return (json_is_string(v) ? json_string_value(v) : "");
}

static json_int_t
node_int(json_t *o, const char *key)
{
	return (json_integer_value(json_object_get(o, key)));
}

/* "cpu 4.0, memory 1.0, disk 1.0" */
static char *
node_fmt_ratios(json_t *v)
{
	char	*out, *c;

	xasprintf(&out, "cpu %s, memory %s, disk %s", node_str(v, "cpu_ratio"),
	    node_str(v, "memory_ratio"), node_str(v, "disk_ratio"));
	c = format_clean(out);
	free(out);
	return (c);
}

/* "2 CPUs, 4G of memory" */
static char *
node_fmt_reserve(json_t *v)
{
	char	 mem[32], *out;

	format_bytes((uint64_t)node_int(v, "reserve_memory_mib") << 20, mem,
	    sizeof(mem));
	xasprintf(&out, "%" JSON_INTEGER_FORMAT " CPUs, %s of memory",
	    node_int(v, "reserve_cpus"), mem);
	return (out);
}

static char *
node_fmt_tags(json_t *v)
{
	const char	*t = node_str(v, "tags");

	return (format_clean(*t != '\0' ? t : "-"));
}

/* "3/8 vCPUs, 1.5G/23G memory, 768M/250G disk, 3 VMs" */
static char *
node_fmt_alloc(json_t *v)
{
	json_t	*cap = json_object_get(v, "capacity");
	json_t	*use = json_object_get(v, "allocated");
	char	 um[16], cm[16], ud[16], cd[16], *out;

	format_bytes((uint64_t)node_int(use, "memory_mib") << 20, um,
	    sizeof(um));
	format_bytes((uint64_t)node_int(cap, "memory_mib") << 20, cm,
	    sizeof(cm));
	format_bytes((uint64_t)node_int(use, "disk_bytes"), ud, sizeof(ud));
	format_bytes((uint64_t)node_int(cap, "disk_bytes"), cd, sizeof(cd));
	xasprintf(&out, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT
	    " vCPUs, %s/%s memory, %s/%s disk, %" JSON_INTEGER_FORMAT " VMs",
	    node_int(use, "vcpus"), node_int(cap, "vcpus"), um, cm, ud, cd,
	    node_int(use, "vms"));
	return (out);
}

static char *
node_fmt_report(json_t *v)
{
	const char	*t = node_str(v, "drain_report");

	return (format_clean(*t != '\0' ? t : "-"));
}

/* A VM's migration as "migrating 43 % to hv-b (copying)". */
char *
node_fmt_migration(json_t *m)
{
	char	*out, *c;

	if (!json_is_object(m))
		return (xstrdup("-"));
	if (strcmp(node_str(m, "state"), "queued") == 0)
		xasprintf(&out, "queued to move to %s (%s)", node_str(m, "to"),
		    node_str(m, "reason"));
	else
		xasprintf(&out, "migrating %" JSON_INTEGER_FORMAT " %% to %s "
		    "(%s%s%s)", node_int(m, "progress"), node_str(m, "to"),
		    node_str(m, "state"), *node_str(m, "last_error") ?
		    "; last error: " : "", node_str(m, "last_error"));
	c = format_clean(out);
	free(out);
	return (c);
}

static char *
node_fmt_migrations(json_t *v)
{
	json_t	*list = json_object_get(v, "migrations"), *m;
	char	*out = NULL, *one, *tmp;
	size_t	 i;

	json_array_foreach(list, i, m) {
		one = node_fmt_migration(m);
		xasprintf(&tmp, "%s%s%s: %s", out ? out : "", out ? "; " : "",
		    node_str(m, "vm"), one);
		free(one);
		free(out);
		out = tmp;
	}
	return (out != NULL ? out : xstrdup("-"));
}


static char	*node_path(const char *, const char *);

/* "/v1/nodes/NAME" plus suffix, with NAME escaped; caller frees. */
static char *
node_path(const char *name, const char *suffix)
{
	char	*e, *path;

	e = cli_escape(name);
	xasprintf(&path, "/v1/nodes/%s%s", e, suffix);
	free(e);
	return (path);
}

int
node_list(struct cli_call *call)
{
	(void)call;
	return (cli_show_list("/v1/nodes", node_cols, nitems(node_cols)));
}

int
node_show(struct cli_call *call)
{
	json_t	*reply;
	char	*path;
	int	 rc;

	path = node_path(call->ca_argv[0], "");
	rc = cli_request("GET", path, NULL, &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	/* Placement lines for hypervisors only. */
	return (cli_show_object(reply, node_fields, json_object_get(reply,
	    "placement") != NULL ? nitems(node_fields) :
	    NODE_PLACEMENT_FIRST));
}

/*
 * Only the token goes to stdout, so that T=$(opsnctl node token) works; the
 * expiry is for a person, on stderr when that is a terminal.
 */
int
node_token(struct cli_call *call)
{
	const char	*ttl, *token, *expires;
	char		*cause, *clean;
	int64_t		 secs;
	json_t		*reply;

	if ((ttl = cli_opt(call, "ttl")) == NULL)
		ttl = NODE_TTL_DEFAULT;
	if (util_parse_duration(ttl, &secs, &cause) == -1 || secs == 0) {
		fprintf(stderr, "opsnctl: --ttl: %s\n", cause != NULL ? cause :
		    "must be longer than 0");
		free(cause);
		return (cli_usage(call));
	}
	if (cli_request("POST", "/v1/node-tokens", json_pack("{s:s}", "ttl",
	    ttl), &reply) == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON) {
		format_json(stdout, reply);
		json_decref(reply);
		return (CLI_EXIT_OK);
	}
	if ((token = json_string_value(json_object_get(reply, "token"))) ==
	    NULL) {
		fprintf(stderr, "opsnctl: the reply holds no token\n");
		json_decref(reply);
		return (CLI_EXIT_ERROR);
	}
	printf("%s\n", token);
	expires = json_string_value(json_object_get(reply, "expires_at"));
	if (expires != NULL && !cli_conf.cc_quiet && isatty(STDERR_FILENO)) {
		clean = format_clean(expires);
		fprintf(stderr, "opsnctl: the token expires at %s\n", clean);
		free(clean);
	}
	json_decref(reply);
	return (CLI_EXIT_OK);
}

int
node_revoke(struct cli_call *call)
{
	json_t		*reply;
	const char	*state;
	char		*path, *name, *cstate;
	int		 rc;

	path = node_path(call->ca_argv[0], "/revoke");
	rc = cli_request("POST", path, json_object(), &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, reply);
	else if (!cli_conf.cc_quiet) {
		state = json_string_value(json_object_get(reply, "state"));
		name = format_clean(call->ca_argv[0]);
		cstate = format_clean(state != NULL ? state : "revoked");
		printf("node %s: %s\n", name, cstate);
		free(name);
		free(cstate);
	}
	json_decref(reply);
	return (CLI_EXIT_OK);
}

/* Print a placement reply (consumed): its lines of node show, or JSON. */
static int
node_placement_print(json_t *reply)
{
	json_t	*wrap;
	char	*name, *state;

	if (cli_conf.cc_output == CLI_OUTPUT_JSON || !json_is_object(reply))
		return (cli_show_object(reply, node_fields, 0));
	if (!cli_conf.cc_quiet) {
		name = format_clean(node_str(reply, "node"));
		state = format_clean(node_str(reply, "state"));
		printf("node %s: %s\n", name, state);
		free(name);
		free(state);
	}
	/* The formatters read the placement object as node show has it. */
	wrap = json_pack("{s:O}", "placement", reply);
	json_decref(reply);
	return (cli_show_object(wrap, node_fields + NODE_PLACEMENT_FIRST,
	    nitems(node_fields) - NODE_PLACEMENT_FIRST));
}

/* POST to /v1/nodes/NAME/verb with body (consumed); print the reply. */
static int
node_post(const char *name, const char *verb, json_t *body)
{
	json_t	*reply;
	char	*path;
	int	 rc;

	path = node_path(name, verb);
	rc = cli_request("POST", path, body, &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (node_placement_print(reply));
}

int
node_cordon(struct cli_call *call)
{
	return (node_post(call->ca_argv[0], "/cordon", json_object()));
}

int
node_uncordon(struct cli_call *call)
{
	return (node_post(call->ca_argv[0], "/uncordon", json_object()));
}

/* A ratio option: digits with at most three decimals ("1.5"). */
static int
node_ratio_opt(const char *opt, const char *v, json_t *body,
    const char *key)
{
	const char	*p;
	int		 dot = 0, decimals = 0;

	for (p = v; *p != '\0'; p++) {
		if (*p == '.' && !dot && p != v)
			dot = 1;
		else if (*p >= '0' && *p <= '9')
			decimals += dot;
		else
			break;
	}
	if (*v == '\0' || *p != '\0' || decimals > 3 || p[-1] == '.') {
		fprintf(stderr, "opsnctl: --%s: '%s' is not a ratio such as "
		    "4.0 or 1.5\n", opt, v);
		return (-1);
	}
	json_object_set_new(body, key, json_string(v));
	return (0);
}

/*
 * opsnctl node set NAME [--cpu-ratio R] [--memory-ratio R] [--disk-ratio R]
 * [--reserve-cpus N] [--reserve-memory SIZE] [--tags K=V,...]
 */
int
node_set(struct cli_call *call)
{
	static const struct {
		const char	*opt, *key;
	} ratios[] = {
		{ "cpu-ratio", "cpu_ratio" },
		{ "memory-ratio", "memory_ratio" },
		{ "disk-ratio", "disk_ratio" },
	};
	json_t		*body = json_object(), *reply;
	const char	*v;
	char		*path, *cause = NULL;
	uint64_t	 mib;
	int64_t		 n;
	size_t		 i;
	int		 rc;

	for (i = 0; i < nitems(ratios); i++)
		if ((v = cli_opt(call, ratios[i].opt)) != NULL &&
		    node_ratio_opt(ratios[i].opt, v, body, ratios[i].key) == -1)
			goto usage;
	if ((v = cli_opt(call, "reserve-cpus")) != NULL) {
		if (format_parse_count(v, 0, 4096, &n, &cause) == -1) {
			fprintf(stderr, "opsnctl: --reserve-cpus: %s\n", cause);
			goto usage;
		}
		json_object_set_new(body, "reserve_cpus", json_integer(n));
	}
	if ((v = cli_opt(call, "reserve-memory")) != NULL) {
		if (strcmp(v, "0") == 0)
			mib = 0;
		else if (format_parse_mib(v, &mib, &cause) == -1) {
			fprintf(stderr, "opsnctl: --reserve-memory: %s\n",
			    cause);
			goto usage;
		}
		json_object_set_new(body, "reserve_memory_mib",
		    json_integer((json_int_t)mib));
	}
	if ((v = cli_opt(call, "tags")) != NULL)
		json_object_set_new(body, "tags", json_string(v));
	if (json_object_size(body) == 0) {
		fprintf(stderr, "opsnctl: node set: nothing to set\n");
		goto usage;
	}
	path = node_path(call->ca_argv[0], "/placement");
	rc = cli_request("PATCH", path, body, &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (node_placement_print(reply));
usage:
	free(cause);
	json_decref(body);
	return (cli_usage(call));
}

static void
node_sleep(uint64_t ms)
{
	struct timespec	 ts;

	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
}

/*
 * opsnctl node drain NAME [--wait [--timeout DURATION]]: with --wait,
 * follow the migrations until the node is empty and cordoned, or the
 * drain stops (exit 1 with its report).
 */
int
node_drain(struct cli_call *call)
{
	json_t		*reply = NULL, *migs, *m;
	const char	*t, *admin;
	char		*path, *cause = NULL, *name, *one, *report;
	int64_t		 timeout;
	uint64_t	 start = util_mono_ms();
	size_t		 i;
	int		 rc;

	if ((t = cli_opt(call, "timeout")) != NULL &&
	    cli_opt(call, "wait") == NULL) {
		fprintf(stderr, "opsnctl: --timeout needs --wait\n");
		return (cli_usage(call));
	}
	if (util_parse_duration(t ? t : NODE_DRAIN_TIMEOUT, &timeout,
	    &cause) == -1 || timeout == 0) {
		fprintf(stderr, "opsnctl: --timeout: %s\n", cause ? cause :
		    "must be longer than 0");
		free(cause);
		return (cli_usage(call));
	}
	if (cli_opt(call, "wait") == NULL)
		return (node_post(call->ca_argv[0], "/drain", json_object()));
	path = node_path(call->ca_argv[0], "/drain");
	rc = cli_request("POST", path, json_object(), &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	name = format_clean(call->ca_argv[0]);
	path = node_path(call->ca_argv[0], "/placement");
	for (;;) {
		admin = node_str(reply, "admin");
		if (strcmp(admin, "draining") != 0)
			break;
		if (util_mono_ms() - start >= (uint64_t)timeout * 1000) {
			cli_status_end(1);
			fprintf(stderr, "opsnctl: %s: still draining after "
			    "%" PRId64 "s\n", name, timeout);
			rc = CLI_EXIT_ERROR;
			goto out;
		}
		migs = json_object_get(reply, "migrations");
		one = NULL;
		json_array_foreach(migs, i, m) {
			char *tmp = node_fmt_migration(m);

			free(one);
			xasprintf(&one, "%s %s", node_str(m, "vm"), tmp);
			free(tmp);
		}
		cli_status("draining %s: %" JSON_INTEGER_FORMAT " VMs left%s%s",
		    name, node_int(json_object_get(reply, "allocated"), "vms"),
		    one ? "; " : "", one ? one : "");
		free(one);
		node_sleep(NODE_POLL_MS);
		json_decref(reply);
		reply = NULL;
		if (cli_request("GET", path, NULL, &reply) == -1) {
			rc = CLI_EXIT_ERROR;
			goto out;
		}
	}
	cli_status_end(0);
	report = format_clean(node_str(reply, "drain_report"));
	if (*report != '\0') {
		fprintf(stderr, "opsnctl: the drain of %s stopped: %s\n", name,
		    report);
		rc = CLI_EXIT_ERROR;
	} else {
		rc = CLI_EXIT_OK;
		if (cli_conf.cc_output == CLI_OUTPUT_JSON)
			format_json(stdout, reply);
		else if (!cli_conf.cc_quiet)
			printf("node %s: drained (empty, %s)\n", name,
			    node_str(reply, "admin"));
	}
	free(report);
out:
	free(path);
	free(name);
	json_decref(reply);
	return (rc);
}

/* opsnctl node evacuate NAME --fenced */
int
node_evacuate(struct cli_call *call)
{
	json_t		*reply, *list;
	char		*path, *a;
	int		 rc;

	if (cli_opt(call, "fenced") == NULL) {
		fprintf(stderr, "opsnctl: node evacuate: --fenced is required: "
		    "confirm that the node is off; its VMs start again "
		    "elsewhere from their images and its local disks are "
		    "lost\n");
		return (cli_usage(call));
	}
	path = node_path(call->ca_argv[0], "/evacuate");
	rc = cli_request("POST", path, json_pack("{s:b}", "fenced", 1),
	    &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON) {
		format_json(stdout, reply);
		json_decref(reply);
		return (CLI_EXIT_OK);
	}
	format_each(stdout, json_object_get(reply, "moved"),
	    "vm %s: rebuilt on %s\n%s", "vm", "to", NULL);
	list = json_object_get(reply, "unplaced");
	format_each(stdout, list, "vm %s: fits nowhere, left on the node: "
	    "%s\n%s", "vm", "reason", NULL);
	a = format_clean(node_str(reply, "warning"));
	fprintf(stderr, "opsnctl: %s\n", a);
	free(a);
	rc = json_array_size(list) > 0 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
	json_decref(reply);
	return (rc);
}
