/* libFuzzer target for the safetensors reader: any bytes must give either a
 * valid file whose every tensor lies inside the buffer, or a one-line error;
 * never a crash, a leak or undefined behaviour (built with ASan + UBSan).
 *   ./configure --enable-fuzzing && make fuzz-run FUZZ_SECONDS=60 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    char err[512];
    if (st_open_buffer(&f, data, size, "fuzz-input", err, sizeof err) != 0) {
        assert(strchr(err, '\n') == NULL && strncmp(err, "fuzz-input: ", 12) == 0);
        return 0;
    }
    for (int i = 0; i < f.ntensors; i++) {
        const st_tensor *t = &f.tensors[i];
        assert(t->begin <= t->end && f.data_start + t->end <= size);
        assert(t->numel * st_dtype_size(t->dtype) == t->end - t->begin);
        if (t->numel <= 4096) { /* touch the data: converting must stay inside the buffer */
            double *out = malloc(t->numel * sizeof *out + 1);
            st_to_f64(&f, t, out);
            free(out);
        }
    }
    st_close(&f);
    return 0;
}
