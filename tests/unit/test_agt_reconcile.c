/*
 * The hypervisor agent's reconcile: the decisions as a table (desired x
 * observed -> operations), then the whole role driven on libvirt's test
 * driver (test:///default, shared by every connection of this process)
 * with a fake image source and the frames it sends captured.
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <uv.h>

#include "opsn/frame.h"
#include "opsn/util.h"
#include "agent.h"
#include "domxml.h"
#include "imgcache.h"
#include "reconcile.h"

/* ---- the decision table ------------------------------------------------- */

#define ABSENT	{ 0, REC_POWER_STOPPED, 0, 0, 0 }
#define RUN(v, m, s)	{ 1, REC_POWER_RUNNING, v, m, s }
#define STOP(v, m, s)	{ 1, REC_POWER_STOPPED, v, m, s }
#define PARK		{ 1, REC_POWER_PARKED, 1, 128, 0 }

struct rec_case {
	const char		*name;
	struct rec_desired	 d;
	struct rec_observed	 o;
	const char		*want;
};

/* Observed: state, disk, vcpus, memory, reboot seq, shutdown sent, expired,
 * held. */
static const struct rec_case rec_cases[] = {
	{ "gone, nothing left", ABSENT,
	  { REC_ABSENT, 0, 0, 0, 0, 0, 0, 0 }, "none" },
	{ "gone, a disk left", ABSENT,
	  { REC_ABSENT, 1, 0, 0, 0, 0, 0, 0 }, "delete_disk" },
	{ "gone, defined", ABSENT,
	  { REC_SHUTOFF, 1, 1, 128, 0, 0, 0, 0 }, "undefine,delete_disk" },
	{ "gone, defined, disk not seen", ABSENT,
	  { REC_SHUTOFF, 0, 1, 128, 0, 0, 0, 0 }, "undefine,delete_disk" },
	{ "gone, running", ABSENT,
	  { REC_RUNNING, 1, 1, 128, 0, 0, 0, 0 },
	  "destroy,undefine,delete_disk" },
	{ "gone, paused", ABSENT,
	  { REC_PAUSED, 1, 1, 128, 0, 0, 0, 0 },
	  "destroy,undefine,delete_disk" },
	{ "gone, crashed", ABSENT,
	  { REC_CRASHED, 1, 1, 128, 0, 0, 0, 0 },
	  "destroy,undefine,delete_disk" },
	{ "new, running", RUN(1, 128, 0),
	  { REC_ABSENT, 0, 0, 0, 0, 0, 0, 0 }, "create_disk,define,start" },
	{ "new, running, disk already made", RUN(1, 128, 0),
	  { REC_ABSENT, 1, 0, 0, 0, 0, 0, 0 }, "define,start" },
	{ "new, stopped", STOP(1, 128, 0),
	  { REC_ABSENT, 0, 0, 0, 0, 0, 0, 0 }, "create_disk,define" },
	{ "start", RUN(1, 128, 0),
	  { REC_SHUTOFF, 1, 1, 128, 0, 0, 0, 0 }, "start" },
	{ "start with new vcpus", RUN(2, 128, 0),
	  { REC_SHUTOFF, 1, 1, 128, 0, 0, 0, 0 }, "set_vcpus_memory,start" },
	{ "start with new memory", RUN(1, 256, 0),
	  { REC_SHUTOFF, 1, 1, 128, 0, 0, 0, 0 }, "set_vcpus_memory,start" },
	{ "crashed lately: held", RUN(1, 128, 0),
	  { REC_SHUTOFF, 1, 1, 128, 0, 0, 0, 1 }, "none" },
	{ "crashed lately, resized: held", RUN(1, 256, 0),
	  { REC_SHUTOFF, 1, 1, 128, 0, 0, 0, 1 }, "set_vcpus_memory" },
	{ "stopped as wanted", STOP(1, 128, 0),
	  { REC_SHUTOFF, 1, 1, 128, 0, 0, 0, 0 }, "none" },
	{ "stopped, resized", STOP(4, 1024, 0),
	  { REC_SHUTOFF, 1, 1, 128, 0, 0, 0, 0 }, "set_vcpus_memory" },
	{ "stopped, reboot asked: the next start does it", STOP(1, 128, 5),
	  { REC_SHUTOFF, 1, 1, 128, 0, 0, 0, 0 }, "none" },
	{ "running as wanted", RUN(1, 128, 2),
	  { REC_RUNNING, 1, 1, 128, 2, 0, 0, 0 }, "none" },
	{ "running, resize waits for a stop", RUN(2, 512, 0),
	  { REC_RUNNING, 1, 1, 128, 0, 0, 0, 0 }, "none" },
	{ "reboot asked", RUN(1, 128, 3),
	  { REC_RUNNING, 1, 1, 128, 2, 0, 0, 0 }, "reboot" },
	{ "reboot already done", RUN(1, 128, 2),
	  { REC_RUNNING, 1, 1, 128, 3, 0, 0, 0 }, "none" },
	{ "stop", STOP(1, 128, 0),
	  { REC_RUNNING, 1, 1, 128, 0, 0, 0, 0 }, "shutdown" },
	{ "stop, shutdown asked", STOP(1, 128, 0),
	  { REC_RUNNING, 1, 1, 128, 0, 1, 0, 0 }, "none" },
	{ "stop, shutdown ignored too long", STOP(1, 128, 0),
	  { REC_RUNNING, 1, 1, 128, 0, 1, 1, 0 }, "destroy" },
	{ "paused, wanted running", RUN(1, 128, 0),
	  { REC_PAUSED, 1, 1, 128, 0, 0, 0, 0 }, "resume" },
	{ "paused, wanted stopped", STOP(1, 128, 0),
	  { REC_PAUSED, 1, 1, 128, 0, 0, 0, 0 }, "destroy" },
	{ "crashed, wanted running", RUN(1, 128, 0),
	  { REC_CRASHED, 1, 1, 128, 0, 0, 0, 0 }, "destroy,start" },
	{ "crashed, wanted running, held", RUN(1, 128, 0),
	  { REC_CRASHED, 1, 1, 128, 0, 0, 0, 1 }, "destroy" },
	{ "crashed, wanted stopped", STOP(1, 128, 0),
	  { REC_CRASHED, 1, 1, 128, 0, 0, 0, 0 }, "destroy" },
	{ "parked: the stopped domain goes, the disk stays", PARK,
	  { REC_SHUTOFF, 1, 1, 128, 0, 0, 0, 0 }, "undefine" },
	{ "parked, still running: never left so", PARK,
	  { REC_RUNNING, 1, 1, 128, 0, 0, 0, 0 }, "destroy,undefine" },
	{ "parked, crashed", PARK,
	  { REC_CRASHED, 1, 1, 128, 0, 0, 0, 0 }, "destroy,undefine" },
	{ "parked as wanted", PARK,
	  { REC_ABSENT, 1, 0, 0, 0, 0, 0, 0 }, "none" },
	{ "parked, no disk here: nothing is made", PARK,
	  { REC_ABSENT, 0, 0, 0, 0, 0, 0, 0 }, "none" },
};

