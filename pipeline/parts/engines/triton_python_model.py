"""A Triton Python-backend model that runs an ONNX file with ONNX Runtime on the CPU.

Owns nothing in the pipeline: `pipeline export-triton --platform python` copies this
file as `<repo>/<model>/1/model.py` beside `model.onnx`, for a Triton server that has
only the Python backend (the `tritonserver` bundled in the `nvidia-pytriton` wheel; the
official container serves `--platform onnxruntime` natively instead). It runs inside
Triton's stub interpreter, which must be able to import numpy and onnxruntime.

Tensors cross the stub boundary through DLPack, not `as_numpy()`/`Tensor(name, array)`:
the bundled stub was built against numpy 1.x and, with numpy 2 in its interpreter,
those calls silently produce empty outputs (seen with Triton 2.51, numpy 2.5).
Requests the dynamic batcher grouped arrive together and run as one ONNX Runtime call.
"""

import json
import os

import numpy as np


class TritonPythonModel:
    """Triton's Python-backend entry point (the class name is fixed by Triton)."""

    def initialize(self, args):
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        params = config.get("parameters", {})
        threads = int(params.get("intra_op_threads", {}).get("string_value", "1"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        arrays = [np.from_dlpack(self.pb.get_input_tensor_by_name(r, self.input_name)) for r in requests]
        counts = [len(a) for a in arrays]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        output = self.session.run([self.output_name], {self.input_name: batch})[0]
        responses, start = [], 0
        for count in counts:
            part = np.ascontiguousarray(output[start:start + count])
            start += count
            responses.append(self.pb.InferenceResponse([self.pb.Tensor.from_dlpack(self.output_name, part)]))
        return responses
