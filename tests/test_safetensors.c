/* The safetensors reader against hostile input: every bad file is refused
 * with one line naming the file (and the tensor), and a good file round-trips
 * through the writer. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "testutil.h"

static char dir[] = "/tmp/tpmlp-st-XXXXXX";
static char path[256];

/* Writes [8-byte length][header][data] with the given length field. */
static void write_raw(uint64_t hlen_field, const char *header, const void *data, size_t ndata) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(&hlen_field, 8, 1, f);
    fwrite(header, 1, strlen(header), f);
    if (ndata) fwrite(data, 1, ndata, f);
    assert_int_equal(fclose(f), 0);
}
static void write_file(const char *header, size_t ndata) {
    static const unsigned char zeros[4096];
    write_raw(strlen(header), header, zeros, ndata);
}

/* Opening must fail, and the one-line message must name the file and contain want. */
static void expect_error(const char *want) {
    st_file f;
    char err[512];
    int rc = st_open(&f, path, err, sizeof err);
    if (rc == 0) {
        st_close(&f);
        fail_msg("accepted a bad file; expected an error containing '%s'", want);
    }
    if (strstr(err, path) == NULL || strstr(err, want) == NULL || strchr(err, '\n') != NULL)
        fail_msg("message '%s' should name %s and contain '%s' on one line", err, path, want);
}

#define ONE "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"

static void too_short(void **s) {
    (void)s;
    FILE *f = fopen(path, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    expect_error("too short");
}
static void header_past_end(void **s) {
    (void)s;
    write_raw(1000, "{}", NULL, 0);
    expect_error("past the end of the file");
}
static void header_above_cap(void **s) {
    (void)s;
    write_raw((uint64_t)ST_MAX_HEADER + 1, "{}", NULL, 0);
    expect_error("above the cap");
}
static void invalid_json(void **s) {
    (void)s;
    write_file("{\"t\":", 0);
    expect_error("not valid JSON");
}
static void newline_in_json_error(void **s) { /* jansson quotes the header: its newline must not split the line */
    (void)s;
    write_file("{\"t\": {\"dtype\": \"F32\", \"d\\\n\": 1}}", 0);
    expect_error("not valid JSON");
}
static void not_an_object(void **s) {
    (void)s;
    write_file("[1,2]", 0);
    expect_error("not a JSON object");
}
static void invalid_utf8(void **s) {
    (void)s;
    write_file("{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0);
    expect_error("not valid JSON");
}
static void unknown_dtype(void **s) {
    (void)s;
    write_file("{\"t\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_error("unsupported dtype 'Q7'");
}
static void size_mismatch(void **s) {
    (void)s;
    write_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
    expect_error("tensor 't': F32 of shape with 3 elements needs 12 bytes");
}
static void size_mismatch_one_element(void **s) { /* and the counts in the message read right */
    (void)s;
    write_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8);
    expect_error("tensor 't': F32 of shape with 1 element needs 4 bytes, offsets span 8");
}
static void negative_dim(void **s) {
    (void)s;
    write_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8);
    expect_error("tensor 't': shape[0] is not a non-negative integer");
}
static void fractional_dim(void **s) {
    (void)s;
    write_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8);
    expect_error("shape[0] is not a non-negative integer");
}
static void overflowing_dims(void **s) {
    (void)s;
    write_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,8]}}", 8);
    expect_error("overflows");
}
static void huge_dim_literal(void **s) {
    (void)s;
    write_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999999],\"data_offsets\":[0,8]}}", 8);
    expect_error("not valid JSON");
}
static void offsets_reversed(void **s) {
    (void)s;
    write_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8);
    expect_error("reversed");
}
static void offsets_past_data(void **s) {
    (void)s;
    write_file(ONE, 4);
    expect_error("past the 4 bytes of data");
}
static void offsets_overlap(void **s) {
    (void)s;
    write_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12);
    expect_error("overlap");
}
static void offsets_hole(void **s) {
    (void)s;
    write_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               12);
    expect_error("tensor 'b': data_offsets begin at 8, leaving a hole");
}
static void trailing_bytes(void **s) {
    (void)s;
    write_file(ONE, 12);
    expect_error("cover 8 bytes of data but the file holds 12");
}
static void duplicate_names(void **s) {
    (void)s;
    write_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8);
    expect_error("duplicate");
}
static void truncated_data(void **s) {
    (void)s;
    write_file("{\"t\":{\"dtype\":\"F64\",\"shape\":[100],\"data_offsets\":[0,800]}}", 100);
    expect_error("tensor 't': data_offsets end 800 is past the 100 bytes of data");
}
static void metadata_not_strings(void **s) {
    (void)s;
    write_file("{\"__metadata__\":{\"B\":2}}", 0);
    expect_error("__metadata__ 'B' is not a string");
}
static void unexpected_key(void **s) {
    (void)s;
    write_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", 8);
    expect_error("unexpected key 'extra'");
}

