"""Compression of a local model version: INT8 quantization, pruning, distillation, ONNX export.

Each method reads a parent version's directory and writes a new one; ``measure`` scores parent and
child with the same harness (weights size, greedy tokens/s at batch 1 and 8, perplexity on held-out
texts) so the deltas recorded on the new registry version are comparable.
"""
