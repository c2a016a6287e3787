/*
 * The libvirt XML the hypervisor agent writes and the little it reads
 * back. Every string that comes from the controller is escaped; nothing
 * here talks to libvirt.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "domxml.h"

#define DOMXML_NAME_ID_MAX	256	/* VM names, tenants: sanity bound */
#define DOMXML_CMDLINE_MAX	2048	/* the x86 kernel's COMMAND_LINE_SIZE */

static FILE *
domxml_open(char **buf, size_t *len)
{
	FILE	*f;

	if ((f = open_memstream(buf, len)) == NULL)
		fatal("open_memstream");
	return (f);
}

static char *
domxml_close(FILE *f, char **buf)
{
	if (fclose(f) != 0)
		fatal("domxml: write");
	return (*buf);
}

/* Write s escaped for both character data and quoted attributes. */
static void
domxml_put(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			fputs("&amp;", f);
			break;
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		case '\'':
			fputs("&apos;", f);
			break;
		default:
			/* XML 1.0 has no C0 controls but tab, LF and CR. */
			if ((unsigned char)*s < 0x20 && *s != '\t' &&
			    *s != '\n' && *s != '\r')
				fputc('?', f);
			else
				fputc(*s, f);
		}
	}
}

/* Escape text for XML character data and attribute values (caller frees). */
char *
domxml_escape(const char *s)
{
	char	*buf = NULL;
	size_t	 len;
	FILE	*f = domxml_open(&buf, &len);

	domxml_put(f, s);
	return (domxml_close(f, &buf));
}

static int
domxml_uuid_ok(const char *s)
{
	size_t	 i;

	if (strlen(s) != 36)
		return (0);
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return (0);
		} else if (!isdigit((unsigned char)s[i]) &&
		    (s[i] < 'a' || s[i] > 'f'))
			return (0);
	}
	return (1);
}

static int
domxml_mac_ok(const char *s)
{
	size_t	 i;

	if (strlen(s) != 17)
		return (0);
	for (i = 0; i < 17; i++) {
		if (i % 3 == 2) {
			if (s[i] != ':')
				return (0);
		} else if (!isxdigit((unsigned char)s[i]))
			return (0);
	}
	/* The first octet of a unicast address has its low bit clear. */
	return ((strtoul(s, NULL, 16) & 1) == 0);
}

static int
domxml_bridge_ok(const char *s)
{
	size_t	 len = strlen(s), i;

	if (len == 0 || len >= DOMXML_TAP_MAX)
		return (0);
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("-_.", s[i]) == NULL)
			return (0);
	return (1);
}

/* Check a VM spec before anything is built from it (0, or -1 and *cause). */
int
domxml_check(const Opsn__VmSpec *vm, char **cause)
{
	const Opsn__ImageRef	*img = vm->image;
	size_t			 i;

	if (!domxml_uuid_ok(vm->id)) {
		xasprintf(cause, "VM id '%s' is not a lowercase UUID", vm->id);
		return (-1);
	}
	if (strlen(vm->name) > DOMXML_NAME_ID_MAX ||
	    strlen(vm->tenant) > DOMXML_NAME_ID_MAX) {
		xasprintf(cause, "VM name or tenant is too long");
		return (-1);
	}
	if (vm->vcpus == 0 || vm->vcpus > 1024) {
		xasprintf(cause, "%u vCPUs is out of range", vm->vcpus);
		return (-1);
	}
	if (vm->memory_mib == 0 || vm->memory_mib > (UINT64_C(1) << 30)) {
		xasprintf(cause, "%" PRIu64 " MiB of memory is out of range",
		    vm->memory_mib);
		return (-1);
	}
	if (strcmp(vm->power, "running") != 0 &&
	    strcmp(vm->power, "stopped") != 0 &&
	    strcmp(vm->power, "parked") != 0) {
		xasprintf(cause, "power '%s' is not running, stopped or parked",
		    vm->power);
		return (-1);
	}
	if (img == NULL) {
		xasprintf(cause, "VM has no image");
		return (-1);
	}
	if (strcmp(img->format, "qcow2") != 0 && strcmp(img->format, "raw")
	    != 0) {
		xasprintf(cause, "image format '%s' is neither qcow2 nor raw",
		    img->format);
		return (-1);
	}
	if (*img->kernel_sha256 == '\0' && *img->initrd_sha256 != '\0') {
		xasprintf(cause, "image %s has an initrd but no kernel",
		    img->name);
		return (-1);
	}
	if (strlen(img->cmdline) + strlen(vm->name) + 32 > DOMXML_CMDLINE_MAX) {
		xasprintf(cause, "kernel command line is too long");
		return (-1);
	}
	if (vm->n_nics > 9999) {
		xasprintf(cause, "too many NICs");
		return (-1);
	}
	for (i = 0; i < vm->n_nics; i++) {
		if (!domxml_bridge_ok(vm->nics[i]->bridge)) {
			xasprintf(cause, "NIC %zu: bad bridge name '%s'", i,
			    vm->nics[i]->bridge);
			return (-1);
		}
		if (*vm->nics[i]->mac != '\0' &&
		    !domxml_mac_ok(vm->nics[i]->mac)) {
			xasprintf(cause, "NIC %zu: bad MAC address '%s'", i,
			    vm->nics[i]->mac);
			return (-1);
		}
	}
	return (0);
}

