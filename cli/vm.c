/*
 * opsnctl vm: create, list, show, start, stop, reboot and delete VMs, wait
 * for their node to act, and read their console.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define VM_TIMEOUT_DEFAULT	"120s"
#define VM_POLL_MS		500
#define VM_ID_SHORT		8	/* characters of the id in tables */
#define VM_MIB			(1024 * 1024)

/* start, stop, reboot, delete: the route and what --wait waits for. */
static const struct vm_action {
	const char	*va_verb;	/* command word */
	const char	*va_method;
	const char	*va_suffix;	/* after /v1/vms/{vm} */
	const char	*va_goal;	/* observed state; NULL: gone (404) */
	const char	*va_doing;	/* printed without --wait */
	const char	*va_done;	/* printed after --wait */
} vm_actions[] = {
	{ "start",  "POST",   "/start",  "running", "starting",  "running" },
	{ "stop",   "POST",   "/stop",   "shutoff", "stopping",  "shut off" },
	{ "reboot", "POST",   "/reboot", "running", "rebooting", "rebooted" },
	{ "delete", "DELETE", "",        NULL,      "deleting",  "deleted" },
};

/* How the progress line names an observed state. */
static const struct {
	const char	*state;
	const char	*text;
} vm_state_texts[] = {
	{ "downloading",	"downloading image..." },
	{ "creating",		"creating..." },
	{ "shutoff",		"shut off" },
	{ "unknown",		"waiting for the node..." },
};

static char	*vm_fmt_id(json_t *);
static char	*vm_fmt_state(json_t *);
static char	*vm_fmt_since(json_t *);
static char	*vm_fmt_nics(json_t *);

static const struct format_col vm_cols[] = {
	{ "ID",		"id",		vm_fmt_id },
	{ "NAME",	"name",		NULL },
	{ "TENANT",	"tenant",	NULL },
	{ "NODE",	"node",		NULL },
	{ "VCPUS",	"vcpus",	NULL },
	{ "MEMORY",	"memory_mib",	format_mib },
	{ "DISK",	"disk_bytes",	format_size },
	{ "DESIRED",	"desired",	NULL },
	{ "OBSERVED",	"observed",	vm_fmt_state },
	{ "SINCE",	"observed",	vm_fmt_since },
};

/* "observed.*" keys are copied up from the observed object to print. */
static const struct format_col vm_fields[] = {
	{ "id",			"id",			NULL },
	{ "name",		"name",			NULL },
	{ "node",		"node",			NULL },
	{ "tenant",		"tenant",		NULL },
	{ "plan",		"plan",			NULL },
	{ "image",		"image",		NULL },
	{ "vcpus",		"vcpus",		NULL },
	{ "memory",		"memory_mib",		format_mib },
	{ "disk",		"disk_bytes",		format_size_exact },
	{ "nics",		"nics",			vm_fmt_nics },
	{ "group",		"group",		NULL },
	{ "require",		"require",		NULL },
	{ "migration",		"migration",		node_fmt_migration },
	{ "desired",		"desired",		NULL },
	{ "generation",		"generation",		NULL },
	{ "observed",		"observed.state",	NULL },
	{ "reason",		"observed.reason",	NULL },
	{ "error",		"observed.error",	NULL },
	{ "since",		"observed.since",	format_time },
	{ "observed-generation", "observed.generation",	NULL },
	{ "pid",		"observed.pid",		NULL },
	{ "created-at",		"created_at",		format_time },
};

static volatile sig_atomic_t	 vm_interrupted;

static char	*vm_path(const char *, const char *);
static const char *vm_str(json_t *, const char *);
static int	 vm_parse_count(const char *, const char *, json_int_t *);
static int	 vm_timeout(const struct cli_call *, int64_t *);
static int	 vm_print(json_t *);
static const char *vm_state_text(const char *);
static int	 vm_wait(json_t *, const char *, int64_t, json_t **);
static void	 vm_sleep(uint64_t);
static void	 vm_int_cb(int);

/* The first characters of a UUID tell VMs apart in a table. */
static char *
vm_fmt_id(json_t *v)
{
	char	*s, *out;

	if (!json_is_string(v))
		return (format_value(v));
	s = xstrndup(json_string_value(v), VM_ID_SHORT);
	out = format_clean(s);
	free(s);
	return (out);
}

static char *
vm_fmt_state(json_t *v)
{
	return (format_value(json_object_get(v, "state")));
}