/* The writer's output reads back, padded header and all, and leaves no temporary file. */
static void round_trip(void **s) {
    (void)s;
    const float v32[3] = {1.5f, -2.0f, 3.25f};
    const uint16_t vb[2] = {st_f32_to_bf16(1.0f), st_f32_to_bf16(-0.5f)};
    const uint16_t vh[2] = {st_f32_to_f16(65504.0f), st_f32_to_f16(0x1p-24f)};
    st_out out[3] = {{"f32", ST_F32, 1, {3}, v32}, {"bf16", ST_BF16, 2, {1, 2}, vb}, {"f16", ST_F16, 1, {2}, vh}};
    const char *k[] = {"format"}, *v[] = {"x"};
    char err[512];
    assert_int_equal(st_write(path, out, 3, k, v, 1, err, sizeof err), 0);
    st_file f;
    if (st_open(&f, path, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(f.data_start % 8, 0);
    assert_string_equal(st_meta(&f, "format"), "x");
    double d[3];
    st_to_f64(&f, st_find(&f, "f32"), d);
    assert_true(d[0] == 1.5 && d[1] == -2.0 && d[2] == 3.25);
    st_to_f64(&f, st_find(&f, "bf16"), d);
    assert_true(d[0] == 1.0 && d[1] == -0.5);
    st_to_f64(&f, st_find(&f, "f16"), d);
    assert_true(d[0] == 65504.0 && d[1] == 0x1p-24);
    assert_int_equal(st_find(&f, "bf16")->ndim, 2);
    st_close(&f);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", dir);
    assert_int_not_equal(system(cmd), 0);
}

/* A write that cannot complete leaves nothing behind. */
static void failed_write_leaves_nothing(void **s) {
    (void)s;
    char bad[300], err[512];
    snprintf(bad, sizeof bad, "%s/no-such-dir/out.safetensors", dir);
    const float v = 1;
    st_out out[1] = {{"t", ST_F32, 1, {1}, &v}};
    assert_int_not_equal(st_write(bad, out, 1, NULL, NULL, 0, err, sizeof err), 0);
    assert_non_null(strstr(err, bad));
    assert_int_not_equal(access(bad, F_OK), 0);
}

int main(void) {
    if (mkdtemp(dir) == NULL) return 1;
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(too_short),
        cmocka_unit_test(header_past_end),
        cmocka_unit_test(header_above_cap),
        cmocka_unit_test(invalid_json),
        cmocka_unit_test(newline_in_json_error),
        cmocka_unit_test(not_an_object),
        cmocka_unit_test(invalid_utf8),
        cmocka_unit_test(unknown_dtype),
        cmocka_unit_test(size_mismatch),
        cmocka_unit_test(size_mismatch_one_element),
        cmocka_unit_test(negative_dim),
        cmocka_unit_test(fractional_dim),
        cmocka_unit_test(overflowing_dims),
        cmocka_unit_test(huge_dim_literal),
        cmocka_unit_test(offsets_reversed),
        cmocka_unit_test(offsets_past_data),
        cmocka_unit_test(offsets_overlap),
        cmocka_unit_test(offsets_hole),
        cmocka_unit_test(trailing_bytes),
        cmocka_unit_test(duplicate_names),
        cmocka_unit_test(truncated_data),
        cmocka_unit_test(metadata_not_strings),
        cmocka_unit_test(unexpected_key),
        cmocka_unit_test(round_trip),
        cmocka_unit_test(failed_write_leaves_nothing),
    };
    int rc = cmocka_run_group_tests_name("safetensors reader and writer", tests, NULL, NULL);
    unlink(path);
    rmdir(dir);
    return rc;
}