/* The tap name of NIC index of VM id: "op" + 8 hex + "-" + index. */
void
domxml_tap_name(const char *id, size_t index, char *buf, size_t len)
{
	/* domxml_check allows at most 9999 NICs: 2 + 8 + 1 + 4 < 16. */
	snprintf(buf, len, "op%.8s-%u", id, (unsigned)(index % 10000));
}

/* Is c safe unquoted in a kernel command line word? */
static int
domxml_cmdline_safe(const char *s)
{
	if (*s == '\0')
		return (0);
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("._-", *s) == NULL)
			return (0);
	return (1);
}

/*
 * " opsn.name=NAME" for the kernel command line. A name that is not a
 * plain word is double-quoted the way the kernel parses parameters, with
 * the characters it cannot carry (quote, backslash, controls) as '_'.
 */
static void
domxml_put_name_param(FILE *f, const char *name)
{
	char	*q, *p;

	if (domxml_cmdline_safe(name)) {
		fputs(" opsn.name=", f);
		domxml_put(f, name);
		return;
	}
	q = xstrdup(name);
	for (p = q; *p != '\0'; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 ||
		    *p == 0x7f)
			*p = '_';
	fputs(" opsn.name=&quot;", f);
	domxml_put(f, q);
	fputs("&quot;", f);
	free(q);
}

/* The metadata element; prefix NULL for the unprefixed form. */
static void
domxml_put_meta(FILE *f, const Opsn__VmSpec *vm, const struct domxml_ctx *ctx,
    const char *indent, const char *prefix)
{
	const char	*p = prefix ? prefix : "", *c = prefix ? ":" : "";

	if (prefix != NULL)
		fprintf(f, "%s<%s%svm xmlns:%s='%s'>\n", indent, p, c, p,
		    DOMXML_NS);
	else
		fprintf(f, "%s<vm>\n", indent);	/* libvirt adds the namespace */
	fprintf(f, "%s  <%s%sid>", indent, p, c);
	domxml_put(f, vm->id);
	fprintf(f, "</%s%sid>\n%s  <%s%snode>", p, c, indent, p, c);
	domxml_put(f, ctx->dx_node);
	fprintf(f, "</%s%snode>\n%s  <%s%stenant>", p, c, indent, p, c);
	domxml_put(f, vm->tenant);
	fprintf(f, "</%s%stenant>\n%s  <%s%sname>", p, c, indent, p, c);
	domxml_put(f, vm->name);
	fprintf(f, "</%s%sname>\n", p, c);
	fprintf(f, "%s  <%s%sgeneration>%" PRIu64 "</%s%sgeneration>\n",
	    indent, p, c, ctx->dx_generation, p, c);
	fprintf(f, "%s  <%s%sreboot-seq>%" PRIu64 "</%s%sreboot-seq>\n",
	    indent, p, c, ctx->dx_reboot_seq, p, c);
	fprintf(f, "%s</%s%svm>\n", indent, p, c);
}

/* Our metadata element alone, unprefixed, for virDomainSetMetadata. */
char *
domxml_metadata(const Opsn__VmSpec *vm, const struct domxml_ctx *ctx)
{
	char	*buf = NULL;
	size_t	 len;
	FILE	*f = domxml_open(&buf, &len);

	domxml_put_meta(f, vm, ctx, "", NULL);
	return (domxml_close(f, &buf));
}

