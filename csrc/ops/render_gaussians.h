// The Gaussian-heatmap ops: their schema and the checks and layout helpers that the CPU kernel and
// the CUDA binding share.
//
// render_gaussians_forward(mean_d, var_d?, mean_s?, var_s?, fixed_var, H, W, norm_const, norm_sum,
//                           background) -> out (A, B, K + background, H, W)
//   (the keypoints may also have one leading dim, (B, K, ...): then out is (B, K + background, H, W))
//   out[a, b, background + k] = G(driving a, b, k) / n - G(source a, b, k) / n  (no source: first term),
//   n = norm_const, or each heatmap's own sum when norm_sum; channel 0 is zeros when background.
//   Keypoints: mean (A, B, K, 2), var (A, B, K, 2, 2) covariance | (A, B, K, 1, 1) isotropic |
//   none (fixed_var); the leading strides may be 0 (a source broadcast against the driving frames).
//   render_gaussians is the call without a source, norm_const 1 and no background.
// render_gaussians_backward(grad_out, mean_d, var_d?, mean_s?, var_s?, fixed_var, norm_const,
//                            norm_sum, background) -> (grad_mean_d, grad_var_d, grad_mean_s, grad_var_s)
//   dense gradients in the keypoints' dtype; absent inputs get a (0,)-shaped tensor.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "fastmotion/var_mode.h"

namespace fastmotion {

// Registers the schema above; called once, by the CPU kernel file.
inline void define_render_gaussians_schema(torch::Library& m) {
  m.def(
      "render_gaussians_forward(Tensor mean_d, Tensor? var_d, Tensor? mean_s, Tensor? var_s, float fixed_var, "
      "int height, int width, float norm_const, bool norm_sum, bool background) -> Tensor");
  m.def(
      "render_gaussians_backward(Tensor grad_out, Tensor mean_d, Tensor? var_d, Tensor? mean_s, Tensor? var_s, "
      "float fixed_var, float norm_const, bool norm_sum, bool background) -> (Tensor, Tensor, Tensor, Tensor)");
}

// Sizes and variance mode of one call, after the checks. The keypoints have one or two leading
// dims, (B, K, ...) or (A, B, K, ...); with one, A = 1.
struct GaussianShape {
  int64_t A, B, K, C, H, W;
  int lead;  // number of leading dims: 1 or 2
  int mode;  // VarMode (fastmotion/var_mode.h)
  bool has_source;
};

// Element strides of a keypoint tensor (or grad_out) along A and B (A's is 0 with one leading dim).
struct LeadStrides {
  int64_t a, b;
};

// The keypoint tensors of one call, each made block-contiguous (keypoint_block_contiguous);
// absent ones stay undefined. Shared by the CPU and CUDA bindings.
struct GaussianInputs {
  at::Tensor mean_d, var_d, mean_s, var_s;
};

// A keypoint tensor: `dim`-D, floating.
inline void check_kp_tensor(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, "render_gaussians: ", name, " must be ", dim, "-D, got shape ", t.sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), "render_gaussians: ", name,
              " must be a floating tensor, got ", t.scalar_type());
}