static char *
vm_fmt_since(json_t *v)
{
	return (format_age(json_object_get(v, "since")));
}

/* [{"bridge":"br0","mac":"52:54:00:.."}] as "br0 52:54:00:..". */
static char *
vm_fmt_nics(json_t *v)
{
	json_t	*nic;
	char	*out = NULL, *tmp, *bridge, *mac;
	size_t	 i;

	if (!json_is_array(v))
		return (format_value(v));
	json_array_foreach(v, i, nic) {
		bridge = format_value(json_object_get(nic, "bridge"));
		mac = format_value(json_object_get(nic, "mac"));
		xasprintf(&tmp, "%s%s%s %s", out != NULL ? out : "",
		    out != NULL ? ", " : "", bridge, mac);
		free(out);
		free(bridge);
		free(mac);
		out = tmp;
	}
	return (out != NULL ? out : xstrdup("-"));
}

/* "/v1/vms/VM" plus suffix, with VM (name or id) escaped; caller frees. */
static char *
vm_path(const char *vm, const char *suffix)
{
	char	*e, *path;

	e = cli_escape(vm);
	xasprintf(&path, "/v1/vms/%s%s", e, suffix);
	free(e);
	return (path);
}

/* A string member of obj, or "" if it is not one. */
static const char *
vm_str(json_t *obj, const char *key)
{
	json_t	*v = json_object_get(obj, key);

	return (json_is_string(v) ? json_string_value(v) : "");
}

/* A whole number above 0 for option opt; -1 after printing why. */
static int
vm_parse_count(const char *opt, const char *s, json_int_t *out)
{
	char		*end;
	long long	 n;

	errno = 0;
	n = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 || n < 1 ||
	    n > INT_MAX) {
		fprintf(stderr, "opsnctl: --%s: '%s' is not a whole number "
		    "above 0\n", opt, s);
		return (-1);
	}
	*out = (json_int_t)n;
	return (0);
}

/* --timeout in seconds (only with --wait); -1 after printing why. */
static int
vm_timeout(const struct cli_call *call, int64_t *secs)
{
	const char	*t;
	char		*cause = NULL;

	if ((t = cli_opt(call, "timeout")) != NULL &&
	    cli_opt(call, "wait") == NULL) {
		fprintf(stderr, "opsnctl: --timeout needs --wait\n");
		return (-1);
	}
	if (t == NULL)
		t = VM_TIMEOUT_DEFAULT;
	if (util_parse_duration(t, secs, &cause) == -1 || *secs == 0) {
		fprintf(stderr, "opsnctl: --timeout: %s\n", cause != NULL ?
		    cause : "must be longer than 0");
		free(cause);
		return (-1);
	}
	return (0);
}

/*
 * Print vm (consumed) as "field: value" lines, the observed fields among
 * them; the error line only when there is an error.
 */
static int
vm_print(json_t *vm)
{
	struct format_col	 cols[nitems(vm_fields)];
	json_t			*flat, *obs, *v;
	const char		*k;
	char			*key;
	size_t			 i, n = 0;
	int			 has_error;

	if (cli_conf.cc_output == CLI_OUTPUT_JSON || !json_is_object(vm))
		return (cli_show_object(vm, vm_fields, nitems(vm_fields)));
	flat = json_deep_copy(vm);
	obs = json_object_get(vm, "observed");
	if (json_is_object(obs)) {
		json_object_foreach(obs, k, v) {
			xasprintf(&key, "observed.%s", k);
			json_object_set(flat, key, v);
			free(key);
		}
	}
	v = json_object_get(obs, "error");
	has_error = v != NULL && !json_is_null(v) &&
	    !(json_is_string(v) && json_string_length(v) == 0);
	for (i = 0; i < nitems(vm_fields); i++) {
		if (strcmp(vm_fields[i].fc_key, "observed.error") == 0 &&
		    !has_error)
			continue;
		/* A migration line only while it migrates. */
		if (strcmp(vm_fields[i].fc_key, "migration") == 0 &&
		    !json_is_object(json_object_get(vm, "migration")))
			continue;
		cols[n++] = vm_fields[i];
	}
	json_decref(vm);
	return (cli_show_object(flat, cols, n));
}

