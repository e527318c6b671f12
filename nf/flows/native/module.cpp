// The Python module of the compiled loops (nf.flows.native): its functions, as loops.h declares them.

#include <torch/extension.h>

#include "loops.h"
#include "rows.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("conv_forward", &nf_native::conv_forward, "The convolutional flow's forward loop over blocks, on rows");
  m.def("conv_backward", &nf_native::conv_backward, "The convolutional flow's backward recursion, on rows");
  m.def("coupling_forward", &nf_native::coupling_forward, "The folded NICE flow's coupling loop, on rows");
  m.def("check_blas", &nf_native::check_blas, "Whether the BLAS products agree with at::mm (else they use it)");
  m.def("coupling_backward", &nf_native::coupling_backward, "The folded NICE flow's backward recursion, on rows");
}