// mean_d (A, B, K, 2) or (B, K, 2); var_d (..., K, 2, 2) | (..., K, 1, 1) | none (fixed_var);
// mean_s, var_s: the source keypoints with the same shapes (or both none). H, W >= 1.
inline GaussianShape check_gaussian_forward(const at::Tensor& mean_d, const c10::optional<at::Tensor>& var_d,
                                            const c10::optional<at::Tensor>& mean_s,
                                            const c10::optional<at::Tensor>& var_s, double fixed_var, int64_t H,
                                            int64_t W, double norm_const, bool norm_sum, bool background) {
  TORCH_CHECK(mean_d.dim() == 3 || mean_d.dim() == 4,
              "render_gaussians: mean_d must be (A, B, K, 2) or (B, K, 2), got shape ", mean_d.sizes());
  check_kp_tensor(mean_d, "mean_d", mean_d.dim());
  const int lead = static_cast<int>(mean_d.dim()) - 2;
  TORCH_CHECK(mean_d.size(-1) == 2, "render_gaussians: mean_d must be (..., K, 2), got ", mean_d.sizes());
  const int64_t K = mean_d.size(lead);
  GaussianShape s{lead == 2 ? mean_d.size(0) : 1, mean_d.size(lead - 1), K, K + (background ? 1 : 0), H, W, lead,
                  kVarFixed, mean_s.has_value()};
  TORCH_CHECK(H >= 1 && W >= 1, "render_gaussians: height and width must be >= 1, got ", H, "x", W);
  TORCH_CHECK(norm_sum || norm_const > 0, "render_gaussians: norm_const must be > 0, got ", norm_const);
  TORCH_CHECK(s.has_source ? var_s.has_value() == var_d.has_value() : !var_s.has_value(),
              "render_gaussians: var_s must be given exactly when a source and var_d are");
  if (var_d.has_value()) {
    check_kp_tensor(*var_d, "var_d", mean_d.dim() + 1);
    const int64_t c = var_d->size(-1);
    TORCH_CHECK((c == 1 || c == 2) && var_d->size(-2) == c && var_d->sizes().slice(0, lead + 1) ==
                                                                  mean_d.sizes().slice(0, lead + 1),
                "render_gaussians: var_d must be mean_d's ", mean_d.sizes().slice(0, lead + 1),
                " followed by (2, 2) or (1, 1), got ", var_d->sizes());
    TORCH_CHECK(var_d->scalar_type() == mean_d.scalar_type(), "render_gaussians: var_d dtype ",
                var_d->scalar_type(), " differs from mean_d dtype ", mean_d.scalar_type());
    s.mode = c == 2 ? kVarMatrix : kVarSingle;
  } else {
    TORCH_CHECK(fixed_var > 0, "render_gaussians: fixed_var must be > 0 when no variance tensor is given, got ",
                fixed_var);
  }
  if (s.has_source) {
    check_kp_tensor(*mean_s, "mean_s", mean_d.dim());
    TORCH_CHECK(mean_s->sizes() == mean_d.sizes(), "render_gaussians: mean_s must have mean_d's shape ",
                mean_d.sizes(), " (expand it), got ", mean_s->sizes());
    TORCH_CHECK(mean_s->scalar_type() == mean_d.scalar_type(), "render_gaussians: mean_s dtype ",
                mean_s->scalar_type(), " differs from mean_d dtype ", mean_d.scalar_type());
    if (var_s.has_value()) {
      check_kp_tensor(*var_s, "var_s", mean_d.dim() + 1);
      TORCH_CHECK(var_s->sizes() == var_d->sizes(), "render_gaussians: var_s must have var_d's shape ",
                  var_d->sizes(), ", got ", var_s->sizes());
      TORCH_CHECK(var_s->scalar_type() == mean_d.scalar_type(), "render_gaussians: var_s dtype ",
                  var_s->scalar_type(), " differs from mean_d dtype ", mean_d.scalar_type());
    }
  }
  for (const at::Tensor* t : {&mean_d, mean_s ? &*mean_s : nullptr, var_d ? &*var_d : nullptr,
                              var_s ? &*var_s : nullptr}) {
    if (t != nullptr) {
      TORCH_CHECK(t->device() == mean_d.device(), "render_gaussians: all keypoint tensors must be on ",
                  mean_d.device(), ", got ", t->device());
    }
  }
  return s;
}

