"""Synthetic datasets the project generates for itself, so every path runs without downloads.

``python -m pipeline.datasets.synthetic scannet --out DIR --scenes N --seed S`` writes procedural
rooms (see :mod:`pipeline.datasets.synthetic.rooms` for the scene grammar) in ScanNet v2's
exported layout; ``python -m pipeline.datasets.synthetic nuscenes --out DIR --scenes N --seed S``
writes procedural street drives (:mod:`pipeline.datasets.synthetic.street`) with ray-cast LiDAR
sweeps and six camera images as a nuscenes-devkit-loadable dataset
(:func:`pipeline.datasets.synthetic.nuscenes.generate_nuscenes`, not imported here: it needs the devkit).
"""
from pipeline.datasets.synthetic.scannet import generate_scannet

__all__ = ["generate_scannet"]
