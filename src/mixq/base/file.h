// Whole-file reads for small inputs (text, JSON, tokenizer files); weights are mmapped instead.
#pragma once

#include <string>

namespace mixq {

// The bytes of `path`; throws mixq::Error naming the file if it cannot be read.
std::string ReadFileToString(const std::string& path);

// The first `n` bytes of `path` (fewer if the file is shorter): enough to tell formats apart by magic.
std::string ReadFileHead(const std::string& path, size_t n);

}  // namespace mixq
