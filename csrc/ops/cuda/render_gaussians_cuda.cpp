// Torch binding of the CUDA Gaussian-heatmap kernels: checks, dtype dispatch, device guard, stream.
// Includes only c10/cuda stream and guard headers (no cuBLAS/cuSPARSE), so it builds against any
// CUDA build of torch.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>

#include "fastmotion/render_gaussians.h"
#include "ops/cuda/binding.h"
#include "ops/cuda/render_gaussians_kernel.h"
#include "ops/register.h"
#include "ops/render_gaussians.h"

namespace fastmotion {
namespace {


template <typename scalar_t>
GaussianKeypoints<scalar_t> keypoints_of(const at::Tensor& mean, const at::Tensor& var, int lead) {
  GaussianKeypoints<scalar_t> kp;
  if (!mean.defined()) return kp;
  kp.mean = static_cast<const scalar_t*>(mean.const_data_ptr());
  const LeadStrides ms = lead_strides(mean, lead);
  kp.m_sa = ms.a;
  kp.m_sb = ms.b;
  if (var.defined()) {
    kp.var = static_cast<const scalar_t*>(var.const_data_ptr());
    const LeadStrides vs = lead_strides(var, lead);
    kp.v_sa = vs.a;
    kp.v_sb = vs.b;
  }
  return kp;
}

GaussianDims dims_of(const GaussianShape& s, double fixed_var, double norm_const, bool norm_sum, bool background) {
  GaussianDims d;
  d.A = s.A;
  d.B = s.B;
  d.K = s.K;
  d.H = s.H;
  d.W = s.W;
  d.mode = s.mode;
  d.has_source = s.has_source;
  d.background = background;
  d.norm_sum = norm_sum;
  d.fixed_var = fixed_var;
  d.norm_const = norm_sum ? 1.0 : norm_const;
  return d;
}

at::Tensor render_gaussians_forward_cuda_op(const at::Tensor& mean_d, const c10::optional<at::Tensor>& var_d,
                                            const c10::optional<at::Tensor>& mean_s,
                                            const c10::optional<at::Tensor>& var_s, double fixed_var, int64_t height,
                                            int64_t width, double norm_const, bool norm_sum, bool background) {
  const GaussianShape s = check_gaussian_forward(mean_d, var_d, mean_s, var_s, fixed_var, height, width, norm_const,
                                                 norm_sum, background);
  TORCH_CHECK(mean_d.is_cuda(), "render_gaussians_forward (cuda): tensors must be CUDA tensors");
  const c10::cuda::CUDAGuard guard(mean_d.device());
  const GaussianInputs p = prepare_gaussian_inputs(mean_d, var_d, mean_s, var_s, s.lead);
  at::Tensor out = at::empty(lead_sizes(mean_d, s.lead, {s.C, s.H, s.W}), mean_d.options());
  if (out.numel() == 0) return out;
  const GaussianDims d = dims_of(s, fixed_var, norm_const, norm_sum, background);
  const cudaStream_t stream = stream_of(mean_d);
  dispatch_cuda_float(mean_d.scalar_type(), "render_gaussians_forward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    check_cuda(render_gaussians_forward_cuda<scalar_t>(keypoints_of<scalar_t>(p.mean_d, p.var_d, s.lead),
                                                       keypoints_of<scalar_t>(p.mean_s, p.var_s, s.lead), d,
                                                       static_cast<scalar_t*>(out.mutable_data_ptr()), stream),
               "render_gaussians_forward");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> render_gaussians_backward_cuda_op(
    const at::Tensor& grad_out, const at::Tensor& mean_d, const c10::optional<at::Tensor>& var_d,
    const c10::optional<at::Tensor>& mean_s, const c10::optional<at::Tensor>& var_s, double fixed_var,
    double norm_const, bool norm_sum, bool background) {
  const GaussianShape s =
      check_gaussian_backward(grad_out, mean_d, var_d, mean_s, var_s, fixed_var, norm_const, norm_sum, background);
  TORCH_CHECK(mean_d.is_cuda(), "render_gaussians_backward (cuda): tensors must be CUDA tensors");
  const c10::cuda::CUDAGuard guard(mean_d.device());
  const GaussianInputs p = prepare_gaussian_inputs(mean_d, var_d, mean_s, var_s, s.lead);
  GaussianGrads grads = empty_gaussian_grads(mean_d, var_d, mean_s, var_s);
  at::Tensor &gmd = grads.mean_d, &gvd = grads.var_d, &gms = grads.mean_s, &gvs = grads.var_s;
  const auto opts = mean_d.options();
  if (gmd.numel() == 0) return {gmd, gvd, gms, gvs};
  const GaussianDims d = dims_of(s, fixed_var, norm_const, norm_sum, background);
  const int split = gaussian_backward_split(d, mean_d.device().index());
  const auto acc = mean_d.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor partials =
      split > 1 ? at::empty({s.A * s.B * s.K * split * kGaussianPartials}, opts.dtype(acc)) : at::Tensor();
  GaussianGradStrides gs;
  const LeadStrides gl = lead_strides(grad_out, s.lead);
  gs.s[0] = gl.a;
  gs.s[1] = gl.b;
  for (int i = 0; i < 3; ++i) gs.s[2 + i] = grad_out.stride(s.lead + i);
  const cudaStream_t stream = stream_of(mean_d);
  dispatch_cuda_float(mean_d.scalar_type(), "render_gaussians_backward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = acc_type_t<scalar_t>;
    auto ptr = [](at::Tensor& t) { return t.numel() ? static_cast<scalar_t*>(t.mutable_data_ptr()) : nullptr; };
    check_cuda(render_gaussians_backward_cuda<scalar_t>(
                   static_cast<const scalar_t*>(grad_out.const_data_ptr()), gs,
                   keypoints_of<scalar_t>(p.mean_d, p.var_d, s.lead), keypoints_of<scalar_t>(p.mean_s, p.var_s, s.lead),
                   d, split,
                   partials.defined() ? static_cast<acc_t*>(partials.mutable_data_ptr()) : nullptr, ptr(gmd),
                   ptr(gvd), ptr(gms), ptr(gvs), stream),
               "render_gaussians_backward");
  });
  return {gmd, gvd, gms, gvs};
}

}  // namespace
}  // namespace fastmotion

FASTMOTION_REGISTER_CUDA(render_gaussians, fastmotion::render_gaussians_forward_cuda_op,
                         fastmotion::render_gaussians_backward_cuda_op)
