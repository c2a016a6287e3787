/*
 * The placement engine on a Ganeti htools cluster (the text backend that
 * ../shared/bench/htools/gen_cluster.py writes), so that it can be run
 * side by side with hail and hspace on the same bytes.
 *
 *   place_bench [-p spread|pack] [-t K] CLUSTER.txt STREAM.txt
 *	places the stream (name|mem_MiB|disk_MiB|vcpus per line) in order,
 *	prints "name node" lines on stdout (run_ref.sh's OURS), and on
 *	stderr one line of figures: decisions, decisions/s, p50 and p99
 *	latency, the engine's own score; -t K then times K more decisions
 *	on the final state (each claimed, then released).
 *   place_bench -c MEM,CPU,DISK CLUSTER.txt
 *	how many more VMs of that size fit (hspace's question).
 *
 * Mapping: node memory = t_mem, host reserve = n_mem (the node OS) and
 * node_os_cpus; disk = t_dsk; vCPU ratio from the policy; max VMs =
 * spindle ratio x spindles (htools' spindle limit for plain disks);
 * offline nodes ('Y') are retired.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "opsn/util.h"
#include "place.h"

#define MIB	1048576LL

struct req {
	char	 name[64];
	int64_t	 mem, disk, vcpus;
};

static void
die(const char *fmt, const char *arg)
{
	fprintf(stderr, "place_bench: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(1);
}

static char *
slurp(const char *path)
{
	char	*buf, *cause = NULL;
	size_t	 len;

	if (util_read_file(path, (size_t)1 << 30, &buf, &len, &cause) == -1)
		die("%s", cause);
	return (buf);
}

/* Split line on '|' into at most max fields (in place). */
static int
fields(char *line, char **f, int max)
{
	int	 n = 0;

	f[n++] = line;
	for (; *line != '\0' && n < max; line++)
		if (*line == '|') {
			*line = '\0';
			f[n++] = line + 1;
		}
	return (n);
}

/* Node names by engine id (1-based). */
static char	**names;
static int64_t	 nnames;

static void
load_cluster(struct place *p, const char *path)
{
	char	*buf = slurp(path), *line, *next, *f[16], *cause = NULL;
	char	*sect[5] = { NULL }, *s;
	struct place_node_conf c;
	struct place_vm vm;
	double	 vratio = 4.0, sratio = 32.0;
	int	 n, i, k = 0;
	int64_t	 id;

	/*
	 * Each section ends at an empty line (htools splits on them), so an
	 * empty section is a lone empty line.
	 */
	sect[k++] = buf;
	for (s = buf; *s != '\0' && k < 5; s++) {
		if (*s != '\n' || (s != buf && s[-1] != '\n' && s[-1] != '\0'))
			continue;
		*s = '\0';	/* an empty line: the next section follows */
		sect[k++] = s + 1;
	}
	if (k < 5)
		die("%s: not an htools text file", path);
	/* Policies: the cluster line (empty owner) gives the ratios. */
	for (line = sect[4]; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (fields(line, f, 16) >= 6 && *f[0] == '\0') {
			vratio = strtod(f[4], NULL);
			sratio = strtod(f[5], NULL);
		}
	}
	for (line = sect[1]; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if ((n = fields(line, f, 16)) < 7)
			die("bad node line: %s", line);
		memset(&c, 0, sizeof(c));
		c.memory = strtoll(f[1], NULL, 10);
		c.reserve_memory = strtoll(f[2], NULL, 10);
		c.disk = strtoll(f[4], NULL, 10) * MIB;
		c.cpus = strtoll(f[6], NULL, 10);
		c.reserve_cpus = n > 13 && *f[13] ? strtoll(f[13], NULL, 10) : 1;
		c.cpu_ratio = (int32_t)(vratio * 1000 + 0.5);
		c.max_vms = (int64_t)(sratio * (n > 9 && *f[9] ?
		    strtoll(f[9], NULL, 10) : 1));
		id = ++nnames;
		names = xrealloc(names, (size_t)(nnames + 1) * sizeof(*names));
		names[id] = xstrdup(f[0]);
		if (place_node_set(p, id, f[0], &c, &cause) == -1)
			die("node: %s", cause);
		place_node_state(p, id, *f[7] == 'Y' ? PLACE_RETIRED :
		    PLACE_READY);
	}
	id = 0;
	for (line = sect[2]; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (fields(line, f, 16) < 7)
			die("bad instance line: %s", line);
		memset(&vm, 0, sizeof(vm));
		vm.memory = strtoll(f[1], NULL, 10);
		vm.disk = strtoll(f[2], NULL, 10) * MIB;
		vm.vcpus = strtoll(f[3], NULL, 10);
		for (i = 1; i <= nnames; i++)
			if (strcmp(names[i], f[6]) == 0)
				break;
		if (i > nnames)
			die("unknown node %s", f[6]);
		if (place_vm_add(p, ++id, &vm, i, &cause) == -1)
			die("instance: %s", cause);
	}
	free(buf);
}

