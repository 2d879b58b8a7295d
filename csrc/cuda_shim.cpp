// tch-cifar10's CUDA shim: a C API over the parts of libtorch's C++ API that tch 0.24 does not
// expose — CUDA graphs (`at::cuda::CUDAGraph`, the graph memory pool), CUDA streams (a side
// stream from libtorch's pool, the current stream, a stream guard, one stream waiting on
// another), device synchronisation, the caching allocator's `empty_cache`, and the cuDNN and
// determinism switches of `at::globalContext()`.
//
// Built by build.rs as its own shared library (`libtch_cifar10_cuda.so`) only where libtorch's
// CUDA library and the CUDA headers are present, and `dlopen`ed by src/cuda_graph.rs only after
// `libtorch_cuda.so` is loaded, so CPU hosts never map it. The Rust side is the only caller.
//
// Conventions, for every `tcc_*` function:
// * It returns NULL on success, or an error message allocated with malloc that the caller frees
//   with `tcc_free_error`. No C++ exception ever crosses this boundary.
// * Results come back through out-pointers, written only on success.
// * Handles are opaque pointers made by a `*_new`/`*_enter` function and released by the
//   matching `*_delete`/`*_exit` (which never fail).
// Only what tch-cifar10 needs, the way PyTorch's `torch.cuda.graph` and `torch.cuda.Stream` use
// the same C++ API (torch/cuda/graphs.py, torch/csrc/cuda/Graph.cpp, torch/csrc/cuda/Stream.cpp).

#include <ATen/Context.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/Event.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#define TCC_API extern "C" __attribute__((visibility("default")))

// Bumped whenever a signature below changes; src/cuda_graph.rs refuses another version.
static const int32_t TCC_ABI_VERSION = 1;

namespace {

char* copy_message(const char* what) {
  size_t n = std::strlen(what);
  char* out = static_cast<char*>(std::malloc(n + 1));
  if (out != nullptr) {
    std::memcpy(out, what, n + 1);
  }
  return out;
}

// Runs `f`, turning any exception into a malloc'd message. c10::Error's what() carries a C++
// backtrace; what_without_backtrace() is the message a user can read.
template <typename F>
char* guarded(F&& f) noexcept {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy_message(e.what());
  } catch (...) {
    return copy_message("unknown C++ exception");
  }
}

char* null_argument(const char* what) {
  return copy_message((std::string(what) + " is null").c_str());
}

}  // namespace

struct TccStream {
  c10::cuda::CUDAStream stream;
};

struct TccStreamGuard {
  c10::cuda::CUDAStreamGuard guard;
};

struct TccGraph {
  at::cuda::CUDAGraph graph;
};

TCC_API int32_t tcc_abi_version() {
  return TCC_ABI_VERSION;
}

TCC_API void tcc_free_error(char* error) {
  std::free(error);
}

// ---- device -------------------------------------------------------------------------------

// `torch.cuda.synchronize()`: waits for all work on the current CUDA device.
TCC_API char* tcc_device_synchronize() {
  return guarded([] { c10::cuda::device_synchronize(); });
}

// `torch.cuda.empty_cache()`: returns the caching allocator's unused cached blocks.
TCC_API char* tcc_empty_cache() {
  return guarded([] { c10::cuda::CUDACachingAllocator::emptyCache(); });
}

// ---- streams ------------------------------------------------------------------------------

// `torch.cuda.Stream(device)`: a (normal-priority) stream from libtorch's per-device pool.
TCC_API char* tcc_stream_from_pool(int32_t device, TccStream** out) {
  if (out == nullptr) return null_argument("out");
  return guarded([&] {
    auto s = c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device));
    *out = new TccStream{s};
  });
}

// `torch.cuda.current_stream(device)`.
TCC_API char* tcc_stream_current(int32_t device, TccStream** out) {
  if (out == nullptr) return null_argument("out");
  return guarded([&] {
    auto s = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device));
    *out = new TccStream{s};
  });
}

TCC_API void tcc_stream_delete(TccStream* stream) {
  delete stream;
}

// Whether `stream` is its device's legacy default stream (CUDA graphs cannot be captured there).
TCC_API char* tcc_stream_is_default(const TccStream* stream, int32_t* out) {
  if (stream == nullptr) return null_argument("stream");
  if (out == nullptr) return null_argument("out");
  return guarded([&] {
    *out = stream->stream == c10::cuda::getDefaultCUDAStream(stream->stream.device_index()) ? 1 : 0;
  });
}

// `waiter.wait_stream(waited)`: work queued on `waiter` from now on waits for the work already
// queued on `waited` (an event recorded on `waited`, blocked on by `waiter`; the host does not
// wait).
TCC_API char* tcc_stream_wait_stream(const TccStream* waiter, const TccStream* waited) {
  if (waiter == nullptr) return null_argument("waiter");
  if (waited == nullptr) return null_argument("waited");
  return guarded([&] {
    c10::Event event(c10::DeviceType::CUDA);
    event.record(waited->stream.unwrap());
    event.block(waiter->stream.unwrap());
  });
}