int
vm_create(struct cli_call *call)
{
	static const struct {
		const char	*opt;
		int		 sized;	/* not needed with --plan */
	} required[] = {
		{ "name", 0 }, { "image", 0 },
		{ "vcpus", 1 }, { "memory", 1 }, { "disk", 1 },
	};
	const char	*plan, *v, **nics;
	json_t		*body, *list, *vm = NULL, *done;
	json_int_t	 vcpus;
	uint64_t	 bytes;
	int64_t		 timeout;
	char		*cause;
	size_t		 i, nnics;
	int		 wait = cli_opt(call, "wait") != NULL;

	/* A plan gives the sizes; --vcpus, --memory, --disk override it. */
	plan = cli_opt(call, "plan");
	for (i = 0; i < nitems(required); i++) {
		if (cli_opt(call, required[i].opt) == NULL &&
		    (plan == NULL || !required[i].sized)) {
			fprintf(stderr, "opsnctl: vm create: --%s is "
			    "required%s\n", required[i].opt,
			    required[i].sized ? " without --plan" : "");
			return (cli_usage(call));
		}
	}
	if (vm_timeout(call, &timeout) == -1)
		return (cli_usage(call));

	body = json_pack("{s:s,s:s,s:s}", "name", cli_opt(call, "name"),
	    "image", cli_opt(call, "image"), "power", cli_opt(call,
	    "stopped") != NULL ? "stopped" : "running");
	/* No --node: the controller places the VM (its scheduler). */
	if ((v = cli_opt(call, "node")) != NULL)
		json_object_set_new(body, "node", json_string(v));
	if ((v = cli_opt(call, "group")) != NULL)
		json_object_set_new(body, "group", json_string(v));
	if ((v = cli_opt(call, "policy")) != NULL)
		json_object_set_new(body, "policy", json_string(v));
	if ((v = cli_opt(call, "require")) != NULL)
		json_object_set_new(body, "require", json_string(v));
	if (plan != NULL)
		json_object_set_new(body, "plan", json_string(plan));
	if ((v = cli_opt(call, "tenant")) != NULL)
		json_object_set_new(body, "tenant", json_string(v));
	if ((v = cli_opt(call, "vcpus")) != NULL) {
		if (vm_parse_count("vcpus", v, &vcpus) == -1)
			goto usage;
		json_object_set_new(body, "vcpus", json_integer(vcpus));
	}
	if ((v = cli_opt(call, "memory")) != NULL) {
		if (format_parse_size(v, &bytes, &cause) == -1) {
			fprintf(stderr, "opsnctl: --memory: %s\n", cause);
			free(cause);
			goto usage;
		}
		if (bytes == 0 || bytes % VM_MIB != 0) {
			fprintf(stderr, "opsnctl: --memory: '%s' is not a "
			    "whole number of MiB (a bare number is bytes: "
			    "give 512M, 2G)\n", v);
			goto usage;
		}
		json_object_set_new(body, "memory_mib",
		    json_integer((json_int_t)(bytes / VM_MIB)));
	}
	if ((v = cli_opt(call, "disk")) != NULL) {
		if (format_parse_size(v, &bytes, &cause) == -1) {
			fprintf(stderr, "opsnctl: --disk: %s\n", cause);
			free(cause);
			goto usage;
		}
		if (bytes == 0) {
			fprintf(stderr, "opsnctl: --disk: must be above 0\n");
			goto usage;
		}
		json_object_set_new(body, "disk_bytes",
		    json_integer((json_int_t)bytes));
	}
	/* No --nic: the controller's default. */
	if ((nics = cli_opt_list(call, "nic", &nnics)) != NULL) {
		list = json_array();
		for (i = 0; i < nnics; i++)
			json_array_append_new(list, json_pack("{s:s}",
			    "bridge", nics[i]));
		json_object_set_new(body, "nics", list);
	}

	if (cli_request("POST", "/v1/vms", body, &vm) == -1)
		return (CLI_EXIT_ERROR);
	if (wait) {
		if (vm_wait(vm, cli_opt(call, "stopped") != NULL ? "shutoff" :
		    "running", timeout, &done) == -1) {
			json_decref(vm);
			return (CLI_EXIT_ERROR);
		}
		json_decref(vm);
		vm = done;
	}
	return (vm_print(vm));

usage:
	json_decref(body);
	return (cli_usage(call));
}

int
vm_list(struct cli_call *call)
{
	const char	*q[] = {
		"node", cli_opt(call, "node"),
		"tenant", cli_opt(call, "tenant"),
		"state", cli_opt(call, "state"),
		NULL
	};
	char		*path;
	int		 rc;

	path = cli_path_query("/v1/vms", q);
	rc = cli_show_list(path, vm_cols, nitems(vm_cols));
	free(path);
	return (rc);
}

