/*
 * The libvirt XML the hypervisor agent writes (domain, overlay volume,
 * storage pool, opsn metadata) and the little it reads back (our metadata,
 * a few capability facts). Pure text functions: no libvirt calls, so they
 * are tested against golden files.
 */
#ifndef OPSN_DOMXML_H
#define OPSN_DOMXML_H

#include <stddef.h>
#include <stdint.h>

#include "opsn.pb-c.h"

/* Our metadata namespace and the prefix it has in domain XML. */
#define DOMXML_NS		"https://opsn.example/xmlns/vm/1"
#define DOMXML_NS_PREFIX	"opsn"
/* A tap name fits IFNAMSIZ (16) with its NUL. */
#define DOMXML_TAP_MAX		16

struct domxml_ctx {
	const char	*dx_node;		/* our node name */
	uint64_t	 dx_generation;		/* desired generation defining it */
	uint64_t	 dx_reboot_seq;		/* reboot sequence applied */
	const char	*dx_type;		/* "qemu" or "kvm" */
	const char	*dx_disk;		/* the overlay volume's path */
	/*
	 * The overlay's base and its format. When set, the domain XML names
	 * the backing store itself with relabelling off; when NULL libvirt
	 * reads the chain from the overlay (which records the format).
	 */
	const char	*dx_backing;
	const char	*dx_backing_format;
	const char	*dx_kernel;		/* NULL: boot from the disk */
	const char	*dx_initrd;		/* NULL: none */
	const char	*dx_console_log;	/* serial output, via virtlogd */
	/*
	 * "+UID:+GID" of QEMU (the DAC base label from the capabilities):
	 * QEMU runs with it and libvirt relabels nothing, so the shared
	 * kernel, initrd and base disk are never chowned. NULL: libvirt's
	 * default dynamic labelling.
	 */
	const char	*dx_dac_label;
};

/* What our metadata element says about a domain (strings owned). */
struct domxml_meta {
	char		*dm_id;
	char		*dm_node;
	char		*dm_tenant;
	char		*dm_name;
	uint64_t	 dm_generation;
	uint64_t	 dm_reboot_seq;
};

/* Check a VM spec before anything is built from it (0, or -1 and *cause). */
int	 domxml_check(const Opsn__VmSpec *, char **cause);
/* The persistent domain XML of a VM (caller frees). */
char	*domxml_build(const Opsn__VmSpec *, const struct domxml_ctx *);
/* Our metadata element alone, unprefixed, for virDomainSetMetadata. */
char	*domxml_metadata(const Opsn__VmSpec *, const struct domxml_ctx *);
/* Parse what virDomainGetMetadata returned; -1 and *cause if it is not ours. */
int	 domxml_meta_parse(const char *, struct domxml_meta *, char **cause);
/* Free the strings of a parsed metadata element (the struct is the caller's). */
void	 domxml_meta_free(struct domxml_meta *);
/* The volume XML of a VM's qcow2 overlay; owner is a DAC label or NULL. */
char	*domxml_volume(const char *name, uint64_t capacity,
	    const char *backing, const char *format, const char *owner);
/* The XML of a dir storage pool at path, mode 0755. */
char	*domxml_pool(const char *name, const char *path);
/* The tap name of NIC index of VM id: "op" + 8 hex + "-" + index. */
void	 domxml_tap_name(const char *id, size_t index, char *buf, size_t len);
/* Escape text for XML character data and attribute values (caller frees). */
char	*domxml_escape(const char *);
/* Does a capabilities document offer domain type kvm for x86_64? */
int	 domxml_caps_has_kvm(const char *caps);
/* The DAC base label for QEMU from the capabilities, or NULL (caller frees). */
char	*domxml_caps_dac_label(const char *caps);
/* Parse a DAC label "+UID:+GID" (or "UID:GID"). */
int	 domxml_label_ids(const char *, unsigned long *uid, unsigned long *gid);

#endif
