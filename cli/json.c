#include "config.h"

#include "json.h"

#include <math.h>
#include <stdio.h>

void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

void json_num(double v) {
    if (isfinite(v))
        printf("%.9g", v);
    else
        printf("null");
}

void json_dims(const uint64_t *shape, int ndim) {
    putchar('[');
    for (int k = 0; k < ndim; k++) printf("%s%llu", k ? ", " : "", (unsigned long long)shape[k]);
    putchar(']');
}