static void
reconcile_decides_every_table_case(void **state)
{
	struct rec_action	 a;
	char			 got[128];
	size_t			 i;
	int			 bad = 0;

	for (i = 0; i < nitems(rec_cases); i++) {
		reconcile_decide(&rec_cases[i].d, &rec_cases[i].o, &a);
		reconcile_format(&a, got, sizeof(got));
		if (strcmp(got, rec_cases[i].want) != 0) {
			fprintf(stderr, "case '%s': got %s, want %s\n",
			    rec_cases[i].name, got, rec_cases[i].want);
			bad++;
		}
		assert_true(a.ra_n >= 1 && a.ra_n <= REC_MAX_OPS);
	}
	assert_int_equal(bad, 0);
}

/* ---- the role on the test driver ---------------------------------------- */

#define ID_A	"aaaaaaaa-0000-4000-8000-000000000001"
#define ID_B	"bbbbbbbb-0000-4000-8000-000000000002"
#define ID_C	"cccccccc-0000-4000-8000-000000000003"
#define ID_D	"dddddddd-0000-4000-8000-000000000004"
#define ID_E	"eeeeeeee-0000-4000-8000-000000000005"
#define NODE	"unit"

struct seen {
	char		 id[40];
	char		 state[16];
	char		 reason[24];
	char		 error[512];
	uint64_t	 gen;
	uint32_t	 vcpus;
	uint64_t	 memory;
	uint64_t	 seq;
	int64_t		 since;
	int		 held;
	char		 name[64];
};

static struct seen	 seen[16];
static size_t		 nseen;
static int		 nfull;
static uint64_t		 applied;
static uint64_t		 applied_epoch;

/* Console frames, for the one VM of the console test. */
static char		 con_data[65536];
static size_t		 con_len;
static uint64_t		 con_first_off;
static int		 con_resets, con_frames;
static uint64_t		 con_last_off;

