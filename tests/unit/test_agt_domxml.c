/*
 * The hypervisor agent's libvirt XML: domains compared with golden files
 * in tests/unit/golden/ (OPSN_REGEN_GOLDEN=1 rewrites them, as libvirt's
 * own tests do), and defined on libvirt's test driver to prove libvirt
 * takes them and gives our metadata back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "opsn/util.h"
#include "domxml.h"

#define ID1	"6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f001122"
#define ID2	"0a0b0c0d-1111-4222-8333-444455556666"
#define ID3	"fedcba98-7654-4321-8fed-cba987654321"

struct fixture {
	Opsn__ImageRef	 img;
	Opsn__Nic	 nic[2];
	Opsn__Nic	*nics[2];
	Opsn__VmSpec	 vm;
	struct domxml_ctx ctx;
};

static void
fx_kernel_2nics(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	opsn__image_ref__init(&f->img);
	f->img.name = "tiny";
	f->img.format = "qcow2";
	f->img.disk_sha256 = "d1sk";
	f->img.kernel_sha256 = "k3rnel";
	f->img.initrd_sha256 = "1n1trd";
	f->img.cmdline = "console=ttyS0 panic=-1 quiet";
	opsn__nic__init(&f->nic[0]);
	opsn__nic__init(&f->nic[1]);
	f->nic[0].bridge = "br0";
	f->nic[0].mac = "52:54:00:12:34:56";
	f->nic[1].bridge = "opsn-lan.7";
	f->nic[1].mac = "52:54:00:ab:cd:ef";
	f->nics[0] = &f->nic[0];
	f->nics[1] = &f->nic[1];
	opsn__vm_spec__init(&f->vm);
	f->vm.id = ID1;
	f->vm.name = "web-1";
	f->vm.tenant = "commune-42";
	f->vm.vcpus = 2;
	f->vm.memory_mib = 512;
	f->vm.disk_bytes = 10737418240ULL;
	f->vm.image = &f->img;
	f->vm.nics = f->nics;
	f->vm.n_nics = 2;
	f->vm.power = "running";
	f->vm.reboot_seq = 3;
	f->ctx.dx_node = "hv1";
	f->ctx.dx_generation = 7;
	f->ctx.dx_reboot_seq = 3;
	f->ctx.dx_type = "qemu";
	f->ctx.dx_disk = "/var/lib/libvirt/images/opsn-hv1/" ID1 ".qcow2";
	f->ctx.dx_kernel = "/var/lib/libvirt/images/opsn-hv1/cache/k3rnel";
	f->ctx.dx_initrd = "/var/lib/libvirt/images/opsn-hv1/cache/1n1trd";
	f->ctx.dx_console_log = "/var/lib/libvirt/images/opsn-hv1/console/"
	    ID1 ".log";
	f->ctx.dx_dac_label = "+64055:+64055";
}

static void
fx_disk_nonic(struct fixture *f)
{
	fx_kernel_2nics(f);
	f->img.kernel_sha256 = "";
	f->img.initrd_sha256 = "";
	f->img.cmdline = "";
	f->img.format = "raw";
	f->vm.id = ID2;
	f->vm.name = "db";
	f->vm.tenant = "";
	f->vm.vcpus = 1;
	f->vm.memory_mib = 128;
	f->vm.n_nics = 0;
	f->vm.nics = NULL;
	f->vm.power = "stopped";
	f->vm.reboot_seq = 0;
	f->ctx.dx_generation = 1;
	f->ctx.dx_reboot_seq = 0;
	f->ctx.dx_type = "kvm";
	f->ctx.dx_disk = "/srv/pool/" ID2 ".qcow2";
	f->ctx.dx_backing = "/srv/pool/cache/d1sk";
	f->ctx.dx_backing_format = "raw";
	f->ctx.dx_kernel = NULL;
	f->ctx.dx_initrd = NULL;
	f->ctx.dx_console_log = "/srv/pool/console/" ID2 ".log";
	f->ctx.dx_dac_label = NULL;
}

static void
fx_escaping(struct fixture *f)
{
	fx_kernel_2nics(f);
	f->vm.id = ID3;
	f->vm.name = "a&b <c> \"d\" 'e'";
	f->vm.tenant = "Saint-Martin & Co <SIVU>";
	f->vm.n_nics = 1;
	f->img.cmdline = "console=ttyS0 x=<1>&y";
	f->ctx.dx_node = "node\"&'";
	f->ctx.dx_disk = "/srv/a&b/" ID3 ".qcow2";
	f->ctx.dx_kernel = "/srv/a&b/cache/k'ernel";
	f->ctx.dx_initrd = NULL;
	f->ctx.dx_console_log = "/srv/a&b/console/" ID3 ".log";
}

static char *
golden_path(const char *name)
{
	const char	*src = __FILE__, *slash = strrchr(src, '/');
	char		*p;

	xasprintf(&p, "%.*sgolden/%s", slash ? (int)(slash - src + 1) : 0, src,
	    name);
	return (p);
}

static void
golden_check(const char *name, const char *got)
{
	char	*path = golden_path(name), *want = NULL, *cause = NULL;
	size_t	 len;
	const char *regen = getenv("OPSN_REGEN_GOLDEN");

	if (regen != NULL && strcmp(regen, "1") == 0) {
		if (util_write_file(path, got, strlen(got), 0644, &cause) == -1)
			fail_msg("%s", cause);
		free(path);
		return;
	}
	if (util_read_file(path, 1 << 20, &want, &len, &cause) == -1)
		fail_msg("%s (OPSN_REGEN_GOLDEN=1 writes it)", cause);
	if (strcmp(want, got) != 0) {
		fprintf(stderr, "--- %s\n%s--- built\n%s", path, want, got);
		fail_msg("%s differs from the built XML", name);
	}
	free(want);
	free(path);
}

static void
domxml_golden_kernel_boot_two_nics(void **state)
{
	struct fixture	 f;
	char		*xml, *cause = NULL;

	fx_kernel_2nics(&f);
	assert_int_equal(domxml_check(&f.vm, &cause), 0);
	xml = domxml_build(&f.vm, &f.ctx);
	golden_check("domain-kernel-2nics.xml", xml);
	/* The agent's own facts, said again so a regenerated file is read. */
	assert_non_null(strstr(xml, "<target dev='op6f1c2a3b-0'/>"));
	assert_non_null(strstr(xml, "<target dev='op6f1c2a3b-1'/>"));
	assert_non_null(strstr(xml, "quiet opsn.name=web-1</cmdline>"));
	assert_non_null(strstr(xml, "relabel='no'"));
	assert_null(strstr(xml, "<backingStore"));
	free(xml);
}

