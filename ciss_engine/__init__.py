"""CISSegmentation engine: class-incremental organ segmentation for CT (no Slicer, no Qt)."""

__version__ = "0.1.0"
