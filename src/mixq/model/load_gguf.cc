// PLACEHOLDER: replaced by the GGUF loader.
#include "mixq/base/error.h"
#include "mixq/model/model.h"
namespace mixq {
Model LoadGgufModel(const std::string& path, const LoadOptions&) { Fail("'{}': GGUF loading is not built yet", path); }
}  // namespace mixq