static void
domxml_golden_disk_boot_no_nic(void **state)
{
	struct fixture	 f;
	char		*xml, *cause = NULL;

	fx_disk_nonic(&f);
	assert_int_equal(domxml_check(&f.vm, &cause), 0);
	xml = domxml_build(&f.vm, &f.ctx);
	golden_check("domain-disk-nonic.xml", xml);
	assert_non_null(strstr(xml, "<boot dev='hd'/>"));
	assert_null(strstr(xml, "<kernel>"));
	assert_null(strstr(xml, "<interface"));
	assert_non_null(strstr(xml, "<format type='raw'/>"));
	free(xml);
}

static void
domxml_golden_escapes_every_string(void **state)
{
	struct fixture	 f;
	char		*xml, *cause = NULL;

	fx_escaping(&f);
	assert_int_equal(domxml_check(&f.vm, &cause), 0);
	xml = domxml_build(&f.vm, &f.ctx);
	golden_check("domain-escaping.xml", xml);
	assert_null(strstr(xml, "a&b"));
	assert_null(strstr(xml, "<c>"));
	assert_non_null(strstr(xml, "opsn.name=&quot;a&amp;b &lt;c&gt; _d_ "
	    "&apos;e&apos;&quot;"));
	free(xml);
}

static void
domxml_check_refuses_bad_specs(void **state)
{
	struct fixture	 f;
	char		*cause = NULL;
	Opsn__Nic	 bad;

	fx_kernel_2nics(&f);
	f.vm.id = "6F1C2A3B-0D4E-4F5A-8B6C-7D8E9F001122";
	assert_int_equal(domxml_check(&f.vm, &cause), -1);
	assert_non_null(strstr(cause, "UUID"));
	free(cause);

	fx_kernel_2nics(&f);
	f.vm.vcpus = 0;
	assert_int_equal(domxml_check(&f.vm, &cause), -1);
	free(cause);

	fx_kernel_2nics(&f);
	f.vm.power = "paused";
	assert_int_equal(domxml_check(&f.vm, &cause), -1);
	free(cause);

	fx_kernel_2nics(&f);
	f.img.format = "vmdk";
	assert_int_equal(domxml_check(&f.vm, &cause), -1);
	free(cause);

	fx_kernel_2nics(&f);
	f.img.kernel_sha256 = "";
	assert_int_equal(domxml_check(&f.vm, &cause), -1);
	assert_non_null(strstr(cause, "initrd"));
	free(cause);

	fx_kernel_2nics(&f);
	bad = f.nic[0];
	bad.bridge = "br0'/><x";
	f.nics[0] = &bad;
	assert_int_equal(domxml_check(&f.vm, &cause), -1);
	assert_non_null(strstr(cause, "bridge"));
	free(cause);

	fx_kernel_2nics(&f);
	bad = f.nic[0];
	bad.mac = "53:54:00:12:34:56";	/* multicast */
	f.nics[0] = &bad;
	assert_int_equal(domxml_check(&f.vm, &cause), -1);
	assert_non_null(strstr(cause, "MAC"));
	free(cause);
}

