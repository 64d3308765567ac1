// Torch binding of the CUDA warp_features kernels: checks, dtype dispatch, device guard, stream,
// workspace. Includes only c10/cuda stream and guard headers.
#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>
#include <vector>

#include "ops/cuda/binding.h"
#include "ops/cuda/warp_features_kernel.h"
#include "ops/dense_motion.h"
#include "ops/register.h"
#include "ops/warp_features.h"

namespace fastmotion {
namespace {

WarpFeatureMap describe(const at::Tensor& f) {
  WarpFeatureMap m{};
  m.feature = f.const_data_ptr();
  m.C = f.size(1), m.H = f.size(2), m.W = f.size(3);
  m.sn = f.stride(0), m.sc = f.stride(1), m.sh = f.stride(2), m.sw = f.stride(3);
  return m;
}

std::vector<at::Tensor> warp_features_forward_cuda_op(at::TensorList features, const at::Tensor& grid_in,
                                                      int64_t mode) {
  const bool nearest = check_warp_features_forward(features, grid_in, mode);
  std::vector<at::Tensor> outs;
  if (features.empty()) return outs;
  TORCH_CHECK(grid_in.is_cuda(), "warp_features (cuda): grid must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(grid_in.device());
  const at::Tensor grid = grid_in.contiguous();
  const int64_t N = grid.size(0), h = grid.size(1), w = grid.size(2);
  std::vector<WarpFeatureMap> maps;
  for (const at::Tensor& f : features) {
    at::Tensor out = at::empty({N, f.size(1), f.size(2), f.size(3)}, f.options());
    WarpFeatureMap m = describe(f);
    m.out = out.mutable_data_ptr();
    maps.push_back(m);
    outs.push_back(out);
  }
  const cudaStream_t stream = stream_of(grid);
  dispatch_cuda_float(features[0].scalar_type(), "warp_features_forward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = acc_type_t<scalar_t>;
    check_cuda(warp_features_forward_cuda<scalar_t>(maps.data(), static_cast<int>(maps.size()),
                                                    static_cast<const acc_t*>(grid.const_data_ptr()), N, h, w, nearest,
                                                    stream),
               "warp_features_forward");
  });
  return outs;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> warp_features_backward_cuda_op(at::TensorList grad_outs,
                                                                               at::TensorList features,
                                                                               const at::Tensor& grid_in,
                                                                               int64_t mode,
                                                                               bool features_requires_grad,
                                                                               bool grid_requires_grad) {
  const bool nearest = check_warp_features_backward(grad_outs, features, grid_in, mode);
  TORCH_CHECK(grid_in.is_cuda(), "warp_features_backward (cuda): grid must be a CUDA tensor");
  if (features_requires_grad) {
    // the feature gradients are scattered with float atomics (see grid_sample_cuda.cpp)
    at::globalContext().alertNotDeterministic("fastmotion::warp_features_backward (cuda backend; backend='triton' "
                                              "is deterministic in this mode)");
  }
  const c10::cuda::CUDAGuard guard(grid_in.device());
  const at::Tensor grid = grid_in.contiguous();
  const int64_t N = grid.size(0), h = grid.size(1), w = grid.size(2);
  std::vector<at::Tensor> grad_features, keep;
  std::vector<WarpFeatureMap> maps;
  for (size_t i = 0; i < features.size(); ++i) {
    const at::Tensor& f = features[i];
    const at::Tensor g = grad_outs[i].contiguous();
    keep.push_back(g);
    WarpFeatureMap m = describe(f);
    m.grad = g.const_data_ptr();
    if (features_requires_grad) {
      at::Tensor gf = at::empty({N, f.size(1), f.size(2), f.size(3)}, f.options());
      m.out = gf.mutable_data_ptr();
      grad_features.push_back(gf);
    }
    maps.push_back(m);
  }
  at::Tensor grad_grid = grid_requires_grad ? at::empty({N, h, w, 2}, grid.options()) : at::empty({0}, grid.options());
  if (features.empty() && !grid_requires_grad) return {grad_features, grad_grid};
  const cudaStream_t stream = stream_of(grid);
  const at::ScalarType st = features.empty() ? grid.scalar_type() : features[0].scalar_type();
  dispatch_cuda_float(st, "warp_features_backward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = acc_type_t<scalar_t>;
    const size_t bytes = warp_features_backward_workspace(maps.data(), static_cast<int>(maps.size()), N,
                                                          features_requires_grad, grid_requires_grad,
                                                          sizeof(scalar_t), sizeof(acc_t));
    const at::Tensor ws = at::empty({static_cast<int64_t>(bytes > 0 ? bytes : 1)}, grid.options().dtype(at::kByte));
    check_cuda(warp_features_backward_cuda<scalar_t>(
                   maps.data(), static_cast<int>(maps.size()), static_cast<const acc_t*>(grid.const_data_ptr()), N, h,
                   w, nearest, grid_requires_grad ? static_cast<acc_t*>(grad_grid.mutable_data_ptr()) : nullptr,
                   const_cast<void*>(ws.const_data_ptr()), stream),
               "warp_features_backward");
  });
  return {grad_features, grad_grid};
}

}  // namespace
}  // namespace fastmotion

FASTMOTION_REGISTER_CUDA(warp_features, fastmotion::warp_features_forward_cuda_op,
                         fastmotion::warp_features_backward_cuda_op)
