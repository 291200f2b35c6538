/* scripts/first-touch.c: how much a first touch of memory costs on this machine.
 *
 *   cc -O2 -o /tmp/first-touch scripts/first-touch.c && /tmp/first-touch 4
 *
 * Maps GIB GiB of anonymous memory and memcpys 1 MiB blocks over all of it three times,
 * printing seconds per GiB for each pass. Pass 0 pays the page faults (and, on a VM whose
 * host takes freed guest memory back, e.g. with free page reporting, the host's faults);
 * passes 1 and 2 are plain copies. Used in docs/BENCHMARKS.md ("Produce at the disk's
 * speed on this VM") to explain the buffered page-cache copy's cost. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 2 || atol(argv[1]) <= 0) {
        fprintf(stderr, "usage: %s GIB\n", argv[0]);
        return 2;
    }
    size_t gib = (size_t)atol(argv[1]), n = gib << 30, block = 1 << 20;
    char *src = malloc(block);
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (src == NULL || p == MAP_FAILED) {
        perror("allocation");
        return 1;
    }
    memset(src, 7, block);
    for (int pass = 0; pass < 3; pass++) {
        double t = now();
        for (size_t o = 0; o < n; o += block)
            memcpy(p + o, src, block);
        printf("pass %d: %.2f s/GiB\n", pass, (now() - t) / gib);
    }
    munmap(p, n);
    free(src);
    return 0;
}
