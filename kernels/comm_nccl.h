// The nccl backend (device buffers). One rank per process and GPU; the
// ncclUniqueId is made by rank 0 (comm_nccl_unique_id) and shared however
// the launcher can (tpmlp-cuda broadcasts it over MPI), so the same binary
// runs on one node or many.
#ifndef TPMLP_COMM_NCCL_H
#define TPMLP_COMM_NCCL_H

#include <stddef.h>
#include <string.h>

#include "comm.h"

#define COMM_NCCL_ID_BYTES 128 /* sizeof(ncclUniqueId) */

int comm_nccl_unique_id(void *out, size_t len);
/* cudaSetDevice(device), then ncclCommInitRank. 0 or -1 (one line printed). */
int comm_nccl_create(tpmlp_comm *c, const void *unique_id, int rank, int size, int device);

#endif
