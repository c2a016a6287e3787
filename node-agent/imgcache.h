/*
 * The hypervisor agent's image cache: base disks, kernels and initrds
 * fetched from the controller over HTTPS with the node's certificate,
 * resumable, checked against their SHA-256 before use.
 */
#ifndef OPSN_IMGCACHE_H
#define OPSN_IMGCACHE_H

#include "agent.h"

/* Valid only during the done callback: copy what you keep. */
struct imgcache_result {
	int		 ir_ok;
	const char	*ir_error;	/* when !ir_ok */
	const char	*ir_disk;	/* absolute paths in the cache */
	const char	*ir_kernel;	/* NULL when the image has none */
	const char	*ir_initrd;
};

/*
 * Set up the cache in dir (created 0755: QEMU, running as libvirt-qemu,
 * reads the files), fetching from image_url ("https://host:port/v1/images")
 * with the agent's key, certificate and CA from its data folder.
 */
int	imgcache_init(struct agent *, const char *dir, char **cause);
/*
 * Make sure every part of img is in the cache; done runs later on the loop
 * thread (never before this returns), once. Requests for an image already
 * being fetched share the download. Progress goes to the controller as
 * MSG_IMAGE_PROGRESS.
 */
void	imgcache_ensure(const Opsn__ImageRef *img, const char *image_url,
	    void (*done)(void *arg, const struct imgcache_result *), void *arg);
/* SHA-256 of a whole file of the expected size (blocking: thread pool). */
int	imgcache_sha256_file(const char *path, uint64_t size, char out[65],
	    char **cause);
/* Abandon downloads (their done callbacks get an error) before exit. */
void	imgcache_stop(void);

#endif