static void
domxml_tap_names_fit_ifnamsiz(void **state)
{
	char	 tap[DOMXML_TAP_MAX];

	domxml_tap_name(ID1, 0, tap, sizeof(tap));
	assert_string_equal(tap, "op6f1c2a3b-0");
	domxml_tap_name(ID1, 9999, tap, sizeof(tap));
	assert_string_equal(tap, "op6f1c2a3b-9999");
	assert_true(strlen(tap) <= 15);
}

static void
domxml_meta_parses_what_libvirt_returns(void **state)
{
	/* As virDomainGetMetadata gives it: no prefix, empty elements. */
	const char	*xml = "<vm>\n  <id>" ID1 "</id>\n  <node>hv1</node>\n"
	    "  <tenant/>\n  <name>a &amp; b &#60;x&#x3e;</name>\n"
	    "  <generation>12</generation>\n  <reboot-seq>4</reboot-seq>\n"
	    "</vm>";
	struct domxml_meta	 m;
	char			*cause = NULL;

	assert_int_equal(domxml_meta_parse(xml, &m, &cause), 0);
	assert_string_equal(m.dm_id, ID1);
	assert_string_equal(m.dm_node, "hv1");
	assert_string_equal(m.dm_tenant, "");
	assert_string_equal(m.dm_name, "a & b <x>");
	assert_int_equal(m.dm_generation, 12);
	assert_int_equal(m.dm_reboot_seq, 4);
	domxml_meta_free(&m);

	assert_int_equal(domxml_meta_parse("<vm><id>x</id></vm>", &m, &cause),
	    -1);
	free(cause);
	assert_int_equal(domxml_meta_parse("<vm><id>x</id><node>n</node>"
	    "<generation>-1</generation></vm>", &m, &cause), -1);
	free(cause);
}

static void
domxml_caps_find_kvm_and_the_dac_label(void **state)
{
	const char	*with = "<capabilities><host><secmodel><model>none"
	    "</model><doi>0</doi></secmodel><secmodel><model>dac</model>"
	    "<doi>0</doi><baselabel type='kvm'>+64055:+64055</baselabel>"
	    "<baselabel type='qemu'>+64055:+64056</baselabel></secmodel>"
	    "</host><guest><os_type>hvm</os_type><arch name='i686'>"
	    "<domain type='kvm'/></arch></guest><guest><os_type>hvm</os_type>"
	    "<arch name='x86_64'><wordsize>64</wordsize><domain type='qemu'/>"
	    "<domain type='kvm'/></arch></guest></capabilities>";
	const char	*without = "<capabilities><host></host><guest><arch "
	    "name='i686'><domain type='kvm'/></arch></guest><guest><arch "
	    "name='x86_64'><domain type='qemu'/></arch></guest>"
	    "</capabilities>";
	char		*label;
	unsigned long	 uid, gid;

	assert_true(domxml_caps_has_kvm(with));
	assert_false(domxml_caps_has_kvm(without));
	label = domxml_caps_dac_label(with);
	assert_string_equal(label, "+64055:+64056");
	assert_int_equal(domxml_label_ids(label, &uid, &gid), 0);
	assert_int_equal(uid, 64055);
	assert_int_equal(gid, 64056);
	free(label);
	assert_null(domxml_caps_dac_label(without));
	assert_int_equal(domxml_label_ids("root:root", &uid, &gid), -1);
}

