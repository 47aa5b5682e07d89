"""Workloads: DNN graphs of compute layers and zero-cost ops, read from ONNX."""

from dse.workload.graph import Workload
from dse.workload.layer import COMPUTE_OPS, LOOP_DIMS, Layer, Loops, OtherOp, Precision
from dse.workload.onnx_loader import load_onnx

__all__ = ["COMPUTE_OPS", "LOOP_DIMS", "Layer", "Loops", "OtherOp", "Precision", "Workload", "load_onnx"]