static struct req *
load_stream(const char *path, size_t *n)
{
	char		*buf = slurp(path), *line, *next, *f[5];
	struct req	*r = NULL;

	*n = 0;
	for (line = buf; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (fields(line, f, 5) != 4)
			die("bad stream line: %s", line);
		r = xrealloc(r, (*n + 1) * sizeof(*r));
		strlcpy(r[*n].name, f[0], sizeof(r[*n].name));
		r[*n].mem = strtoll(f[1], NULL, 10);
		r[*n].disk = strtoll(f[2], NULL, 10) * MIB;
		r[*n].vcpus = strtoll(f[3], NULL, 10);
		(*n)++;
	}
	free(buf);
	return (r);
}

static double
now_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3);
}

static int
dbl_cmp(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return (x < y ? -1 : x > y);
}

static double
pct(double *v, size_t n, double q)
{
	size_t	 i;

	if (n == 0)
		return (0);
	i = (size_t)(q * (double)(n - 1) + 0.5);
	return (v[i]);
}

static void
figures(const char *what, double *lat, size_t n, double total)
{
	qsort(lat, n, sizeof(*lat), dbl_cmp);
	fprintf(stderr, "%s decisions=%zu per_s=%.0f p50_us=%.1f p99_us=%.1f "
	    "max_us=%.1f\n", what, n, total > 0 ? (double)n * 1e6 / total : 0,
	    pct(lat, n, 0.5), pct(lat, n, 0.99), n ? lat[n - 1] : 0);
}

/* Claim one VM of the stream, timed; its node id, or -1 (said why). */
static int64_t
timed_claim(struct place *p, const struct req *r, int64_t id, int pol,
    double *lat, double *total)
{
	struct place_vm	 vm;
	double		 t0;
	char		*cause = NULL;
	int64_t		 node;

	memset(&vm, 0, sizeof(vm));
	vm.memory = r->mem;
	vm.disk = r->disk;
	vm.vcpus = r->vcpus;
	t0 = now_us();
	node = place_claim(p, id, &vm, (enum place_policy)pol, &cause);
	*lat = now_us() - t0;
	*total += *lat;
	if (node == -1) {
		fprintf(stderr, "%s: %s\n", r->name, cause);
		free(cause);
	}
	return (node);
}

int
main(int argc, char **argv)
{
	struct place	*p = place_new();
	struct place_vm	 vm;
	struct place_score sc;
	struct req	*r;
	size_t		 n, i, placed = 0, timed = 0;
	double		*lat, total = 0;
	int		 ch, pol = PLACE_SPREAD;
	long		 extra = 0;
	int64_t		 node, mem = 0, cpu = 0, dsk = 0, id;

	while ((ch = getopt(argc, argv, "c:p:t:")) != -1) {
		switch (ch) {
		case 'c':
			if (sscanf(optarg, "%lld,%lld,%lld", (long long *)&mem,
			    (long long *)&cpu, (long long *)&dsk) != 3)
				die("-c MEM,CPU,DISK (MiB, count, MiB): %s",
				    optarg);
			break;
		case 'p':
			if ((pol = place_policy_parse(optarg)) == -1)
				die("unknown policy %s", optarg);
			break;
		case 't':
			extra = strtol(optarg, NULL, 10);
			break;
		default:
			die("%s", "usage: place_bench [-p spread|pack] [-t K] "
			    "CLUSTER.txt STREAM.txt | -c MEM,CPU,DISK CLUSTER.txt");
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 1) {
		load_cluster(p, argv[0]);
		memset(&vm, 0, sizeof(vm));
		vm.memory = mem;
		vm.vcpus = cpu;
		vm.disk = dsk * MIB;
		printf("%lld\n", (long long)place_fit_count(p, &vm));
		place_free(p);
		return (0);
	}
	if (argc != 2)
		die("%s", "need CLUSTER.txt STREAM.txt");
	load_cluster(p, argv[0]);
	r = load_stream(argv[1], &n);
	lat = xcalloc(n + (size_t)extra + 1, sizeof(*lat));
	id = 1000000000;
	for (i = 0; i < n; i++) {
		node = timed_claim(p, &r[i], ++id, pol, &lat[timed++], &total);
		if (node == -1)
			continue;
		placed++;
		printf("%s %s\n", r[i].name, names[node]);
	}
	fflush(stdout);
	place_score(p, &sc);
	fprintf(stderr, "stream placed=%zu of %zu policy=%s score=%.8f\n",
	    placed, n, place_policy_name(pol), sc.total);
	figures("stream", lat, timed, total);
	if (extra > 0 && n > 0) {
		timed = 0;
		total = 0;
		for (i = 0; i < (size_t)extra; i++)
			if (timed_claim(p, &r[i % n], ++id, pol, &lat[timed++],
			    &total) != -1)
				place_vm_remove(p, id);
		figures("timed", lat, timed, total);
	}
	free(lat);
	free(r);
	place_free(p);
	return (0);
}