static void
domxml_volume_names_its_backing_format(void **state)
{
	char	*xml;

	xml = domxml_volume(ID1 ".qcow2", 1 << 30, "/c/abc", "raw",
	    "+64055:+64055");
	assert_non_null(strstr(xml, "<capacity unit='bytes'>1073741824<"));
	assert_non_null(strstr(xml, "<backingStore>\n    <path>/c/abc</path>\n"
	    "    <format type='raw'/>"));
	assert_non_null(strstr(xml, "<owner>64055</owner>"));
	free(xml);
	xml = domxml_volume(ID1 ".qcow2", 1 << 30, "/c/abc", "qcow2", NULL);
	assert_null(strstr(xml, "<owner>"));
	free(xml);
	xml = domxml_pool("opsn-hv1", "/srv/p");
	assert_non_null(strstr(xml, "<mode>0755</mode>"));
	free(xml);
}

static void
quiet(void *arg, virErrorPtr err)
{
}

/* libvirt itself takes each golden domain and gives our metadata back. */
static void
domxml_defines_on_the_test_driver(void **state)
{
	void			(*fx[])(struct fixture *) = { fx_kernel_2nics,
				    fx_disk_nonic, fx_escaping };
	struct fixture		 f;
	struct domxml_meta	 m;
	virConnectPtr		 c;
	virDomainPtr		 dom;
	char			*xml, *meta, *cause = NULL;
	size_t			 i;

	virSetErrorFunc(NULL, quiet);
	c = virConnectOpen("test:///default");
	assert_non_null(c);
	for (i = 0; i < nitems(fx); i++) {
		fx[i](&f);
		/* The test driver only knows "test" and "qemu" domains. */
		f.ctx.dx_type = "qemu";
		xml = domxml_build(&f.vm, &f.ctx);
		dom = virDomainDefineXML(c, xml);
		if (dom == NULL)
			fail_msg("case %zu: %s", i, virGetLastErrorMessage());
		meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
		    DOMXML_NS, 0);
		assert_non_null(meta);
		assert_int_equal(domxml_meta_parse(meta, &m, &cause), 0);
		assert_string_equal(m.dm_id, f.vm.id);
		assert_string_equal(m.dm_node, f.ctx.dx_node);
		assert_string_equal(m.dm_name, f.vm.name);
		assert_string_equal(m.dm_tenant, f.vm.tenant);
		assert_int_equal(m.dm_generation, f.ctx.dx_generation);
		assert_int_equal(m.dm_reboot_seq, f.ctx.dx_reboot_seq);
		domxml_meta_free(&m);
		free(meta);

		/* SetMetadata takes the unprefixed element and replaces it. */
		f.ctx.dx_reboot_seq = 99;
		meta = domxml_metadata(&f.vm, &f.ctx);
		assert_int_equal(virDomainSetMetadata(dom,
		    VIR_DOMAIN_METADATA_ELEMENT, meta, DOMXML_NS_PREFIX,
		    DOMXML_NS, VIR_DOMAIN_AFFECT_CONFIG), 0);
		free(meta);
		meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
		    DOMXML_NS, 0);
		assert_int_equal(domxml_meta_parse(meta, &m, &cause), 0);
		assert_int_equal(m.dm_reboot_seq, 99);
		assert_string_equal(m.dm_name, f.vm.name);
		domxml_meta_free(&m);
		free(meta);

		assert_int_equal(virDomainUndefine(dom), 0);
		virDomainFree(dom);
		free(xml);
	}
	virConnectClose(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(domxml_golden_kernel_boot_two_nics),
		cmocka_unit_test(domxml_golden_disk_boot_no_nic),
		cmocka_unit_test(domxml_golden_escapes_every_string),
		cmocka_unit_test(domxml_check_refuses_bad_specs),
		cmocka_unit_test(domxml_tap_names_fit_ifnamsiz),
		cmocka_unit_test(domxml_meta_parses_what_libvirt_returns),
		cmocka_unit_test(domxml_caps_find_kvm_and_the_dac_label),
		cmocka_unit_test(domxml_volume_names_its_backing_format),
		cmocka_unit_test(domxml_defines_on_the_test_driver),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
