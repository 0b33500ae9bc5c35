"""Triton python-backend model written by pack: runs this version's exported model with onnxruntime (model.onnx)
or torch (model.pt TorchScript, model.pt2 ExportedProgram, model.aoti.pt2 AOTInductor package).

Everything it needs is in config.pbtxt: the inputs and outputs, and the parameters
  pack_format      onnx | torchscript | pt2 | aoti
  pack_model_file  the model file beside this model.py
ONNX inputs are fed by name; TorchScript inputs by position, in config order. Outputs are returned in config order,
cast to the dtypes the config declares. The environment needs numpy<2 and onnxruntime (and torch for TorchScript).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.format = params.get("pack_format", "onnx")
        folder = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(folder, params.get("pack_model_file") or ("model.onnx" if self.format == "onnx" else "model.pt"))
        self.inputs = [i["name"] for i in config["input"]]
        self.max_batch = int(config.get("max_batch_size", 0))
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]]
        gpu = args.get("model_instance_kind") == "GPU"
        device_id = int(args.get("model_instance_device_id") or 0)
        if self.format == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = int(params.get("pack_threads", "0") or 0)
            providers = ["CPUExecutionProvider"]
            if gpu and "CUDAExecutionProvider" in ort.get_available_providers():
                providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
            self.session = ort.InferenceSession(path, options, providers=providers)
            self.onnx_outputs = [o.name for o in self.session.get_outputs()]
        elif self.format in ("torchscript", "pt2", "aoti"):
            import torch

            self.torch = torch
            self.device = torch.device(f"cuda:{device_id}" if gpu and torch.cuda.is_available() else "cpu")
            if self.format == "torchscript":
                self.module = torch.jit.load(path, map_location=self.device).eval()
            elif self.format == "pt2":
                self.module = torch.export.load(path).module()
            else:
                self.module = torch._inductor.aoti_load_package(path)
        else:
            raise pb_utils.TritonModelException(f"pack_format {self.format!r} is not onnx, torchscript, pt2 or aoti")

    def _run(self, arrays):
        if self.format == "onnx":
            results = self.session.run(None, dict(zip(self.inputs, arrays)))
            by_name = dict(zip(self.onnx_outputs, results))
            return [by_name[name] if name in by_name else results[i] for i, (name, _) in enumerate(self.outputs)]
        torch = self.torch
        with torch.inference_mode():
            out = self.module(*[torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays])
        flat = []

        def walk(value):
            if isinstance(value, dict):
                for v in value.values():
                    walk(v)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    walk(v)
            else:
                flat.append(value.detach().cpu().numpy())

        walk(out)
        return flat

    def _response(self, results):
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(result).astype(dtype, copy=False))
            for (name, dtype), result in zip(self.outputs, results)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    @staticmethod
    def _error(exc):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))

    def execute(self, requests):
        """Run the requests Triton's dynamic batcher hands over as one model call per group of requests whose
        non-batch shapes and dtypes agree; a group that fails runs again request by request, so an error is
        answered to the request that caused it alone."""
        responses = [None] * len(requests)
        arrays = [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                arrays[i] = [pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs]
            except Exception as exc:
                responses[i] = self._error(exc)
        groups = {}
        for i, arrs in enumerate(arrays):
            if arrs is not None:
                key = tuple((a.shape[1:], a.dtype.str) for a in arrs) if self.max_batch > 0 else i
                groups.setdefault(key, []).append(i)
        for members in groups.values():
            if len(members) > 1:
                try:
                    merged = [np.concatenate([arrays[i][k] for i in members]) for k in range(len(self.inputs))]
                    results = self._run(merged)
                    offset = 0
                    for i in members:
                        n = arrays[i][0].shape[0]
                        responses[i] = self._response([r[offset:offset + n] for r in results])
                        offset += n
                    continue
                except Exception:  # one bad request must not take the model down, nor fail the others
                    pass
            for i in members:
                try:
                    responses[i] = self._response(self._run(arrays[i]))
                except Exception as exc:
                    responses[i] = self._error(exc)
        return responses

    def finalize(self):
        self.session = None
        self.module = None