static void
domxml_put_disk(FILE *f, const struct domxml_ctx *ctx)
{
	fputs("    <disk type='file' device='disk'>\n"
	    "      <driver name='qemu' type='qcow2' discard='unmap'/>\n"
	    "      <source file='", f);
	domxml_put(f, ctx->dx_disk);
	fputs("'/>\n", f);
	if (ctx->dx_backing != NULL) {
		fputs("      <backingStore type='file'>\n"
		    "        <format type='", f);
		domxml_put(f, ctx->dx_backing_format ? ctx->dx_backing_format :
		    "qcow2");
		fputs("'/>\n        <source file='", f);
		domxml_put(f, ctx->dx_backing);
		fputs("'>\n", f);
		/* The base is shared by every VM made from the image. */
		fputs("          <seclabel model='dac' relabel='no'/>\n"
		    "        </source>\n"
		    "        <backingStore/>\n"
		    "      </backingStore>\n", f);
	}
	fputs("      <target dev='vda' bus='virtio'/>\n"
	    "    </disk>\n", f);
}

/* The persistent domain XML of a VM (caller frees). */
char *
domxml_build(const Opsn__VmSpec *vm, const struct domxml_ctx *ctx)
{
	const Opsn__ImageRef	*img = vm->image;
	char			*buf = NULL, tap[DOMXML_TAP_MAX];
	size_t			 len, i;
	FILE			*f = domxml_open(&buf, &len);

	fputs("<domain type='", f);
	domxml_put(f, ctx->dx_type);
	fputs("'>\n  <name>opsn-", f);
	domxml_put(f, vm->id);
	fputs("</name>\n  <uuid>", f);
	domxml_put(f, vm->id);
	fputs("</uuid>\n  <metadata>\n", f);
	domxml_put_meta(f, vm, ctx, "    ", DOMXML_NS_PREFIX);
	fputs("  </metadata>\n", f);
	fprintf(f, "  <memory unit='MiB'>%" PRIu64 "</memory>\n",
	    vm->memory_mib);
	fprintf(f, "  <vcpu>%u</vcpu>\n", vm->vcpus);
	fputs("  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n", f);
	if (ctx->dx_kernel != NULL) {
		fputs("    <kernel>", f);
		domxml_put(f, ctx->dx_kernel);
		fputs("</kernel>\n", f);
		if (ctx->dx_initrd != NULL) {
			fputs("    <initrd>", f);
			domxml_put(f, ctx->dx_initrd);
			fputs("</initrd>\n", f);
		}
		fputs("    <cmdline>", f);
		domxml_put(f, img != NULL ? img->cmdline : "");
		domxml_put_name_param(f, vm->name);
		fputs("</cmdline>\n", f);
	} else
		fputs("    <boot dev='hd'/>\n", f);
	fputs("  </os>\n"
	    "  <features>\n    <acpi/>\n  </features>\n"
	    "  <on_poweroff>destroy</on_poweroff>\n"
	    "  <on_reboot>restart</on_reboot>\n"
	    "  <on_crash>destroy</on_crash>\n"
	    "  <devices>\n", f);
	domxml_put_disk(f, ctx);
	for (i = 0; i < vm->n_nics; i++) {
		fputs("    <interface type='bridge'>\n", f);
		if (*vm->nics[i]->mac != '\0') {
			fputs("      <mac address='", f);
			domxml_put(f, vm->nics[i]->mac);
			fputs("'/>\n", f);
		}
		fputs("      <source bridge='", f);
		domxml_put(f, vm->nics[i]->bridge);
		domxml_tap_name(vm->id, i, tap, sizeof(tap));
		fputs("'/>\n      <target dev='", f);
		domxml_put(f, tap);
		fputs("'/>\n      <model type='virtio'/>\n"
		    "    </interface>\n", f);
	}
	fputs("    <serial type='pty'>\n      <log file='", f);
	domxml_put(f, ctx->dx_console_log);
	fputs("' append='on'/>\n"
	    "      <target port='0'/>\n"
	    "    </serial>\n"
	    "    <console type='pty'>\n"
	    "      <target type='serial' port='0'/>\n"
	    "    </console>\n"
	    "    <memballoon model='virtio'>\n"
	    "      <stats period='10'/>\n"
	    "    </memballoon>\n"
	    "  </devices>\n", f);
	if (ctx->dx_dac_label != NULL) {
		fputs("  <seclabel type='static' model='dac' relabel='no'>\n"
		    "    <label>", f);
		domxml_put(f, ctx->dx_dac_label);
		fputs("</label>\n  </seclabel>\n", f);
	}
	fputs("</domain>\n", f);
	return (domxml_close(f, &buf));
}