// `torch.cuda.stream(s).__enter__()`: makes `stream` (and its device) current on this thread
// until `tcc_stream_exit`. Guards must be exited in the reverse order, on the same thread.
TCC_API char* tcc_stream_enter(const TccStream* stream, TccStreamGuard** out) {
  if (stream == nullptr) return null_argument("stream");
  if (out == nullptr) return null_argument("out");
  return guarded([&] { *out = new TccStreamGuard{c10::cuda::CUDAStreamGuard(stream->stream.unwrap())}; });
}

// Restores the stream and device that were current before `tcc_stream_enter`.
TCC_API void tcc_stream_exit(TccStreamGuard* guard) {
  try {
    delete guard;
  } catch (...) {
    // A guard's destructor does not throw in practice; never let it cross the boundary.
  }
}

// ---- CUDA graphs --------------------------------------------------------------------------

// `torch.cuda.graph_pool_handle()`: a fresh memory-pool id to share between graphs.
TCC_API char* tcc_graph_pool_handle(uint64_t* first, uint64_t* second) {
  if (first == nullptr || second == nullptr) return null_argument("out");
  return guarded([&] {
    auto id = at::cuda::graph_pool_handle();
    *first = id.first;
    *second = id.second;
  });
}

// `torch.cuda.CUDAGraph()` (keep_graph=False).
TCC_API char* tcc_graph_new(TccGraph** out) {
  if (out == nullptr) return null_argument("out");
  return guarded([&] { *out = new TccGraph{}; });
}

TCC_API void tcc_graph_delete(TccGraph* graph) {
  try {
    delete graph;
  } catch (...) {
    // ~CUDAGraph only warns; never let anything cross the boundary.
  }
}

// `graph.capture_begin(pool)`: starts capturing the work queued on the current stream (which
// must not be the default stream) in global capture mode. `pool` {0, 0} gives the graph its own
// private memory pool; another graph's `pool()` or a `graph_pool_handle()` shares that pool.
TCC_API char* tcc_graph_capture_begin(TccGraph* graph, uint64_t pool_first, uint64_t pool_second) {
  if (graph == nullptr) return null_argument("graph");
  return guarded([&] {
    at::cuda::MempoolId_t pool{static_cast<at::cuda::CaptureId_t>(pool_first), static_cast<at::cuda::CaptureId_t>(pool_second)};
    graph->graph.capture_begin(pool, cudaStreamCaptureModeGlobal);
  });
}

// `graph.capture_end()`: ends the capture and instantiates the graph.
TCC_API char* tcc_graph_capture_end(TccGraph* graph) {
  if (graph == nullptr) return null_argument("graph");
  return guarded([&] { graph->graph.capture_end(); });
}

// `graph.replay()`: launches the captured work on the current stream.
TCC_API char* tcc_graph_replay(TccGraph* graph) {
  if (graph == nullptr) return null_argument("graph");
  return guarded([&] { graph->graph.replay(); });
}

// `graph.reset()`: frees the graph and its hold on the memory pool; it can capture again.
TCC_API char* tcc_graph_reset(TccGraph* graph) {
  if (graph == nullptr) return null_argument("graph");
  return guarded([&] { graph->graph.reset(); });
}

// `graph.pool()`: this graph's memory-pool id, to share it with a later capture.
TCC_API char* tcc_graph_pool(TccGraph* graph, uint64_t* first, uint64_t* second) {
  if (graph == nullptr) return null_argument("graph");
  if (first == nullptr || second == nullptr) return null_argument("out");
  return guarded([&] {
    auto id = graph->graph.pool();
    *first = id.first;
    *second = id.second;
  });
}

// ---- cuDNN and determinism ----------------------------------------------------------------

// `torch.backends.cudnn.deterministic = on`.
TCC_API char* tcc_set_cudnn_deterministic(int32_t on) {
  return guarded([&] { at::globalContext().setDeterministicCuDNN(on != 0); });
}

TCC_API char* tcc_cudnn_deterministic(int32_t* out) {
  if (out == nullptr) return null_argument("out");
  return guarded([&] { *out = at::globalContext().deterministicCuDNN() ? 1 : 0; });
}

// `torch.backends.cudnn.benchmark = on`.
TCC_API char* tcc_set_cudnn_benchmark(int32_t on) {
  return guarded([&] { at::globalContext().setBenchmarkCuDNN(on != 0); });
}

TCC_API char* tcc_cudnn_benchmark(int32_t* out) {
  if (out == nullptr) return null_argument("out");
  return guarded([&] { *out = at::globalContext().benchmarkCuDNN() ? 1 : 0; });
}

// `torch.use_deterministic_algorithms(on, warn_only=warn_only)`.
TCC_API char* tcc_set_deterministic_algorithms(int32_t on, int32_t warn_only) {
  return guarded([&] { at::globalContext().setDeterministicAlgorithms(on != 0, warn_only != 0); });
}

TCC_API char* tcc_deterministic_algorithms(int32_t* out) {
  if (out == nullptr) return null_argument("out");
  return guarded([&] { *out = at::globalContext().deterministicAlgorithms() ? 1 : 0; });
}
