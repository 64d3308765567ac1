// Python entry point of fastmotion._C. The ops themselves register through TORCH_LIBRARY
// static initializers in csrc/ops/; importing this module is what runs them.
#include <Python.h>

#ifdef FASTMOTION_WITH_CUDA
static const int kWithCuda = 1;
#else
static const int kWithCuda = 0;
#endif

static struct PyModuleDef fastmotion_c_module = {
    PyModuleDef_HEAD_INIT, "_C", "fastmotion compiled kernels (ops register via torch.library)", -1,
    nullptr, nullptr, nullptr, nullptr, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&fastmotion_c_module);
  if (m == nullptr) return nullptr;
  if (PyModule_AddIntConstant(m, "with_cuda", kWithCuda) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