static uv_loop_t	 loop;
static uv_timer_t	 pulse;
static struct agent	 ag;
static char		 tmp[64];
static char		*pool_dir, *f_disk, *f_kernel, *f_initrd;
static virConnectPtr	 vc;

static struct seen *
seen_get(const char *id)
{
	size_t	 i;

	for (i = 0; i < nseen; i++)
		if (strcmp(seen[i].id, id) == 0)
			return (&seen[i]);
	assert_true(nseen < nitems(seen));
	memset(&seen[nseen], 0, sizeof(seen[nseen]));
	strlcpy(seen[nseen].id, id, sizeof(seen[nseen].id));
	return (&seen[nseen++]);
}

static int
cap_send(uint16_t type, const ProtobufCMessage *m)
{
	const Opsn__ObservedState	*os;
	const Opsn__ConsoleData		*cd;
	const Opsn__VmStatus		*v;
	struct seen			*s;
	size_t				 i;

	if (type == MSG_OBSERVED_STATE) {
		os = (const Opsn__ObservedState *)m;
		for (i = 0; i < os->n_vms; i++) {
			v = os->vms[i];
			s = seen_get(v->id);
			strlcpy(s->state, v->state, sizeof(s->state));
			strlcpy(s->reason, v->reason, sizeof(s->reason));
			strlcpy(s->error, v->error, sizeof(s->error));
			s->gen = v->generation;
			s->vcpus = v->vcpus;
			s->memory = v->memory_mib;
			s->seq = v->reboot_seq;
			s->since = v->since;
			s->held = v->held;
			strlcpy(s->name, v->name, sizeof(s->name));
		}
		if (os->full)
			nfull++;
		applied = os->generation;
		applied_epoch = os->epoch;
	} else if (type == MSG_CONSOLE_DATA) {
		cd = (const Opsn__ConsoleData *)m;
		assert_true(cd->data.len <= 32 * 1024);
		if (cd->reset) {
			con_resets++;
			con_len = 0;
			con_first_off = cd->offset;
		} else
			assert_int_equal(cd->offset, con_last_off);
		if (con_len + cd->data.len < sizeof(con_data)) {
			memcpy(con_data + con_len, cd->data.data, cd->data.len);
			con_len += cd->data.len;
			con_data[con_len] = '\0';
		}
		con_last_off = cd->offset + cd->data.len;
		con_frames++;
	}
	return (0);
}

/* The fake image cache: answers on the loop, later, like the real one. */
struct fake_img {
	uv_timer_t	 t;
	void		(*done)(void *, const struct imgcache_result *);
	void		*arg;
	int		 ok, kernel;
};

static void
fake_img_closed_cb(uv_handle_t *h)
{
	free(h->data);
}

static void
fake_img_cb(uv_timer_t *t)
{
	struct fake_img		*fi = t->data;
	struct imgcache_result	 r;

	memset(&r, 0, sizeof(r));
	r.ir_ok = fi->ok;
	r.ir_error = fi->ok ? NULL : "image broken: disk: SHA-256 mismatch "
	    "(expected bad, got 1234)";
	r.ir_disk = f_disk;
	r.ir_kernel = fi->kernel ? f_kernel : NULL;
	r.ir_initrd = fi->kernel ? f_initrd : NULL;
	fi->done(fi->arg, &r);
	uv_close((uv_handle_t *)t, fake_img_closed_cb);
}

static void
fake_image(const Opsn__ImageRef *img, const char *url,
    void (*done)(void *, const struct imgcache_result *), void *arg)
{
	struct fake_img	*fi = xcalloc(1, sizeof(*fi));

	fi->done = done;
	fi->arg = arg;
	fi->ok = strcmp(img->disk_sha256, "bad") != 0;
	fi->kernel = *img->kernel_sha256 != '\0';
	uv_timer_init(&loop, &fi->t);
	fi->t.data = fi;
	uv_timer_start(&fi->t, fake_img_cb, 5, 0);
}

static void
pulse_cb(uv_timer_t *t)
{
}

typedef int (*cond_fn)(const void *);

static int
run_until(cond_fn cond, const void *arg, uint64_t ms)
{
	uint64_t	 end = util_mono_ms() + ms;

	while (!cond(arg) && util_mono_ms() < end)
		uv_run(&loop, UV_RUN_ONCE);
	return (cond(arg));
}

struct want {
	const char	*id;
	const char	*state;
};

static int
cond_state(const void *arg)
{
	const struct want	*w = arg;
	size_t			 i;

	for (; w->id != NULL; w++) {
		for (i = 0; i < nseen; i++)
			if (strcmp(seen[i].id, w->id) == 0)
				break;
		if (i == nseen || strcmp(seen[i].state, w->state) != 0)
			return (0);
	}
	return (1);
}

