// Launching test programs under mpirun, for the data-parallel tests.
#pragma once
#include <string>

namespace diffuse::test {

// The command prefix that runs `np` processes under the MPI found at configure time (empty when
// built without MPI). Set for OpenMPI as it needs it here: root allowed (containers), more
// processes than cores, no core binding (tests run side by side), no single-copy transport
// (often barred in containers), one thread per process, and a time limit; other MPIs ignore
// the OMPI_ variables.
inline std::string mpirun(int np) {
#ifdef DIFFUSE_MPIEXEC
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
         "OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none "
         "OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1 timeout 120 " +
         std::string(DIFFUSE_MPIEXEC) + " -n " + std::to_string(np) + " ";
#else
  (void)np;
  return "";
#endif
}

}  // namespace diffuse::test