// As above, plus grad_out (A, B, K + background, H, W) or (B, K + background, H, W) (any strides).
inline GaussianShape check_gaussian_backward(const at::Tensor& grad_out, const at::Tensor& mean_d,
                                             const c10::optional<at::Tensor>& var_d,
                                             const c10::optional<at::Tensor>& mean_s,
                                             const c10::optional<at::Tensor>& var_s, double fixed_var,
                                             double norm_const, bool norm_sum, bool background) {
  TORCH_CHECK(grad_out.dim() == mean_d.dim() + 1,
              "render_gaussians_backward: grad_out must be (..., C, H, W) with mean_d's leading dims, got ",
              grad_out.sizes(), " for mean_d ", mean_d.sizes());
  const GaussianShape s = check_gaussian_forward(mean_d, var_d, mean_s, var_s, fixed_var, grad_out.size(-2),
                                                 grad_out.size(-1), norm_const, norm_sum, background);
  TORCH_CHECK(grad_out.sizes().slice(0, s.lead) == mean_d.sizes().slice(0, s.lead) &&
                  grad_out.size(s.lead) == s.C,
              "render_gaussians_backward: grad_out must be ", mean_d.sizes().slice(0, s.lead), " + (", s.C,
              ", H, W), got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == mean_d.scalar_type(), "render_gaussians_backward: grad_out dtype ",
              grad_out.scalar_type(), " differs from the keypoints' ", mean_d.scalar_type());
  TORCH_CHECK(grad_out.device() == mean_d.device(), "render_gaussians_backward: grad_out must be on ",
              mean_d.device());
  return s;
}

// Element strides of t along A and B (see LeadStrides).
inline LeadStrides lead_strides(const at::Tensor& t, int lead) {
  return lead == 2 ? LeadStrides{t.stride(0), t.stride(1)} : LeadStrides{0, t.stride(0)};
}

// Sizes of an output with the keypoints' leading dims followed by `rest`.
inline std::vector<int64_t> lead_sizes(const at::Tensor& mean, int lead, std::initializer_list<int64_t> rest) {
  std::vector<int64_t> sizes(mean.sizes().begin(), mean.sizes().begin() + lead);
  sizes.insert(sizes.end(), rest.begin(), rest.end());
  return sizes;
}

// The kernels index keypoint tensors as base + a * sa + b * sb + k * block + i, so the dims after
// the `lead` leading ones must form one contiguous block; leading strides may be anything (0 for
// broadcast). Returns t itself when it already does, else a contiguous copy.
inline at::Tensor keypoint_block_contiguous(const at::Tensor& t, int lead) {
  int64_t expected = 1;
  for (int64_t d = t.dim() - 1; d >= lead; --d) {
    if (t.size(d) != 1 && t.stride(d) != expected) return t.contiguous();
    expected *= t.size(d);
  }
  return t;
}

// The keypoint tensors of one call made block-contiguous (see GaussianInputs).
inline GaussianInputs prepare_gaussian_inputs(const at::Tensor& mean_d, const c10::optional<at::Tensor>& var_d,
                                              const c10::optional<at::Tensor>& mean_s,
                                              const c10::optional<at::Tensor>& var_s, int lead) {
  GaussianInputs in;
  in.mean_d = keypoint_block_contiguous(mean_d, lead);
  if (var_d) in.var_d = keypoint_block_contiguous(*var_d, lead);
  if (mean_s) in.mean_s = keypoint_block_contiguous(*mean_s, lead);
  if (var_s) in.var_s = keypoint_block_contiguous(*var_s, lead);
  return in;
}

// The backward's outputs, allocated: dense gradients of the keypoint tensors ((0,) for absent ones).
struct GaussianGrads {
  at::Tensor mean_d, var_d, mean_s, var_s;
};
inline GaussianGrads empty_gaussian_grads(const at::Tensor& mean_d, const c10::optional<at::Tensor>& var_d,
                                          const c10::optional<at::Tensor>& mean_s,
                                          const c10::optional<at::Tensor>& var_s) {
  const auto opts = mean_d.options();
  return {at::empty(mean_d.sizes(), opts), var_d ? at::empty(var_d->sizes(), opts) : at::empty({0}, opts),
          mean_s ? at::empty(mean_d.sizes(), opts) : at::empty({0}, opts),
          var_s ? at::empty(var_s->sizes(), opts) : at::empty({0}, opts)};
}

}  // namespace fastmotion
