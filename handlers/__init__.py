"""pack's serving runtime: the files pack ships to the servers, installed as package data of this package and found
with importlib.resources (packager/serve/tasks.py).

Every file here is a flat module, imported by its file name: TorchServe unpacks a .mar onto sys.path, and each Triton
python-backend model.py pack writes puts its own version folder first on sys.path. So the files import each other as
`pack_runtime`, never as `handlers.pack_runtime`, and this package itself is not imported on a server.

  pack_runtime.py       model loading (onnx, torchscript, pt2, aoti), output flattening, strict JSON, batching
  pack_requests.py      generic tensor JSON, v2 tensors, and a request's bounds (body size, dtype, shape, batch, counts)
  pack_images.py        image decoding, classification transforms and normalisation, letterbox, YOLO decoding, NMS
  pack_torchserve.py    the TorchServe handler base: settings, request bodies, per-request options
  pack_classifier.py    TorchServe entry handler: image classification
  pack_detector.py      TorchServe entry handler: YOLO-format detection
  pack_tensors.py       TorchServe entry handler: generic tensors
  pack_fastapi.py       pack's FastAPI app (the fastapi target): the TorchServe handlers behind plain HTTP
  pack_triton_model.py  Triton python-backend model.py running an export
  pack_triton_yolo_pre.py / pack_triton_yolo_post.py  Triton model.py files around a YOLO detector in its ensemble
"""
