/*
 * opsnctl cluster: what the hypervisors can still take (capacity, N+1,
 * empty nodes) and rebalancing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

static const char *
cluster_str(json_t *o, const char *key)
{
	json_t	*v = json_object_get(o, key);

	return (json_is_string(v) ? json_string_value(v) : "");
}

static void
cluster_print_clean(const char *fmt, const char *s)
{
	char	*c = format_clean(s);

	printf(fmt, c);
	free(c);
}

/* opsnctl cluster capacity [--plan PLAN] */
int
cluster_capacity(struct cli_call *call)
{
	const char	*q[] = { "plan", cli_opt(call, "plan"), NULL };
	json_t		*reply, *plans, *p, *n1, *list, *v;
	char		*path, mem[16], disk[16];
	size_t		 i;

	path = cli_path_query("/v1/cluster/capacity", q);
	if (cli_request("GET", path, NULL, &reply) == -1) {
		free(path);
		return (CLI_EXIT_ERROR);
	}
	free(path);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON) {
		format_json(stdout, reply);
		json_decref(reply);
		return (CLI_EXIT_OK);
	}
	plans = json_object_get(reply, "plans");
	if (json_array_size(plans) == 0)
		printf("no plan (opsnctl plan add)\n");
	json_array_foreach(plans, i, p) {
		format_bytes((uint64_t)json_integer_value(json_object_get(p,
		    "memory_mib")) << 20, mem, sizeof(mem));
		format_bytes((uint64_t)json_integer_value(json_object_get(p,
		    "disk_bytes")), disk, sizeof(disk));
		cluster_print_clean("plan %s: ", cluster_str(p, "plan"));
		printf("%" JSON_INTEGER_FORMAT " more fit (%" JSON_INTEGER_FORMAT
		    " vCPUs, %s memory, %s disk)\n", json_integer_value(
		    json_object_get(p, "fit")), json_integer_value(
		    json_object_get(p, "vcpus")), mem, disk);
	}
	n1 = json_object_get(reply, "n_plus_1");
	if (json_is_null(json_object_get(n1, "lost_node")))
		printf("N+1: no hypervisor\n");
	else {
		cluster_print_clean("N+1: losing %s (the largest node), ",
		    cluster_str(n1, "lost_node"));
		list = json_object_get(n1, "unplaced");
		if (json_array_size(list) == 0)
			printf("its %" JSON_INTEGER_FORMAT " VMs would all fit "
			    "elsewhere\n", json_integer_value(json_object_get(
			    n1, "moved")));
		else {
			printf("%zu VMs would not fit elsewhere:",
			    json_array_size(list));
			json_array_foreach(list, i, v)
				cluster_print_clean(" %s", json_string_value(v));
			printf("\n");
		}
	}
	list = json_object_get(reply, "empty_nodes");
	printf("empty nodes (could be powered down):");
	if (json_array_size(list) == 0)
		printf(" none");
	json_array_foreach(list, i, v)
		cluster_print_clean(" %s", json_string_value(v));
	printf("\n");
	v = json_object_get(reply, "score");
	printf("imbalance score: %.4f (policy %s)\n", json_number_value(
	    json_object_get(v, "total")), cluster_str(reply, "policy"));
	json_decref(reply);
	return (CLI_EXIT_OK);
}

/* opsnctl cluster rebalance [--dry-run] [--max-moves N] */
int
cluster_rebalance(struct cli_call *call)
{
	json_t		*body, *reply, *moves;
	const char	*v;
	char		*cause = NULL;
	int64_t		 n;
	int		 dry = cli_opt(call, "dry-run") != NULL;

	body = json_pack("{s:b}", "dry_run", dry);
	if ((v = cli_opt(call, "max-moves")) != NULL) {
		if (format_parse_count(v, 1, 1000, &n, &cause) == -1) {
			fprintf(stderr, "opsnctl: --max-moves: %s\n", cause);
			free(cause);
			json_decref(body);
			return (cli_usage(call));
		}
		json_object_set_new(body, "max_moves", json_integer(n));
	}
	if (cli_request("POST", "/v1/cluster/rebalance", body, &reply) == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON) {
		format_json(stdout, reply);
		json_decref(reply);
		return (CLI_EXIT_OK);
	}
	moves = json_object_get(reply, "moves");
	format_each(stdout, moves, "move %s from %s to %s\n", "vm", "from",
	    "to");
	printf("score %.4f -> %.4f with %zu moves%s\n", json_number_value(
	    json_object_get(json_object_get(reply, "score_before"), "total")),
	    json_number_value(json_object_get(json_object_get(reply,
	    "score_after"), "total")), json_array_size(moves),
	    json_array_size(moves) == 0 ? " (balanced)" : dry ?
	    " (dry run: nothing moved)" : " (queued: one at a time, as "
	    "drains do)");
	json_decref(reply);
	return (CLI_EXIT_OK);
}
