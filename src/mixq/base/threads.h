// The number of worker threads the kernels use (OpenMP underneath).
#pragma once

namespace mixq {

// Sets the thread count for all later parallel work; n <= 0 means one per core.
void SetThreadCount(int n);
int ThreadCount();

}  // namespace mixq
