"""mitodet: mitotic-figure detection in H&E histology (RDLM: GLB-FPN Faster R-CNN + focal loss)."""

__version__ = "0.1.0"
