"""Inference on images of any size: tiling, slide reading and post-processing."""