int
vm_show(struct cli_call *call)
{
	json_t	*reply;
	char	*path;
	int	 rc;

	path = vm_path(call->ca_argv[0], "");
	rc = cli_request("GET", path, NULL, &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (vm_print(reply));
}

int
vm_action(struct cli_call *call)
{
	const struct vm_action	*a = NULL;
	json_t			*vm, *done = NULL;
	int64_t			 timeout;
	char			*path, *name;
	size_t			 i;
	int			 rc, wait = cli_opt(call, "wait") != NULL;

	for (i = 0; i < nitems(vm_actions); i++) {
		if (strcmp(call->ca_cmd->c_path[1], vm_actions[i].va_verb) == 0)
			a = &vm_actions[i];
	}
	if (a == NULL)
		return (cli_usage(call));
	if (vm_timeout(call, &timeout) == -1)
		return (cli_usage(call));
	path = vm_path(call->ca_argv[0], a->va_suffix);
	rc = cli_request(a->va_method, path, strcmp(a->va_method, "POST") ==
	    0 ? json_object() : NULL, &vm);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	if (wait && vm_wait(vm, a->va_goal, timeout, &done) == -1) {
		json_decref(vm);
		return (CLI_EXIT_ERROR);
	}
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, done != NULL ? done : vm);
	else if (!cli_conf.cc_quiet) {
		name = format_clean(vm_str(vm, "name")[0] != '\0' ?
		    vm_str(vm, "name") : call->ca_argv[0]);
		printf("vm %s: %s\n", name, wait ? a->va_done : a->va_doing);
		free(name);
	}
	json_decref(done);
	json_decref(vm);
	return (CLI_EXIT_OK);
}

static const char *
vm_state_text(const char *state)
{
	size_t	 i;

	for (i = 0; i < nitems(vm_state_texts); i++) {
		if (strcmp(state, vm_state_texts[i].state) == 0)
			return (vm_state_texts[i].text);
	}
	return (state);
}

/* Sleep ms, or less if a signal comes. */
static void
vm_sleep(uint64_t ms)
{
	struct timespec	 ts;

	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
}

/*
 * Poll the VM that vm (a reply to a change) describes until its node
 * reports goal, or until it is gone if goal is NULL. Only reports for the
 * reply's generation or later count: before the node has applied the
 * change, "running" or "error" may still describe the VM as it was. *last
 * gets the VM as last seen (NULL once gone). -1 after printing why.
 */
static int
vm_wait(json_t *vm, const char *goal, int64_t timeout, json_t **last)
{
	json_t		*cur = NULL, *obs, *g;
	const char	*id, *name, *state, *err, *reason;
	char		*path, *cname, *cerr;
	uint64_t	 start = util_mono_ms(), elapsed;
	json_int_t	 want = -1, have;
	int		 found, current, ret = -1;

	*last = NULL;
	if (json_is_integer(g = json_object_get(vm, "generation")))
		want = json_integer_value(g);
	id = vm_str(vm, "id");
	name = vm_str(vm, "name");
	if (id[0] == '\0' && name[0] == '\0') {
		fprintf(stderr, "opsnctl: the reply names no VM to wait for\n");
		return (-1);
	}
	path = vm_path(id[0] != '\0' ? id : name, "");
	cname = format_clean(name[0] != '\0' ? name : id);
	for (;;) {
		json_decref(cur);
		if ((found = cli_lookup(path, &cur)) == -1)
			goto out;
		elapsed = util_mono_ms() - start;
		if (found == 1) {
			if (goal == NULL) {
				cli_status_end(0);
				ret = 0;
				goto out;
			}
			cli_status_end(1);
			fprintf(stderr, "opsnctl: %s: the VM is gone\n", cname);
			goto out;
		}
		obs = json_object_get(cur, "observed");
		state = vm_str(obs, "state");
		g = json_object_get(obs, "generation");
		have = json_is_integer(g) ? json_integer_value(g) : -1;
		current = want == -1 || have >= want;
		if (current && goal != NULL && strcmp(state, goal) == 0) {
			cli_status_end(0);
			*last = cur;
			cur = NULL;
			ret = 0;
			goto out;
		}
		if (current && strcmp(state, "error") == 0) {
			cli_status_end(1);
			err = vm_str(obs, "error");
			cerr = format_clean(err[0] != '\0' ? err :
			    vm_str(obs, "reason"));
			fprintf(stderr, "opsnctl: %s: error: %s\n", cname,
			    cerr[0] != '\0' ? cerr : "(no message)");
			free(cerr);
			goto out;
		}
		reason = vm_str(obs, "reason");
		cli_status("%s: %s%s%s%s (%" PRIu64 "s)", cname,
		    current ? vm_state_text(state) : "waiting for the node...",
		    current && reason[0] != '\0' ? " (" : "",
		    current ? reason : "",
		    current && reason[0] != '\0' ? ")" : "", elapsed / 1000);
		if (elapsed >= (uint64_t)timeout * 1000) {
			cli_status_end(1);
			cerr = format_clean(state[0] != '\0' ? state :
			    "none");
			fprintf(stderr, "opsnctl: %s: gave up after %" PRId64
			    "s waiting for %s; last observed state: %s%s\n",
			    cname, timeout, goal != NULL ? goal : "deletion",
			    cerr, current ? "" :
			    " (the node has not applied the change yet)");
			free(cerr);
			goto out;
		}
		vm_sleep(VM_POLL_MS);
	}
out:
	json_decref(cur);
	free(cname);
	free(path);
	return (ret);
}

