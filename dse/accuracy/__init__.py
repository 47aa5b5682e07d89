"""Accuracy side of the tool: data sets and (later) the bit-wise simulation of CIM inference."""
