"""Datasets: one reader per format returning :class:`ImageRecord` s, plus shared sampling."""

from mitodet.data.records import LABEL_HARD_NEGATIVE, LABEL_MITOSIS, DataFormatError, ImageRecord

__all__ = ["ImageRecord", "DataFormatError", "LABEL_MITOSIS", "LABEL_HARD_NEGATIVE"]
