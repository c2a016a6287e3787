/*
 * Agent protocol framing: a 16-byte header in network byte order
 *   u32 length | u16 version | u16 type | u32 request id | u32 status
 * followed by `length` bytes of protobuf-c payload.
 */
#ifndef OPSN_FRAME_H
#define OPSN_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HDR_LEN		16
/* Before the peer is authenticated (enrolment) frames stay small. */
#define FRAME_MAX_PREAUTH	(64 * 1024)
#define FRAME_MAX		(16 * 1024 * 1024)

/* Protocol versions this build speaks (HELLO negotiates within them). */
#define OPSN_PROTO_MIN		1
#define OPSN_PROTO_MAX		1

/* Message types live in numbered ranges and are never renumbered. */
enum msg_type {
	/* 1-63: session */
	MSG_ERROR = 1,
	MSG_HELLO = 2,
	MSG_HELLO_OK = 3,
	MSG_HEARTBEAT = 4,
	MSG_HEARTBEAT_ACK = 5,
	/* 64-127: enrolment */
	MSG_ENROL = 64,
	MSG_ENROL_OK = 65,
	/* 128-255: hypervisor desired/observed state */
	MSG_DESIRED_STATE = 128,
	MSG_OBSERVED_STATE = 129,
	MSG_IMAGE_PROGRESS = 130,
	MSG_CONSOLE_DATA = 131,
	MSG_DISK_SERVER = 132,		/* agent -> controller */
	MSG_MIGRATE_PROGRESS = 133,	/* agent -> controller */
	/* 192-223: hypervisor to hypervisor (disk transfers) */
	MSG_DISK_GET = 192,
	MSG_DISK_INFO = 193,
	MSG_DISK_DATA = 194,
	/* 256-383: metering (proto/metering.proto) */
	MSG_SAMPLES = 256,		/* agent -> controller: a batch */
	MSG_SAMPLES_ACK = 257,		/* controller -> agent: committed up to */
	/* 384-511: mail and web services (proto/services.proto) */
	MSG_SERVICES_DESIRED = 384,	/* controller -> mail/web agent */
	MSG_SERVICES_STATUS = 385,	/* agent -> controller */
	MSG_SERVICES_CERTS = 386,	/* agent -> controller: certificates */
	MSG_SITE_CERT = 387,		/* controller -> web agent: a key pair */
	MSG_SITE_CERT_RESULT = 388,	/* agent -> controller */
};

#define MSG_RANGE_HV_MIN	128
#define MSG_RANGE_HV_MAX	255
#define MSG_RANGE_METER_MIN	256
#define MSG_RANGE_METER_MAX	383
#define MSG_RANGE_SVC_MIN	384
#define MSG_RANGE_SVC_MAX	511

/* Status carried in the header; 0 means success. */
enum msg_status {
	ST_OK = 0,
	ST_BAD_REQUEST = 1,	/* payload did not decode or was invalid */
	ST_UNKNOWN_TYPE = 2,	/* the receiver has no handler for the type */
	ST_VERSION = 3,		/* no common protocol version */
	ST_DENIED = 4,		/* authentication/authorisation refused */
	ST_INTERNAL = 5,	/* the receiver failed to handle it */
	ST_NOT_FOUND = 6,
};

struct frame_hdr {
	uint32_t	fh_len;
	uint16_t	fh_version;
	uint16_t	fh_type;
	uint32_t	fh_reqid;
	uint32_t	fh_status;
};

/* Encode a header into out[FRAME_HDR_LEN]. */
void	frame_hdr_encode(const struct frame_hdr *, uint8_t *out);
/*
 * Decode a header from exactly FRAME_HDR_LEN bytes; -1 (with *cause) when
 * the length is over max or the version is 0.
 */
int	frame_hdr_decode(const uint8_t *, uint32_t max, struct frame_hdr *,
	    char **cause);

/* Called for each whole frame; payload is valid only during the call. */
typedef int (*frame_cb)(const struct frame_hdr *, const uint8_t *payload,
    void *arg);

/* Incremental reassembly of frames from a byte stream. */
struct frame_reader {
	uint32_t	 fr_max;
	uint8_t		 fr_hdrbuf[FRAME_HDR_LEN];
	size_t		 fr_hdrhave;
	struct frame_hdr fr_hdr;
	uint8_t		*fr_payload;
	size_t		 fr_have;
};

void	frame_reader_init(struct frame_reader *, uint32_t max);
void	frame_reader_set_max(struct frame_reader *, uint32_t max);
void	frame_reader_free(struct frame_reader *);
/*
 * Feed len bytes; calls cb for each complete frame. Returns 0, or -1 with
 * *cause on a bad header (the stream must then be closed), or the first
 * non-zero value cb returned (feeding stops there).
 */
int	frame_reader_feed(struct frame_reader *, const uint8_t *, size_t,
	    frame_cb, void *arg, char **cause);

/* Human name of a message type, "unknown" if none. */
const char	*frame_type_name(uint16_t);

#endif
