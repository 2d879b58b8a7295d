// ATen's in-place ops with the Scalar argument that tch 0.24's generated API leaves out
// (`alpha` of `add_`, `value` of `addcmul_` and `addcdiv_`), and setting a gradient to None
// (`optimizer.zero_grad(set_to_none=True)`), so that src/recipe/optim.rs can run
// torch.optim's update rules op for op: the same ATen kernels with the same arguments give
// the same bits (ATen's vectorised `add` with `alpha` is a fused multiply-add, which no
// sequence of tch's ops reproduces). And the state of libtorch's CPU generator, which
// src/rng.rs continues in Rust (the per-sample draws of data augmentation).
//
// Each function returns nullptr on success, or a message (malloc'ed; free it with
// tcx_free) with the error libtorch raised; no exception crosses into Rust.
// A `tensor` is tch's `C_tensor*`, which is an `at::Tensor*` (torch-sys's torch_api.h).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <mutex>

#include <cstdlib>
#include <cstring>
#include <exception>

namespace {
char* message(const char* what) {
  char* m = strdup(what ? what : "unknown libtorch error");
  return m;
}
}  // namespace

#define TCX_TRY(body)                             \
  try {                                           \
    body;                                         \
    return nullptr;                               \
  } catch (const std::exception& e) {             \
    return message(e.what());                     \
  } catch (...) {                                 \
    return message("unknown C++ exception");      \
  }

extern "C" {

// self.add_(other, alpha=alpha)
char* tcx_add_(at::Tensor* self, const at::Tensor* other, double alpha) { TCX_TRY(self->add_(*other, alpha)) }

// *out = self.add(other, alpha=alpha) (a new tensor the caller owns)
char* tcx_add(at::Tensor** out, const at::Tensor* self, const at::Tensor* other, double alpha) {
  TCX_TRY(*out = new at::Tensor(self->add(*other, alpha)))
}

// self.addcmul_(tensor1, tensor2, value=value)
char* tcx_addcmul_(at::Tensor* self, const at::Tensor* t1, const at::Tensor* t2, double value) {
  TCX_TRY(self->addcmul_(*t1, *t2, value))
}

// self.addcdiv_(tensor1, tensor2, value=value)
char* tcx_addcdiv_(at::Tensor* self, const at::Tensor* t1, const at::Tensor* t2, double value) {
  TCX_TRY(self->addcdiv_(*t1, *t2, value))
}

// self.grad = None
char* tcx_set_grad_none(at::Tensor* self) { TCX_TRY(self->mutable_grad().reset()) }

// The state of libtorch's default CPU generator (`at::mt19937`): its 624 words, `left` and
// `next` (ATen/core/MT19937RNGEngine.h), read under the generator's lock.
char* tcx_cpu_generator_state(uint32_t* state, int32_t* left, uint32_t* next) {
  TCX_TRY({
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    auto data = at::check_generator<at::CPUGeneratorImpl>(gen)->engine().data();
    std::memcpy(state, data.state_.data(), sizeof(uint32_t) * data.state_.size());
    *left = data.left_;
    *next = data.next_;
  })
}

void tcx_free(char* message) { std::free(message); }

}  // extern "C"
