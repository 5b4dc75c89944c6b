"""Quantized checkpoints read back as float tensors (FP8 with scales, MXFP4, GPTQ, AWQ, compressed-tensors, bitsandbytes).

`scheme.py` is the interface every scheme module implements; a wrapper over
any `TensorSource` presents each group of stored tensors that holds one
quantized weight as that one weight, dequantized on read.
"""
