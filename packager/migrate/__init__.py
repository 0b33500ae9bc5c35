"""Migration of models served elsewhere (a TorchServe `.mar`, a Triton model folder) to pack builds."""