static int
cond_nfull(const void *arg)
{
	return (nfull >= *(const int *)arg);
}

static int
cond_never(const void *arg)
{
	return (0);
}

static void
wait_states(const struct want *w, uint64_t ms)
{
	size_t	 i;

	if (run_until(cond_state, w, ms))
		return;
	for (i = 0; i < nseen; i++)
		fprintf(stderr, "  %s: %s (%s) %s\n", seen[i].id, seen[i].state,
		    seen[i].reason, seen[i].error);
	for (; w->id != NULL; w++)
		fprintf(stderr, "  wanted %s: %s\n", w->id, w->state);
	fail_msg("the VMs did not reach their states");
}

static void
quiet(void *arg, virErrorPtr err)
{
}

static void
touch(const char *path, size_t size)
{
	char	*buf = xcalloc(1, size), *cause = NULL;

	if (util_write_file(path, buf, size, 0644, &cause) == -1)
		fail_msg("%s", cause);
	free(buf);
}

static void
env_start(void)
{
	char	*cause = NULL;

	nfull = 0;
	assert_int_equal(hv_role.init(&ag, &cause), 0);
}

/* Stop the role and run the loop until it is empty, as the agent exits. */
static void
env_stop(void)
{
	hv_role.stop();
	uv_timer_stop(&pulse);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_timer_start(&pulse, pulse_cb, 20, 20);
}

static int
env_setup(void **state)
{
	static const struct hv_hooks	 hooks = { fake_image, cap_send };

	strlcpy(tmp, "/tmp/opsn-hvtest-XXXXXX", sizeof(tmp));
	assert_non_null(mkdtemp(tmp));
	xasprintf(&pool_dir, "%s/pool", tmp);
	xasprintf(&f_disk, "%s/base.raw", tmp);
	xasprintf(&f_kernel, "%s/vmlinuz", tmp);
	xasprintf(&f_initrd, "%s/initrd", tmp);
	touch(f_disk, 1 << 20);
	touch(f_kernel, 100);
	touch(f_initrd, 100);
	assert_int_equal(uv_loop_init(&loop), 0);
	uv_timer_init(&loop, &pulse);
	uv_timer_start(&pulse, pulse_cb, 20, 20);
	memset(&ag, 0, sizeof(ag));
	ag.loop = &loop;
	ag.conf.name = NODE;
	ag.conf.libvirt_uri = "test:///default";
	ag.conf.virt_type = "auto";
	ag.conf.pool_dir = pool_dir;
	ag.conf.resync_ms = 60000;
	ag.conf.data_dir = tmp;
	hv_set_hooks(&hooks);
	virSetErrorFunc(NULL, quiet);
	vc = virConnectOpen("test:///default");
	assert_non_null(vc);
	return (0);
}

