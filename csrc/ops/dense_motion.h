// The dense-motion ops (compose_flow, shifted_warps): their schemas and the checks that the CPU
// kernels and the CUDA binding share (each op's CPU kernel file registers its schema).
//
// compose_flow_forward(mask_logits (N,K1,H,W), kp_shift (N,K1,2), correction (N,2,H,W)?)
//     -> grid (N,H,W,2) = identity + sum_k softmax_k(mask_logits) kp_shift_k (+ correction)
// compose_flow_backward(grad_grid, mask_logits, kp_shift) -> (grad_mask_logits, grad_kp_shift)
//     (the correction's gradient is grad_grid itself, permuted: no kernel)
// shifted_warps_forward(source (N,C,H,W), kp_shift (N,K1,2)) -> (N,K1,C,H,W): source sampled at
//     identity + kp_shift_k (bilinear, zeros, align_corners=True)
// shifted_warps_backward(grad_out, source, kp_shift, source_requires_grad, kp_shift_requires_grad)
//     -> (grad_source (N,C,H,W) or (0,) if not source_requires_grad, grad_kp_shift (N,K1,2) or (0,))
// kp_shift and its gradient are in the accumulation dtype (float; double for double inputs);
// everything else in the dtype of mask_logits / source.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

namespace fastmotion {

// Register the schemas above; each is called once, by its op's CPU kernel file.
inline void define_compose_flow_schema(torch::Library& m) {
  m.def("compose_flow_forward(Tensor mask_logits, Tensor kp_shift, Tensor? correction) -> Tensor");
  m.def("compose_flow_backward(Tensor grad_grid, Tensor mask_logits, Tensor kp_shift) -> (Tensor, Tensor)");
}

inline void define_shifted_warps_schema(torch::Library& m) {
  m.def("shifted_warps_forward(Tensor source, Tensor kp_shift) -> Tensor");
  m.def(
      "shifted_warps_backward(Tensor grad_out, Tensor source, Tensor kp_shift, bool source_requires_grad, "
      "bool kp_shift_requires_grad) -> (Tensor, Tensor)");
}

// The accumulation dtype of a storage dtype: double for double, float otherwise.
inline at::ScalarType dense_motion_acc_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// t floating (half, bfloat16, float, double).
inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name, " must be a floating tensor, got ",
              t.scalar_type());
}

// kp_shift (N=n, K+1=k1, 2) in the accumulation dtype acc.
inline void check_kp_shift(const at::Tensor& kp_shift, const char* op, int64_t n, int64_t k1,
                           at::ScalarType acc) {
  TORCH_CHECK(kp_shift.dim() == 3 && kp_shift.size(0) == n && kp_shift.size(1) == k1 && kp_shift.size(2) == 2,
              op, ": kp_shift must be (N=", n, ", K+1=", k1, ", 2), got ", kp_shift.sizes());
  TORCH_CHECK(kp_shift.scalar_type() == acc, op, ": kp_shift must have the accumulation dtype ", acc, ", got ",
              kp_shift.scalar_type());
}

// mask_logits (N, K+1, H, W) floating with H, W >= 1; kp_shift (N, K+1, 2) in the accumulation
// dtype of mask_logits; correction undefined or (N, 2, H, W) with mask_logits' dtype.
inline void check_compose_flow_forward(const at::Tensor& mask_logits, const at::Tensor& kp_shift,
                                       const c10::optional<at::Tensor>& correction) {
  const char* op = "compose_flow";
  TORCH_CHECK(mask_logits.dim() == 4, op, ": mask_logits must be (N, K+1, H, W), got ", mask_logits.sizes());
  check_floating(mask_logits, op, "mask_logits");
  const int64_t n = mask_logits.size(0), k1 = mask_logits.size(1), h = mask_logits.size(2), w = mask_logits.size(3);
  TORCH_CHECK(k1 >= 1 && h >= 1 && w >= 1, op, ": K+1, H and W must be >= 1, got ", mask_logits.sizes());
  check_kp_shift(kp_shift, op, n, k1, dense_motion_acc_type(mask_logits.scalar_type()));
  TORCH_CHECK(kp_shift.device() == mask_logits.device(), op, ": kp_shift is on ", kp_shift.device(),
              ", mask_logits on ", mask_logits.device());
  if (correction.has_value() && correction->defined()) {
    const at::Tensor& c = *correction;
    TORCH_CHECK(c.dim() == 4 && c.size(0) == n && c.size(1) == 2 && c.size(2) == h && c.size(3) == w, op,
                ": correction must be (", n, ", 2, ", h, ", ", w, "), got ", c.sizes());
    TORCH_CHECK(c.scalar_type() == mask_logits.scalar_type(), op, ": correction must have dtype ",
                mask_logits.scalar_type(), ", got ", c.scalar_type());
    TORCH_CHECK(c.device() == mask_logits.device(), op, ": correction is on ", c.device(), ", mask_logits on ",
                mask_logits.device());
  }
}

