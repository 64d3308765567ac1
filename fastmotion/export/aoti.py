"""AOTInductor packages of the three graphs: ``torch.export`` then
``torch._inductor.aoti_compile_and_package``, one ``<graph>.pt2`` each. A package runs from
Python (``torch._inductor.aoti_load_package``) or from C++ without Python
(``torch::inductor::AOTIModelPackageLoader``). Compiling generates and builds C++ (CPU) or
Triton/CUDA (GPU) code for the machine it runs on: minutes for a large model on a few cores."""
from __future__ import annotations

import os
from typing import Dict

import torch

# Freezing: the weights become constants of the compiled graph, so Inductor folds the BatchNorms into
# the convolutions and pre-packs the weights for oneDNN (CPU). Measured on the 2-core dev VM, shapes
# config 64x64, per-frame generator, best of 5: 144 ms without, 56 ms with (eager reference 374 ms).
INDUCTOR_CONFIGS = {"freezing": True}



def write_aoti(model, folder: str, dtype: str, dynamic_batch: bool, prepare, dynamic_shapes, which, log,
               device=torch.device("cpu")) -> Dict[str, dict]:
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but no CUDA device is available here")
    mods, examples, names = prepare(model, dtype)
    mods = {k: m.to(device) for k, m in mods.items()}
    examples = {k: tuple(t.to(device) for t in v) for k, v in examples.items()}
    out = {}
    for name in which:
        inputs, outputs = names[name]
        log(f"  {name}: torch.export + AOTInductor compile")
        with torch.no_grad():
            program = torch.export.export(mods[name], examples[name],
                                          dynamic_shapes=dynamic_shapes(name, len(inputs), dynamic_batch))
            path = torch._inductor.aoti_compile_and_package(program, package_path=os.path.join(folder, f"{name}.pt2"),
                                                            inductor_configs=INDUCTOR_CONFIGS)
            results = mods[name](*examples[name])
        results = results if isinstance(results, tuple) else (results,)
        batch = "batch" if dynamic_batch else None
        out[name] = {
            "file": os.path.basename(path),
            "inputs": [_info(n, t, batch) for n, t in zip(inputs, examples[name])],
            "outputs": [_info(n, t, batch) for n, t in zip(outputs, results)],
            "device": str(device),
        }
    return out


def _info(name, tensor, batch):
    shape = list(tensor.shape)
    if batch:
        shape[0] = batch
    return {"name": name, "shape": shape, "dtype": str(tensor.dtype).replace("torch.", "")}
