/*
 * libFuzzer target for the frame decoder and the protobuf payloads an
 * agent or the controller may receive: whatever the bytes, no crash, no
 * leak, no read out of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "opsn/frame.h"
#include "opsn.pb-c.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
fuzz_frame_cb(const struct frame_hdr *h, const uint8_t *p, void *arg)
{
	switch (h->fh_type) {
	case MSG_HELLO: {
		Opsn__Hello *m = opsn__hello__unpack(NULL, h->fh_len, p);
		if (m != NULL)
			opsn__hello__free_unpacked(m, NULL);
		break;
	}
	case MSG_ENROL: {
		Opsn__Enrol *m = opsn__enrol__unpack(NULL, h->fh_len, p);
		if (m != NULL)
			opsn__enrol__free_unpacked(m, NULL);
		break;
	}
	case MSG_HEARTBEAT: {
		Opsn__Heartbeat *m = opsn__heartbeat__unpack(NULL, h->fh_len,
		    p);
		if (m != NULL)
			opsn__heartbeat__free_unpacked(m, NULL);
		break;
	}
	default: {
		Opsn__Error *m = opsn__error__unpack(NULL, h->fh_len, p);
		if (m != NULL)
			opsn__error__free_unpacked(m, NULL);
		break;
	}
	}
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct frame_reader	 fr;
	char			*cause = NULL;
	size_t			 split;

	/* Feed in two pieces to exercise reassembly across reads. */
	split = size > 0 ? data[0] % (size + 1) : 0;
	frame_reader_init(&fr, FRAME_MAX_PREAUTH);
	if (frame_reader_feed(&fr, data, split, fuzz_frame_cb, NULL,
	    &cause) == 0)
		frame_reader_feed(&fr, data + split, size - split,
		    fuzz_frame_cb, NULL, &cause);
	free(cause);
	frame_reader_free(&fr);
	return (0);
}
