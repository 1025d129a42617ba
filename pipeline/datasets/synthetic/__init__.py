"""Synthetic datasets the project generates for itself, so every path runs without downloads.

``python -m pipeline.datasets.synthetic scannet --out DIR --scenes N --seed S`` writes procedural
rooms (see :mod:`pipeline.datasets.synthetic.rooms` for the scene grammar) in ScanNet v2's
exported layout.
"""
from pipeline.datasets.synthetic.scannet import generate_scannet

__all__ = ["generate_scannet"]
