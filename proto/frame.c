/* Agent protocol framing: header codec and incremental reassembly. */
#include <stdlib.h>
#include <string.h>

#include "opsn/frame.h"
#include "opsn/util.h"

static const struct {
	uint16_t	 type;
	const char	*name;
} frame_names[] = {
	{ MSG_ERROR, "ERROR" },
	{ MSG_HELLO, "HELLO" },
	{ MSG_HELLO_OK, "HELLO_OK" },
	{ MSG_HEARTBEAT, "HEARTBEAT" },
	{ MSG_HEARTBEAT_ACK, "HEARTBEAT_ACK" },
	{ MSG_ENROL, "ENROL" },
	{ MSG_ENROL_OK, "ENROL_OK" },
	{ MSG_DESIRED_STATE, "DESIRED_STATE" },
	{ MSG_OBSERVED_STATE, "OBSERVED_STATE" },
	{ MSG_IMAGE_PROGRESS, "IMAGE_PROGRESS" },
	{ MSG_CONSOLE_DATA, "CONSOLE_DATA" },
	{ MSG_DISK_SERVER, "DISK_SERVER" },
	{ MSG_MIGRATE_PROGRESS, "MIGRATE_PROGRESS" },
	{ MSG_DISK_GET, "DISK_GET" },
	{ MSG_DISK_INFO, "DISK_INFO" },
	{ MSG_DISK_DATA, "DISK_DATA" },
	{ MSG_SAMPLES, "SAMPLES" },
	{ MSG_SAMPLES_ACK, "SAMPLES_ACK" },
	{ MSG_SERVICES_DESIRED, "SERVICES_DESIRED" },
	{ MSG_SERVICES_STATUS, "SERVICES_STATUS" },
	{ MSG_SERVICES_CERTS, "SERVICES_CERTS" },
	{ MSG_SITE_CERT, "SITE_CERT" },
	{ MSG_SITE_CERT_RESULT, "SITE_CERT_RESULT" },
};

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

static uint16_t
get16(const uint8_t *p)
{
	return ((uint16_t)(p[0] << 8 | p[1]));
}

static uint32_t
get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3]);
}

/* Encode a header into out[FRAME_HDR_LEN]. */
void
frame_hdr_encode(const struct frame_hdr *h, uint8_t *out)
{
	put32(out, h->fh_len);
	put16(out + 4, h->fh_version);
	put16(out + 6, h->fh_type);
	put32(out + 8, h->fh_reqid);
	put32(out + 12, h->fh_status);
}

/* Decode and check a header; the length is bounded before any allocation. */
int
frame_hdr_decode(const uint8_t *in, uint32_t max, struct frame_hdr *h,
    char **cause)
{
	h->fh_len = get32(in);
	h->fh_version = get16(in + 4);
	h->fh_type = get16(in + 6);
	h->fh_reqid = get32(in + 8);
	h->fh_status = get32(in + 12);
	if (h->fh_len > max) {
		xasprintf(cause, "frame length %u is over the maximum %u",
		    h->fh_len, max);
		return (-1);
	}
	if (h->fh_version == 0) {
		xasprintf(cause, "frame has protocol version 0");
		return (-1);
	}
	if (h->fh_type == 0) {
		xasprintf(cause, "frame has message type 0");
		return (-1);
	}
	return (0);
}

/* Prepare a reader whose frames may be at most max bytes of payload. */
void
frame_reader_init(struct frame_reader *fr, uint32_t max)
{
	memset(fr, 0, sizeof(*fr));
	fr->fr_max = max;
}

/* Change the limit; applies to the next header read. */
void
frame_reader_set_max(struct frame_reader *fr, uint32_t max)
{
	fr->fr_max = max;
}

/* Release a partly read payload. */
void
frame_reader_free(struct frame_reader *fr)
{
	free(fr->fr_payload);
	fr->fr_payload = NULL;
	fr->fr_have = 0;
	fr->fr_hdrhave = 0;
}

/* Feed bytes from the stream, calling cb for each whole frame. */
int
frame_reader_feed(struct frame_reader *fr, const uint8_t *buf, size_t len,
    frame_cb cb, void *arg, char **cause)
{
	size_t	 n;
	int	 rv;

	while (len > 0) {
		if (fr->fr_hdrhave < FRAME_HDR_LEN) {
			n = FRAME_HDR_LEN - fr->fr_hdrhave;
			if (n > len)
				n = len;
			memcpy(fr->fr_hdrbuf + fr->fr_hdrhave, buf, n);
			fr->fr_hdrhave += n;
			buf += n;
			len -= n;
			if (fr->fr_hdrhave < FRAME_HDR_LEN)
				return (0);
			if (frame_hdr_decode(fr->fr_hdrbuf, fr->fr_max,
			    &fr->fr_hdr, cause) == -1)
				return (-1);
			fr->fr_have = 0;
			if (fr->fr_hdr.fh_len > 0)
				fr->fr_payload = xmalloc(fr->fr_hdr.fh_len);
		}
		n = fr->fr_hdr.fh_len - fr->fr_have;
		if (n > len)
			n = len;
		if (n > 0) {
			memcpy(fr->fr_payload + fr->fr_have, buf, n);
			fr->fr_have += n;
			buf += n;
			len -= n;
		}
		if (fr->fr_have < fr->fr_hdr.fh_len)
			return (0);
		/* A whole frame: reset before the callback so it may re-enter. */
		uint8_t *payload = fr->fr_payload;
		struct frame_hdr h = fr->fr_hdr;
		fr->fr_payload = NULL;
		fr->fr_have = 0;
		fr->fr_hdrhave = 0;
		rv = cb(&h, payload, arg);
		free(payload);
		if (rv != 0)
			return (rv);
	}
	return (0);
}

/* Human name of a message type, "unknown" if none. */
const char *
frame_type_name(uint16_t type)
{
	size_t	 i;

	for (i = 0; i < nitems(frame_names); i++)
		if (frame_names[i].type == type)
			return (frame_names[i].name);
	return ("unknown");
}
