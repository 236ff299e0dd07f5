/* Helpers shared by the MPI-based backends (mpi, ring). */
#ifndef TPMLP_COMM_MPI_H
#define TPMLP_COMM_MPI_H

#include <mpi.h>
#include <stddef.h>

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* rc from an MPI call: 0 if MPI_SUCCESS, else one line on stderr and MPI_Abort. */
int comm_mpi_check(int rc, const char *backend, const char *what);
/* n must fit MPI's int count; else one line and MPI_Abort. */
int comm_mpi_count(size_t n, const char *backend, const char *what);
MPI_Datatype comm_mpi_type(comm_dtype t);
int comm_mpi_barrier(tpmlp_comm *c);

#ifdef __cplusplus
}
#endif

#endif
