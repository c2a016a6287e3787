/*
 * The JSON writer replies are built with: the same bytes as jansson's
 * compact dump for the same document, whatever the strings hold, so that
 * a reply written straight from rows keeps the bytes clients saw before.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "opsn/util.h"
#include "http/http.h"

/* Write j with jsonw, walking it as a row writer would. */
static void
write_tree(struct jsonw *w, json_t *j)
{
	const char	*k;
	json_t		*v;
	size_t		 i;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		jsonw_obj(w);
		json_object_foreach(j, k, v) {
			jsonw_key(w, k);
			write_tree(w, v);
		}
		jsonw_obj_end(w);
		break;
	case JSON_ARRAY:
		jsonw_arr(w);
		json_array_foreach(j, i, v)
			write_tree(w, v);
		jsonw_arr_end(w);
		break;
	case JSON_STRING:
		jsonw_strn(w, json_string_value(j), json_string_length(j));
		break;
	case JSON_INTEGER:
		jsonw_int(w, json_integer_value(j));
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		jsonw_bool(w, json_is_true(j));
		break;
	default:
		jsonw_null(w);
		break;
	}
}

static void
assert_same_as_jansson(json_t *j)
{
	struct jsonw	 w;
	char		*want, *got;
	size_t		 len;

	memset(&w, 0, sizeof(w));
	want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_non_null(want);
	write_tree(&w, j);
	got = jsonw_take(&w, &len);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
	free(want);
	free(got);
}

/* A random valid UTF-8 string: controls, quotes, accents, emoji. */
static json_t *
random_string(unsigned *seed)
{
	static const char *const parts[] = {
		"a", "Z", " ", "\"", "\\", "/", "\n", "\r", "\t", "\b", "\f",
		"\x01", "\x1f", "\x7f", "é", "Saint-Étienne", "€", "\xf0\x9f\x98\x80",
		"'", "<", "&", ";", "0", "\xe2\x80\xa8",
	};
	char	 buf[256] = "";
	size_t	 len = 0, pl;
	int	 n = rand_r(seed) % 12, i;
	const char *p;

	for (i = 0; i < n; i++) {
		p = parts[rand_r(seed) % nitems(parts)];
		pl = strlen(p);
		memcpy(buf + len, p, pl + 1);
		len += pl;
	}
	return (json_string(buf));
}

static json_t *
random_value(unsigned *seed, int depth)
{
	json_t	*j;
	char	 key[16];
	int	 n, i, kind = rand_r(seed) % (depth > 3 ? 5 : 7);

	switch (kind) {
	case 0:
		return (random_string(seed));
	case 1:
		switch (rand_r(seed) % 4) {
		case 0:
			return (json_integer(INT64_MIN));
		case 1:
			return (json_integer(INT64_MAX));
		default:
			return (json_integer((json_int_t)rand_r(seed) -
			    RAND_MAX / 2));
		}
	case 2:
		return (json_null());
	case 3:
		return (json_boolean(rand_r(seed) % 2));
	case 4:
		return (json_integer(0));
	case 5:
		j = json_array();
		n = rand_r(seed) % 4;
		for (i = 0; i < n; i++)
			json_array_append_new(j, random_value(seed, depth + 1));
		return (j);
	default:
		j = json_object();
		n = rand_r(seed) % 4;
		for (i = 0; i < n; i++) {
			snprintf(key, sizeof(key), "k%d_%d", i, rand_r(seed) % 9);
			json_object_set_new(j, key, random_value(seed,
			    depth + 1));
		}
		return (j);
	}
}

static void
writer_matches_jansson_on_random_documents(void **state)
{
	unsigned	 seed = 20261204;
	json_t		*j;
	int		 i;

	for (i = 0; i < 5000; i++) {
		j = random_value(&seed, 0);
		assert_same_as_jansson(j);
		json_decref(j);
	}
}

static void
invalid_utf8_becomes_a_question_mark(void **state)
{
	struct jsonw	 w;
	char		*s;

	memset(&w, 0, sizeof(w));
	jsonw_arr(&w);
	jsonw_str(&w, "a\xff" "b");		/* a stray byte */
	jsonw_str(&w, "\xc3");			/* truncated */
	jsonw_str(&w, "\xc0\xaf");		/* overlong '/' */
	jsonw_str(&w, "\xed\xa0\x80");		/* a surrogate */
	jsonw_str(&w, NULL);
	jsonw_arr_end(&w);
	s = jsonw_take(&w, NULL);
	assert_string_equal(s, "[\"a?b\",\"?\",\"??\",\"???\",null]");
	free(s);
}

static void
load_gives_the_document_back(void **state)
{
	struct jsonw	 w;
	json_t		*j;

	memset(&w, 0, sizeof(w));
	jsonw_obj(&w);
	jsonw_key(&w, "items");
	jsonw_arr(&w);
	jsonw_int(&w, 1);
	jsonw_int(&w, 2);
	jsonw_arr_end(&w);
	jsonw_key(&w, "next_cursor");
	jsonw_null(&w);
	jsonw_obj_end(&w);
	j = jsonw_load(&w);
	assert_int_equal(json_array_size(json_object_get(j, "items")), 2);
	assert_true(json_is_null(json_object_get(j, "next_cursor")));
	json_decref(j);
	assert_null(w.jw_b);	/* the writer was reset */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(writer_matches_jansson_on_random_documents),
		cmocka_unit_test(invalid_utf8_becomes_a_question_mark),
		cmocka_unit_test(load_gives_the_document_back),
	};

	return (cmocka_run_group_tests_name("jsonw", tests, NULL, NULL));
}