static void
vm_int_cb(int sig)
{
	(void)sig;
	vm_interrupted = 1;
}

/*
 * The console as the server keeps it, from its start; with --follow, what
 * comes next, until SIGINT (a normal way to stop: exit 0).
 */
int
vm_console(struct cli_call *call)
{
	struct sigaction	 sa;
	json_t			*reply, *data;
	json_int_t		 offset = 0, start, next;
	char			*base, *path;
	size_t			 len;
	int			 follow = cli_opt(call, "follow") != NULL;
	int			 rc = CLI_EXIT_ERROR;

	if (follow) {
		/* No SA_RESTART: the sleep between polls ends at once. */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = vm_int_cb;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
	}
	base = vm_path(call->ca_argv[0], "/console");
	while (!vm_interrupted) {
		xasprintf(&path, "%s?offset=%" JSON_INTEGER_FORMAT, base,
		    offset);
		if (cli_request("GET", path, NULL, &reply) == -1) {
			free(path);
			goto out;
		}
		free(path);
		data = json_object_get(reply, "data");
		start = json_integer_value(json_object_get(reply, "offset"));
		next = json_integer_value(json_object_get(reply, "next"));
		len = json_string_length(data);
		if (!json_is_string(data) || !json_is_integer(json_object_get(
		    reply, "next")) || start < offset || next < start ||
		    (len > 0 && next == start)) {
			fprintf(stderr, "opsnctl: the console reply is not "
			    "{\"offset\",\"next\",\"data\"} moving forward\n");
			json_decref(reply);
			goto out;
		}
		if (json_is_true(json_object_get(reply, "truncated")) &&
		    !cli_conf.cc_quiet)
			fprintf(stderr, "opsnctl: the console output before "
			    "byte %" JSON_INTEGER_FORMAT " is no longer kept\n",
			    start);
		if (len > 0 && (fwrite(json_string_value(data), 1, len,
		    stdout) != len || fflush(stdout) == EOF)) {
			json_decref(reply);
			goto out;	/* main reports the stdout error */
		}
		json_decref(reply);
		/* Without --follow, stop once the server has no more. */
		if (len == 0 || next == offset) {
			if (!follow)
				break;
			vm_sleep(VM_POLL_MS);
		}
		offset = next;
	}
	rc = CLI_EXIT_OK;
out:
	free(base);
	return (rc);
}

/* After a restore: VMs nodes hold that the controller does not know. */
static const struct format_col vm_unknown_cols[] = {
	{ "ID",		"id",		NULL },
	{ "NAME",	"name",		NULL },
	{ "NODE",	"node",		NULL },
	{ "STATE",	"state",	NULL },
	{ "SEEN",	"seen_at",	format_time },
	{ "DELETING",	"deleting",	NULL },
};

int
vm_unknown_list(struct cli_call *call)
{
	(void)call;
	return (cli_show_list("/v1/unknown-vms", vm_unknown_cols,
	    nitems(vm_unknown_cols)));
}

int
vm_unknown_delete(struct cli_call *call)
{
	if (cli_delete("/v1/unknown-vms", call->ca_argv[0]) == -1)
		return (CLI_EXIT_ERROR);
	if (!cli_conf.cc_quiet)
		fprintf(stderr, "opsnctl: its node deletes %s\n",
		    call->ca_argv[0]);
	return (CLI_EXIT_OK);
}