/* The volume XML of a VM's qcow2 overlay; owner is a DAC label or NULL. */
char *
domxml_volume(const char *name, uint64_t capacity, const char *backing,
    const char *format, const char *owner)
{
	char		*buf = NULL;
	size_t		 len;
	unsigned long	 uid, gid;
	FILE		*f = domxml_open(&buf, &len);

	fputs("<volume type='file'>\n  <name>", f);
	domxml_put(f, name);
	fprintf(f, "</name>\n  <capacity unit='bytes'>%" PRIu64 "</capacity>\n"
	    "  <target>\n    <format type='qcow2'/>\n", capacity);
	/* With relabelling off, QEMU's own user must own its overlay. */
	if (owner != NULL && domxml_label_ids(owner, &uid, &gid) == 0)
		fprintf(f, "    <permissions>\n      <mode>0600</mode>\n"
		    "      <owner>%lu</owner>\n      <group>%lu</group>\n"
		    "    </permissions>\n", uid, gid);
	fputs("  </target>\n  <backingStore>\n    <path>", f);
	domxml_put(f, backing);
	fputs("</path>\n    <format type='", f);
	domxml_put(f, format);
	fputs("'/>\n  </backingStore>\n</volume>\n", f);
	return (domxml_close(f, &buf));
}

/* The XML of a dir storage pool at path, mode 0755. */
char *
domxml_pool(const char *name, const char *path)
{
	char	*buf = NULL;
	size_t	 len;
	FILE	*f = domxml_open(&buf, &len);

	fputs("<pool type='dir'>\n  <name>", f);
	domxml_put(f, name);
	fputs("</name>\n  <target>\n    <path>", f);
	domxml_put(f, path);
	/* QEMU runs as libvirt-qemu: it must traverse the pool folder. */
	fputs("</path>\n    <permissions>\n      <mode>0755</mode>\n"
	    "    </permissions>\n  </target>\n</pool>\n", f);
	return (domxml_close(f, &buf));
}

