"""minivess: an MLOps scaffold for 3D biomedical image segmentation."""

__version__ = "0.1.0"
