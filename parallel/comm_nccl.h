// The nccl backend (device buffers). Two ways to launch, one rank per GPU:
//  - one process per GPU: the ncclUniqueId is made by rank 0
//    (comm_nccl_unique_id) and shared however the launcher can (tpmlp-cuda
//    broadcasts it over MPI), so the same binary runs on one node or many;
//  - one process driving all local GPUs (comm_nccl_create_local), each rank
//    then used by its own thread.
// The collectives run on the backend's own stream, which does not wait for
// other streams: the caller's buffers must be complete when it calls. The
// blocking ones wait for that stream before they return; the non-blocking
// all-reduce (iallreduce, then wait) leaves it running, so a compute stream
// can go on meanwhile. float32, float64 and bf16.
#ifndef TPMLP_COMM_NCCL_H
#define TPMLP_COMM_NCCL_H

#include <stddef.h>
#include <string.h>

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define COMM_NCCL_ID_BYTES 128 /* sizeof(ncclUniqueId) */

int comm_nccl_unique_id(void *out, size_t len);
/* cudaSetDevice(device), then ncclCommInitRank. 0 or -1 (one line printed). */
int comm_nccl_create(tpmlp_comm *c, const void *unique_id, int rank, int size, int device);
/* size communicators, rank k on devices[k], made together inside
 * ncclGroupStart/End (no MPI). 0, or -1 (one line printed; any made are aborted). */
int comm_nccl_create_local(tpmlp_comm *comms, int size, const int *devices);
/* Instead of destroy, after a failure: ends the communicator at once
 * (ncclCommAbort), so that no peer waits on it. */
void comm_nccl_abort(tpmlp_comm *c);

#ifdef __cplusplus
}
#endif

#endif
