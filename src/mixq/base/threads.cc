// The number of worker threads the kernels use (OpenMP underneath).
#include "mixq/base/threads.h"

#include <omp.h>

namespace mixq {

void SetThreadCount(int n) { omp_set_num_threads(n > 0 ? n : omp_get_num_procs()); }

int ThreadCount() { return omp_get_max_threads(); }

}  // namespace mixq