static int
env_teardown(void **state)
{
	char	*cmd;

	hv_set_hooks(NULL);
	virConnectClose(vc);
	uv_close((uv_handle_t *)&pulse, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	xasprintf(&cmd, "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
	free(cmd);
	free(pool_dir);
	free(f_disk);
	free(f_kernel);
	free(f_initrd);
	return (0);
}

struct spec {
	const char	*id;
	const char	*power;
	uint32_t	 vcpus;
	uint64_t	 memory;
	uint64_t	 seq;
	const char	*disk_sha;	/* "bad": the fake cache refuses it */
	int		 kernel;
	int		 adopt;		/* a restored controller's VM */
};

/* Pack a desired state of an epoch and hand it to the role. */
static void
send_desired_epoch(uint64_t epoch, uint64_t gen, const struct spec *specs,
    size_t n, const char *release)
{
	Opsn__DesiredState	 ds = OPSN__DESIRED_STATE__INIT;
	Opsn__VmSpec		 vm[8], *vms[8];
	Opsn__ImageRef		 img[8];
	Opsn__Nic		 nic[2] = { OPSN__NIC__INIT, OPSN__NIC__INIT };
	Opsn__Nic		*nics[2] = { &nic[0], &nic[1] };
	uint8_t			*buf;
	size_t			 len, i;

	assert_true(n <= 8);
	nic[0].bridge = "br0";
	nic[0].mac = "52:54:00:00:00:01";
	nic[1].bridge = "br1";
	nic[1].mac = "";
	for (i = 0; i < n; i++) {
		opsn__image_ref__init(&img[i]);
		img[i].name = specs[i].kernel ? "tiny" : "plain";
		img[i].format = "raw";
		img[i].disk_sha256 = (char *)specs[i].disk_sha;
		img[i].kernel_sha256 = specs[i].kernel ? "k" : "";
		img[i].initrd_sha256 = specs[i].kernel ? "i" : "";
		img[i].cmdline = "console=ttyS0";
		opsn__vm_spec__init(&vm[i]);
		vm[i].id = (char *)specs[i].id;
		vm[i].name = "vm";
		vm[i].tenant = "t";
		vm[i].vcpus = specs[i].vcpus;
		vm[i].memory_mib = specs[i].memory;
		vm[i].disk_bytes = 4 << 20;
		vm[i].image = &img[i];
		vm[i].nics = specs[i].kernel ? nics : NULL;
		vm[i].n_nics = specs[i].kernel ? 2 : 0;
		vm[i].power = (char *)specs[i].power;
		vm[i].reboot_seq = specs[i].seq;
		vm[i].adopt_only = specs[i].adopt;
		vms[i] = &vm[i];
	}
	ds.epoch = epoch;
	if (release != NULL) {
		ds.release = (char **)&release;
		ds.n_release = 1;
	}
	ds.generation = gen;
	ds.vms = vms;
	ds.n_vms = n;
	ds.image_url = "https://controller.invalid/v1/images";
	len = opsn__desired_state__get_packed_size(&ds);
	buf = xmalloc(len + 1);
	opsn__desired_state__pack(&ds, buf);
	hv_role.on_frame(MSG_DESIRED_STATE, buf, len);
	free(buf);
}

/* A desired state of the first epoch (a controller never restored). */
static void
send_desired(uint64_t gen, const struct spec *specs, size_t n)
{
	send_desired_epoch(0, gen, specs, n, NULL);
}

static int
dom_exists(const char *id)
{
	virDomainPtr	 d = virDomainLookupByUUIDString(vc, id);

	if (d == NULL)
		return (0);
	virDomainFree(d);
	return (1);
}

static unsigned
dom_id(const char *id)
{
	virDomainPtr	 d = virDomainLookupByUUIDString(vc, id);
	unsigned	 n;

	assert_non_null(d);
	n = virDomainGetID(d);
	virDomainFree(d);
	return (n);
}

static char *
dom_node(const char *id)
{
	virDomainPtr		 d = virDomainLookupByUUIDString(vc, id);
	struct domxml_meta	 m;
	char			*xml, *cause = NULL, *node;

	assert_non_null(d);
	xml = virDomainGetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT, DOMXML_NS,
	    0);
	virDomainFree(d);
	if (xml == NULL)
		return (NULL);
	assert_int_equal(domxml_meta_parse(xml, &m, &cause), 0);
	node = xstrdup(m.dm_node);
	domxml_meta_free(&m);
	free(xml);
	return (node);
}

static int
vol_exists(const char *id)
{
	virStoragePoolPtr	 p = virStoragePoolLookupByName(vc, "opsn-" NODE);
	virStorageVolPtr	 v;
	char			*name;

	assert_non_null(p);
	xasprintf(&name, "%s.qcow2", id);
	v = virStorageVolLookupByName(p, name);
	free(name);
	virStoragePoolFree(p);
	if (v == NULL)
		return (0);
	virStorageVolFree(v);
	return (1);
}

/* Domains that are not ours: one without metadata, one of another node. */
static void
define_strangers(void)
{
	const char	*hand = "<domain type='test'><name>unit-handmade</name>"
	    "<memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type>"
	    "</os></domain>";
	Opsn__ImageRef	 img = OPSN__IMAGE_REF__INIT;
	Opsn__VmSpec	 vm = OPSN__VM_SPEC__INIT;
	struct domxml_ctx ctx;
	virDomainPtr	 d;
	char		*xml;

	d = virDomainDefineXML(vc, hand);
	assert_non_null(d);
	assert_int_equal(virDomainCreate(d), 0);
	virDomainFree(d);
	img.format = "raw";
	vm.id = ID_D;
	vm.name = "theirs";
	vm.vcpus = 1;
	vm.memory_mib = 64;
	vm.image = &img;
	memset(&ctx, 0, sizeof(ctx));
	ctx.dx_node = "someone-else";
	ctx.dx_type = "qemu";
	ctx.dx_disk = "/nowhere/d.qcow2";
	ctx.dx_console_log = "/nowhere/d.log";
	xml = domxml_build(&vm, &ctx);
	d = virDomainDefineXML(vc, xml);
	assert_non_null(d);
	virDomainFree(d);
	free(xml);
}

static void
hv_reconciles_on_the_test_driver(void **state)
{
	const struct spec	 gen1[] = {
		{ ID_A, "running", 2, 128, 0, "good", 1 },
		{ ID_B, "stopped", 1, 128, 0, "good", 0 },
		{ ID_C, "running", 1, 128, 0, "bad", 1 },
		{ ID_D, "running", 1, 128, 0, "good", 0 },
	};
	const struct spec	 gen2[] = {
		{ ID_A, "stopped", 2, 128, 0, "good", 1 },
		{ ID_B, "stopped", 3, 256, 0, "good", 0 },
		{ ID_C, "running", 1, 128, 0, "bad", 1 },
	};
	const struct spec	 gen3[] = {
		{ ID_A, "running", 2, 128, 0, "good", 1 },
		{ ID_B, "running", 3, 256, 0, "good", 0 },
	};
	const struct spec	 gen4[] = {
		{ ID_A, "running", 2, 128, 0, "good", 1 },
		{ ID_B, "running", 3, 256, 1, "good", 0 },
	};
	const struct want	 w1[] = { { ID_A, "running" },
	    { ID_B, "shutoff" }, { ID_C, "error" }, { ID_D, "error" },
	    { NULL, NULL } };
	const struct want	 w2[] = { { ID_A, "shutoff" },
	    { ID_B, "shutoff" }, { ID_D, "deleted" }, { NULL, NULL } };
	const struct want	 w3[] = { { ID_A, "running" },
	    { ID_B, "running" }, { ID_C, "deleted" }, { NULL, NULL } };
	const struct want	 wdown[] = { { ID_B, "shutoff" },
	    { NULL, NULL } };
	const struct want	 wup[] = { { ID_B, "running" },
	    { NULL, NULL } };
	const struct want	 wgone[] = { { ID_A, "deleted" },
	    { ID_B, "deleted" }, { NULL, NULL } };
	unsigned		 id_a, id_b;
	int			 one = 1;
	char			*node, *log;
	struct seen		*s;

	define_strangers();
	env_start();
	assert_true(run_until(cond_nfull, &one, 5000));

	/* Generation 1: create, define stopped, a bad image, a stranger. */
	send_desired(1, gen1, nitems(gen1));
	wait_states(w1, 5000);
	assert_non_null(strstr(seen_get(ID_C)->error, "SHA-256 mismatch"));
	assert_false(dom_exists(ID_C));
	assert_false(vol_exists(ID_C));
	assert_non_null(strstr(seen_get(ID_D)->error, "not managed by node"));
	node = dom_node(ID_D);
	assert_string_equal(node, "someone-else");
	free(node);
	node = dom_node(ID_A);
	assert_string_equal(node, NODE);
	free(node);
	assert_true(vol_exists(ID_A));
	assert_true(vol_exists(ID_B));
	s = seen_get(ID_A);
	assert_int_equal(s->vcpus, 2);
	assert_int_equal(s->memory, 128);
	assert_string_equal(s->reason, "booted");
	/* The generation may follow the state in a later report. */
	run_until(cond_never, NULL, 100);
	assert_int_equal(seen_get(ID_A)->gen, 1);
	assert_int_equal(applied, 1);

	/* Generation 2: stop A, resize B while stopped, D is no longer ours. */
	send_desired(2, gen2, nitems(gen2));
	wait_states(w2, 5000);
	run_until(cond_never, NULL, 200);
	s = seen_get(ID_B);
	assert_int_equal(s->vcpus, 3);
	assert_int_equal(s->memory, 256);
	assert_string_equal(seen_get(ID_A)->reason, "shutdown");
	assert_true(dom_exists(ID_D));	/* theirs, untouched */

	/* Generation 3: start both; C is no longer wanted. */
	send_desired(3, gen3, nitems(gen3));
	wait_states(w3, 5000);

	/* Generation 4: reboot B once. */
	send_desired(4, gen4, nitems(gen4));
	run_until(cond_never, NULL, 300);
	assert_int_equal(seen_get(ID_B)->seq, 1);
	assert_string_equal(seen_get(ID_B)->state, "running");

	/* An older generation changes nothing. */
	send_desired(2, gen2, nitems(gen2));
	run_until(cond_never, NULL, 300);
	assert_string_equal(seen_get(ID_A)->state, "running");
	assert_int_equal(applied, 4);

	/* Stopped behind our back: reported at once, restarted after a hold. */
	{
		virDomainPtr d = virDomainLookupByUUIDString(vc, ID_B);

		assert_int_equal(virDomainDestroy(d), 0);
		virDomainFree(d);
	}
	wait_states(wdown, 2000);
	assert_string_equal(seen_get(ID_B)->reason, "destroyed");
	wait_states(wup, 10000);

	/* A restarted agent adopts its running domains and restarts none. */
	id_a = dom_id(ID_A);
	id_b = dom_id(ID_B);
	env_stop();
	nseen = 0;
	env_start();
	assert_true(run_until(cond_nfull, &one, 5000));
	assert_string_equal(seen_get(ID_A)->state, "running");
	assert_string_equal(seen_get(ID_B)->state, "running");
	assert_int_equal(seen_get(ID_B)->seq, 1);
	/*
	 * Nor does it act on a generation older than the newest it saw
	 * before the restart (generation 2 would stop A).
	 */
	send_desired(2, gen2, nitems(gen2));
	run_until(cond_never, NULL, 300);
	assert_string_equal(seen_get(ID_A)->state, "running");
	assert_int_equal(dom_id(ID_A), id_a);
	send_desired(4, gen4, nitems(gen4));
	run_until(cond_never, NULL, 300);
	assert_int_equal(dom_id(ID_A), id_a);
	assert_int_equal(dom_id(ID_B), id_b);

	/* Generation 5: nothing wanted; only our domains go. */
	xasprintf(&log, "%s/console/%s.log", pool_dir, ID_A);
	touch(log, 10);
	send_desired(5, NULL, 0);
	wait_states(wgone, 5000);
	assert_false(dom_exists(ID_A));
	assert_false(dom_exists(ID_B));
	assert_false(vol_exists(ID_A));
	assert_false(vol_exists(ID_B));
	assert_int_equal(access(log, F_OK), -1);
	free(log);
	assert_true(dom_exists(ID_D));
	{
		virDomainPtr d = virDomainLookupByName(vc, "unit-handmade");

		assert_non_null(d);
		assert_int_equal(virDomainIsActive(d), 1);
		virDomainDestroy(d);
		virDomainUndefine(d);
		virDomainFree(d);
		d = virDomainLookupByUUIDString(vc, ID_D);
		virDomainUndefine(d);
		virDomainFree(d);
	}
	env_stop();
}

/*
 * A controller restored from a backup (a new epoch, lower generations):
 * its state is applied; a VM it does not know is held and reported, never
 * deleted, across an agent restart; one it knows but the node lacks is
 * not created; an older epoch is refused; a release lets a held VM go.
 */
static void
hv_epoch_holds_what_a_restored_controller_does_not_know(void **state)
{
	const struct spec	 before[] = {
		{ ID_A, "running", 1, 128, 0, "good", 0, 0 },
		{ ID_B, "running", 1, 128, 0, "good", 0, 0 },
	};
	/* The backup knew A (then stopped) and E, not B (made after it). */
	const struct spec	 restored[] = {
		{ ID_A, "stopped", 2, 256, 0, "good", 0, 1 },
		{ ID_E, "running", 1, 128, 0, "good", 0, 1 },
	};
	/* Once it learnt A as the node has it. */
	const struct spec	 adopted[] = {
		{ ID_A, "running", 1, 128, 0, "good", 0, 0 },
	};
	const struct want	 w1[] = { { ID_A, "running" },
	    { ID_B, "running" }, { NULL, NULL } };
	const struct want	 w2[] = { { ID_A, "running" },
	    { ID_B, "running" }, { ID_E, "absent" }, { NULL, NULL } };
	const struct want	 wgone[] = { { ID_B, "deleted" },
	    { NULL, NULL } };
	unsigned		 id_a, id_b;
	int			 one = 1;
	char			*path;

	nseen = 0;
	env_start();
	assert_true(run_until(cond_nfull, &one, 5000));
	send_desired(9, before, nitems(before));
	wait_states(w1, 5000);
	id_a = dom_id(ID_A);
	id_b = dom_id(ID_B);

	/* Epoch 5, generation 2: applied although 2 < 9. */
	send_desired_epoch(5, 2, restored, nitems(restored), NULL);
	wait_states(w2, 5000);
	run_until(cond_never, NULL, 300);
	assert_int_equal(applied, 2);
	assert_int_equal(applied_epoch, 5);
	assert_true(seen_get(ID_B)->held);
	assert_string_equal(seen_get(ID_B)->name, "vm");
	assert_false(seen_get(ID_A)->held);
	/* Nothing restarted, resized, created or deleted. */
	assert_int_equal(dom_id(ID_A), id_a);
	assert_int_equal(dom_id(ID_B), id_b);
	assert_int_equal(seen_get(ID_A)->vcpus, 1);
	assert_false(dom_exists(ID_E));
	assert_false(vol_exists(ID_E));

	/* Still held after the agent restarts; E is still not made. */
	env_stop();
	nseen = 0;
	env_start();
	assert_true(run_until(cond_nfull, &one, 5000));
	/*
	 * The generation floor is kept per epoch across the restart: an
	 * older generation of epoch 5 is refused (A is not deleted).
	 */
	send_desired_epoch(5, 1, NULL, 0, NULL);
	run_until(cond_never, NULL, 300);
	assert_true(dom_exists(ID_A));
	send_desired_epoch(5, 3, adopted, nitems(adopted), NULL);
	run_until(cond_never, NULL, 300);
	assert_string_equal(seen_get(ID_B)->state, "running");
	assert_true(seen_get(ID_B)->held);
	assert_int_equal(dom_id(ID_B), id_b);
	assert_int_equal(dom_id(ID_A), id_a);
	assert_int_equal(applied, 3);

	/* An older epoch is refused, whatever its generation. */
	send_desired_epoch(4, 99, NULL, 0, NULL);
	run_until(cond_never, NULL, 300);
	assert_true(dom_exists(ID_A));
	assert_int_equal(applied_epoch, 5);

	/* The operator lets B go. */
	send_desired_epoch(5, 4, adopted, nitems(adopted), ID_B);
	wait_states(wgone, 5000);
	assert_false(dom_exists(ID_B));
	assert_false(vol_exists(ID_B));
	assert_int_equal(dom_id(ID_A), id_a);

	/* Clean up for the next test. */
	send_desired_epoch(5, 5, NULL, 0, NULL);
	run_until(cond_never, NULL, 300);
	assert_false(dom_exists(ID_A));
	env_stop();
	xasprintf(&path, "%s/hv-state", tmp);
	assert_int_equal(unlink(path), 0);
	free(path);
}

static int
cond_console(const void *arg)
{
	return (strstr(con_data, (const char *)arg) != NULL);
}

static void
append(const char *path, const char *text)
{
	FILE	*f = fopen(path, "a");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
hv_console_follows_the_log(void **state)
{
	const struct spec	 gen1[] = {
		{ ID_E, "stopped", 1, 64, 0, "good", 0 },
	};
	const struct want	 w1[] = { { ID_E, "shutoff" }, { NULL, NULL } };
	char			*log, *old, *gen, big[20000];
	int			 one = 1;

	xasprintf(&log, "%s/console/%s.log", pool_dir, ID_E);
	xasprintf(&old, "%s.0", log);
	/* A node of its own: forget the generations the last test saw. */
	xasprintf(&gen, "%s/hv-generation", tmp);
	unlink(gen);
	free(gen);
	env_start();
	assert_true(run_until(cond_nfull, &one, 5000));
	send_desired(1, gen1, nitems(gen1));
	wait_states(w1, 5000);

	/* A log found late is followed from (at most 16 KiB before) its end. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	append(log, big);
	append(log, "\nOPSN-GUEST-READY vm\n");
	assert_true(run_until(cond_console, "OPSN-GUEST-READY vm", 3000));
	assert_int_equal(con_resets, 1);
	assert_true(con_first_off > 0);
	assert_true(con_len <= 16 * 1024);

	/* New bytes follow at the next offset. */
	append(log, "second line\n");
	assert_true(run_until(cond_console, "second line", 3000));
	assert_int_equal(con_resets, 1);

	/* virtlogd rotates: the tail of the old file, then the new one. */
	append(log, "last old line\n");
	assert_int_equal(rename(log, old), 0);
	append(log, "first new line\n");
	assert_true(run_until(cond_console, "first new line", 3000));
	assert_int_equal(con_resets, 2);
	assert_int_equal(con_first_off, 0);

	/* After a reconnection: the tail again, as a new stream. */
	hv_role.on_connected();
	assert_int_equal(con_resets, 3);
	assert_non_null(strstr(con_data, "first new line"));

	send_desired(2, NULL, 0);
	run_until(cond_never, NULL, 300);
	assert_false(dom_exists(ID_E));
	assert_int_equal(access(log, F_OK), -1);
	assert_int_equal(access(old, F_OK), -1);
	free(log);
	free(old);
	env_stop();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reconcile_decides_every_table_case),
		cmocka_unit_test(hv_reconciles_on_the_test_driver),
		cmocka_unit_test(
		    hv_epoch_holds_what_a_restored_controller_does_not_know),
		cmocka_unit_test(hv_console_follows_the_log),
	};

	return (cmocka_run_group_tests(tests, env_setup, env_teardown));
}