// compose_flow_forward's inputs as both kernels read them: contiguous; corr undefined when absent.
struct ComposeFlowInputs {
  at::Tensor logits, shift, corr;
};
inline ComposeFlowInputs compose_flow_inputs(const at::Tensor& mask_logits, const at::Tensor& kp_shift,
                                             const c10::optional<at::Tensor>& correction) {
  const bool has_corr = correction.has_value() && correction->defined();
  return {mask_logits.contiguous(), kp_shift.contiguous(), has_corr ? correction->contiguous() : at::Tensor()};
}

// grad_grid (N, H, W, 2) with mask_logits' dtype.
inline void check_compose_flow_backward(const at::Tensor& grad_grid, const at::Tensor& mask_logits,
                                        const at::Tensor& kp_shift) {
  check_compose_flow_forward(mask_logits, kp_shift, c10::nullopt);
  const int64_t n = mask_logits.size(0), h = mask_logits.size(2), w = mask_logits.size(3);
  TORCH_CHECK(grad_grid.dim() == 4 && grad_grid.size(0) == n && grad_grid.size(1) == h && grad_grid.size(2) == w &&
                  grad_grid.size(3) == 2,
              "compose_flow_backward: grad_grid must be (", n, ", ", h, ", ", w, ", 2), got ", grad_grid.sizes());
  TORCH_CHECK(grad_grid.scalar_type() == mask_logits.scalar_type(), "compose_flow_backward: grad_grid must have dtype ",
              mask_logits.scalar_type(), ", got ", grad_grid.scalar_type());
  TORCH_CHECK(grad_grid.device() == mask_logits.device(), "compose_flow_backward: grad_grid is on another device");
}

// source (N, C, H, W) floating with H, W >= 1; kp_shift (N, K+1, 2) in its accumulation dtype.
inline void check_shifted_warps_forward(const at::Tensor& source, const at::Tensor& kp_shift) {
  const char* op = "shifted_warps";
  TORCH_CHECK(source.dim() == 4, op, ": source must be (N, C, H, W), got ", source.sizes());
  check_floating(source, op, "source");
  TORCH_CHECK(source.size(2) >= 1 && source.size(3) >= 1, op, ": H and W must be >= 1, got ", source.sizes());
  TORCH_CHECK(kp_shift.dim() == 3, op, ": kp_shift must be (N, K+1, 2), got ", kp_shift.sizes());
  check_kp_shift(kp_shift, op, source.size(0), kp_shift.size(1), dense_motion_acc_type(source.scalar_type()));
  TORCH_CHECK(kp_shift.device() == source.device(), op, ": kp_shift is on ", kp_shift.device(), ", source on ",
              source.device());
}

// grad_out (N, K+1, C, H, W) with source's dtype.
inline void check_shifted_warps_backward(const at::Tensor& grad_out, const at::Tensor& source,
                                         const at::Tensor& kp_shift) {
  check_shifted_warps_forward(source, kp_shift);
  const int64_t n = source.size(0), c = source.size(1), h = source.size(2), w = source.size(3);
  const int64_t k1 = kp_shift.size(1);
  TORCH_CHECK(grad_out.dim() == 5 && grad_out.size(0) == n && grad_out.size(1) == k1 && grad_out.size(2) == c &&
                  grad_out.size(3) == h && grad_out.size(4) == w,
              "shifted_warps_backward: grad_out must be (", n, ", ", k1, ", ", c, ", ", h, ", ", w, "), got ",
              grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == source.scalar_type(), "shifted_warps_backward: grad_out must have dtype ",
              source.scalar_type(), ", got ", grad_out.scalar_type());
  TORCH_CHECK(grad_out.device() == source.device(), "shifted_warps_backward: grad_out is on another device");
}

}  // namespace fastmotion
