// Python module eoflow_fast._C. The ops themselves are registered by each csrc/<op>.cpp with
// TORCH_LIBRARY_FRAGMENT(eoflow_fast_cpp, m); importing this module loads them into
// torch.ops.eoflow_fast_cpp.
#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "eoflow_fast C++ CPU kernels (registered under torch.ops.eoflow_fast_cpp)";
}
