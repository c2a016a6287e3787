/* Frame codec: round trips, truncation, oversize and garbage. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "opsn/frame.h"
#include "opsn/util.h"

struct got {
	int		 n;
	struct frame_hdr last;
	uint8_t		 payload[256];
	size_t		 plen;
};

static int
collect_cb(const struct frame_hdr *h, const uint8_t *p, void *arg)
{
	struct got	*g = arg;

	g->n++;
	g->last = *h;
	g->plen = h->fh_len < sizeof(g->payload) ? h->fh_len : 0;
	if (g->plen > 0)
		memcpy(g->payload, p, g->plen);
	return (0);
}

static size_t
make_frame(uint8_t *out, uint16_t type, uint32_t reqid, const char *payload)
{
	struct frame_hdr h = { (uint32_t)strlen(payload), 1, type, reqid, 0 };

	frame_hdr_encode(&h, out);
	memcpy(out + FRAME_HDR_LEN, payload, h.fh_len);
	return (FRAME_HDR_LEN + h.fh_len);
}

static void
frame_header_round_trips(void **state)
{
	struct frame_hdr a = { 1234, 7, MSG_HELLO, 0xdeadbeef, ST_DENIED }, b;
	uint8_t		 buf[FRAME_HDR_LEN];
	char		*cause = NULL;

	frame_hdr_encode(&a, buf);
	/* Network byte order: length first, big endian. */
	assert_int_equal(buf[0], 0);
	assert_int_equal(buf[2], 0x04);
	assert_int_equal(buf[3], 0xd2);
	assert_int_equal(frame_hdr_decode(buf, FRAME_MAX, &b, &cause), 0);
	assert_int_equal(b.fh_len, 1234);
	assert_int_equal(b.fh_version, 7);
	assert_int_equal(b.fh_type, MSG_HELLO);
	assert_int_equal(b.fh_reqid, 0xdeadbeef);
	assert_int_equal(b.fh_status, ST_DENIED);
}

static void
frame_reader_reassembles_byte_by_byte(void **state)
{
	struct frame_reader fr;
	struct got	 g = { 0 };
	uint8_t		 buf[512];
	size_t		 len, i;
	char		*cause = NULL;

	len = make_frame(buf, MSG_HEARTBEAT, 1, "hello");
	len += make_frame(buf + len, MSG_HELLO, 2, "");
	len += make_frame(buf + len, MSG_ENROL, 3, "world!");
	frame_reader_init(&fr, FRAME_MAX_PREAUTH);
	for (i = 0; i < len; i++)
		assert_int_equal(frame_reader_feed(&fr, buf + i, 1,
		    collect_cb, &g, &cause), 0);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.last.fh_type, MSG_ENROL);
	assert_int_equal(g.last.fh_reqid, 3);
	assert_int_equal(g.plen, 6);
	assert_memory_equal(g.payload, "world!", 6);
	frame_reader_free(&fr);
}

static void
frame_reader_waits_for_truncated_frame(void **state)
{
	struct frame_reader fr;
	struct got	 g = { 0 };
	uint8_t		 buf[64];
	size_t		 len;
	char		*cause = NULL;

	len = make_frame(buf, MSG_HEARTBEAT, 9, "payload");
	frame_reader_init(&fr, FRAME_MAX);
	assert_int_equal(frame_reader_feed(&fr, buf, len - 1, collect_cb, &g,
	    &cause), 0);
	assert_int_equal(g.n, 0);
	/* A truncated frame never reaches the handler; freeing is clean. */
	frame_reader_free(&fr);
	frame_reader_init(&fr, FRAME_MAX);
	assert_int_equal(frame_reader_feed(&fr, buf, 10, collect_cb, &g,
	    &cause), 0);
	assert_int_equal(g.n, 0);
	frame_reader_free(&fr);
}

static void
frame_rejects_oversize_length(void **state)
{
	struct frame_reader fr;
	struct frame_hdr h = { FRAME_MAX_PREAUTH + 1, 1, MSG_ENROL, 1, 0 };
	struct got	 g = { 0 };
	uint8_t		 buf[FRAME_HDR_LEN];
	char		*cause = NULL;

	frame_hdr_encode(&h, buf);
	frame_reader_init(&fr, FRAME_MAX_PREAUTH);
	assert_int_equal(frame_reader_feed(&fr, buf, sizeof(buf), collect_cb,
	    &g, &cause), -1);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "over the maximum"));
	/* Nothing was allocated for the announced payload. */
	assert_null(fr.fr_payload);
	assert_int_equal(g.n, 0);
	free(cause);
	frame_reader_free(&fr);

	/* 4 GiB - 1 against the post-authentication maximum too. */
	h.fh_len = UINT32_MAX;
	frame_hdr_encode(&h, buf);
	cause = NULL;
	assert_int_equal(frame_hdr_decode(buf, FRAME_MAX, &h, &cause), -1);
	free(cause);
}

static void
frame_rejects_garbage(void **state)
{
	struct frame_reader fr;
	struct got	 g = { 0 };
	const char	*http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	uint8_t		 zeros[FRAME_HDR_LEN] = { 0 };
	char		*cause = NULL;

	/* "GET " read as a length is far over any maximum. */
	frame_reader_init(&fr, FRAME_MAX);
	assert_int_equal(frame_reader_feed(&fr, (const uint8_t *)http,
	    strlen(http), collect_cb, &g, &cause), -1);
	free(cause);
	cause = NULL;
	frame_reader_free(&fr);

	/* Version 0 is never valid. */
	frame_reader_init(&fr, FRAME_MAX);
	assert_int_equal(frame_reader_feed(&fr, zeros, sizeof(zeros),
	    collect_cb, &g, &cause), -1);
	assert_non_null(strstr(cause, "version 0"));
	free(cause);
	frame_reader_free(&fr);
	assert_int_equal(g.n, 0);
}

static void
frame_type_names_known_and_unknown(void **state)
{
	assert_string_equal(frame_type_name(MSG_HELLO), "HELLO");
	assert_string_equal(frame_type_name(9999), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(frame_header_round_trips),
		cmocka_unit_test(frame_reader_reassembles_byte_by_byte),
		cmocka_unit_test(frame_reader_waits_for_truncated_frame),
		cmocka_unit_test(frame_rejects_oversize_length),
		cmocka_unit_test(frame_rejects_garbage),
		cmocka_unit_test(frame_type_names_known_and_unknown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
