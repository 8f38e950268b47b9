// Memory bandwidth probes: the bound that decode speed (streaming every weight once per token) is held to.
#pragma once

#include <cstddef>

namespace mixq {

// Read bandwidth in GB/s (1e9 bytes per second): all threads (mixq::ThreadCount()) OR together the
// words of disjoint parts of a `bytes` buffer with SIMD loads, best of `reps` passes. This is the bound
// for decode, which reads each weight once per token and writes almost nothing. `bytes` should be far
// larger than the caches (the default 1 GiB is); smaller buffers measure cache bandwidth instead.
double MeasureReadBandwidthGBs(size_t bytes = size_t{1} << 30, int reps = 5);

// Seconds one read pass over `data` takes when all threads read disjoint parts of it as
// MeasureReadBandwidthGBs does (its bytes rounded down to a multiple of 256): that probe's loop over a
// caller's buffer, so a kernel's streaming rate can be set against a plain read of the same bytes
// (bench/decode_stream_bench.cc, `mixq bench --token-bound`). Integer ORs: any bytes read alike.
double TimeReadPass(const void* data, size_t bytes);

// Copy bandwidth in GB/s counting bytes read plus bytes written (2 * bytes per pass, as STREAM's
// "copy" counts them): all threads memcpy disjoint parts of a `bytes` source into a `bytes`
// destination, best of `reps` passes.
double MeasureCopyBandwidthGBs(size_t bytes = size_t{1} << 30, int reps = 5);

}  // namespace mixq