/* Decode the five predefined entities and character references. */
static char *
domxml_unescape(const char *s, size_t n)
{
	static const struct {
		const char	*e;
		char		 c;
	} ents[] = {
		{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
		{ "&quot;", '"' }, { "&apos;", '\'' },
	};
	char		*out = xmalloc(n + 1), *o = out, *end;
	size_t		 i, k, l;
	unsigned long	 v;

	for (i = 0; i < n; ) {
		if (s[i] != '&') {
			*o++ = s[i++];
			continue;
		}
		for (k = 0; k < nitems(ents); k++) {
			l = strlen(ents[k].e);
			if (i + l <= n && strncmp(s + i, ents[k].e, l) == 0)
				break;
		}
		if (k < nitems(ents)) {
			*o++ = ents[k].c;
			i += l;
			continue;
		}
		if (i + 2 < n && s[i + 1] == '#') {
			errno = 0;
			if (s[i + 2] == 'x')
				v = strtoul(s + i + 3, &end, 16);
			else
				v = strtoul(s + i + 2, &end, 10);
			if (errno == 0 && end < s + n && *end == ';' &&
			    v > 0 && v < 0x80) {
				*o++ = (char)v;
				i = (size_t)(end - s) + 1;
				continue;
			}
		}
		*o++ = s[i++];
	}
	*o = '\0';
	return (out);
}

/*
 * The text of the first element named tag in xml (unprefixed, as libvirt
 * returns metadata), "" for an empty element, NULL when there is none.
 */
static char *
domxml_elem(const char *xml, const char *tag)
{
	char		*open, *close, *empty;
	const char	*p, *start, *end;

	xasprintf(&open, "<%s>", tag);
	xasprintf(&close, "</%s>", tag);
	xasprintf(&empty, "<%s/>", tag);
	p = strstr(xml, open);
	start = p ? p + strlen(open) : NULL;
	end = start ? strstr(start, close) : NULL;
	if (end == NULL) {
		p = strstr(xml, empty);
		free(open);
		free(close);
		free(empty);
		return (p != NULL ? xstrdup("") : NULL);
	}
	free(open);
	free(close);
	free(empty);
	return (domxml_unescape(start, (size_t)(end - start)));
}

static int
domxml_u64(const char *s, uint64_t *out)
{
	char	*end;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		return (-1);
	*out = strtoull(s, &end, 10);
	return (errno != 0 || *end != '\0' ? -1 : 0);
}

/* Parse what virDomainGetMetadata returned; -1 and *cause if it is not ours. */
int
domxml_meta_parse(const char *xml, struct domxml_meta *m, char **cause)
{
	char	*gen = NULL, *seq = NULL;

	memset(m, 0, sizeof(*m));
	m->dm_id = domxml_elem(xml, "id");
	m->dm_node = domxml_elem(xml, "node");
	m->dm_tenant = domxml_elem(xml, "tenant");
	m->dm_name = domxml_elem(xml, "name");
	gen = domxml_elem(xml, "generation");
	seq = domxml_elem(xml, "reboot-seq");
	if (m->dm_id == NULL || m->dm_node == NULL || *m->dm_node == '\0') {
		xasprintf(cause, "opsn metadata without an id or a node");
		goto fail;
	}
	if ((gen != NULL && domxml_u64(gen, &m->dm_generation) == -1) ||
	    (seq != NULL && domxml_u64(seq, &m->dm_reboot_seq) == -1)) {
		xasprintf(cause, "opsn metadata with a bad number");
		goto fail;
	}
	if (m->dm_tenant == NULL)
		m->dm_tenant = xstrdup("");
	if (m->dm_name == NULL)
		m->dm_name = xstrdup("");
	free(gen);
	free(seq);
	return (0);
fail:
	free(gen);
	free(seq);
	domxml_meta_free(m);
	return (-1);
}

/* Free the strings of a parsed metadata element (the struct is the caller's). */
void
domxml_meta_free(struct domxml_meta *m)
{
	free(m->dm_id);
	free(m->dm_node);
	free(m->dm_tenant);
	free(m->dm_name);
	memset(m, 0, sizeof(*m));
}

/*
 * The guest section of the capabilities for arch x86_64, as a pointer
 * range [*start, *end), or -1 when there is none.
 */
static int
domxml_caps_arch(const char *caps, const char **start, const char **end)
{
	const char	*p;

	if ((p = strstr(caps, "<arch name='x86_64'>")) == NULL &&
	    (p = strstr(caps, "<arch name=\"x86_64\">")) == NULL)
		return (-1);
	*start = p;
	if ((*end = strstr(p, "</arch>")) == NULL)
		*end = p + strlen(p);
	return (0);
}

/* Does a capabilities document offer domain type kvm for x86_64? */
int
domxml_caps_has_kvm(const char *caps)
{
	const char	*start, *end, *p;

	for (;;) {
		if (domxml_caps_arch(caps, &start, &end) == -1)
			return (0);
		for (p = start; (p = strstr(p, "<domain type=")) != NULL &&
		    p < end; p++)
			if (strncmp(p + 13, "'kvm'", 5) == 0 ||
			    strncmp(p + 13, "\"kvm\"", 5) == 0)
				return (1);
		caps = end;
	}
}

/* The DAC base label for QEMU from the capabilities, or NULL (caller frees). */
char *
domxml_caps_dac_label(const char *caps)
{
	const char	*p, *e, *sec;
	unsigned long	 uid, gid;
	char		*label;

	for (sec = caps; (sec = strstr(sec, "<secmodel>")) != NULL; sec++) {
		if ((e = strstr(sec, "</secmodel>")) == NULL)
			return (NULL);
		p = strstr(sec, "<model>dac</model>");
		if (p == NULL || p > e)
			continue;
		p = strstr(sec, "<baselabel type='qemu'>");
		if (p == NULL || p > e)
			return (NULL);
		p += strlen("<baselabel type='qemu'>");
		if ((e = strchr(p, '<')) == NULL)
			return (NULL);
		label = xstrndup(p, (size_t)(e - p));
		if (domxml_label_ids(label, &uid, &gid) == -1) {
			free(label);
			return (NULL);
		}
		return (label);
	}
	return (NULL);
}

/* Parse a DAC label "+UID:+GID" (or "UID:GID"). */
int
domxml_label_ids(const char *s, unsigned long *uid, unsigned long *gid)
{
	char	*end;

	if (*s == '+')
		s++;
	if (!isdigit((unsigned char)*s))
		return (-1);
	errno = 0;
	*uid = strtoul(s, &end, 10);
	if (errno != 0 || *end != ':')
		return (-1);
	s = end + 1;
	if (*s == '+')
		s++;
	if (!isdigit((unsigned char)*s))
		return (-1);
	*gid = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return (-1);
	return (0);
}
