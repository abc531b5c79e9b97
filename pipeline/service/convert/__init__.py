"""Model precision conversion for TensorRT 11's strongly typed builds: FP16 (FP32 IO) and
Q/DQ INT8 ONNX models, and the accuracy gate that decides whether one may be written."""
