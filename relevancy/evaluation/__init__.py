"""Evaluation suite: the paper's perturbation, segmentation and rationale tests and ERASER's
faithfulness scores, for any method behind ``relevancy.attribute``."""

from .data import Dataset, ImageItem, TextItem, from_hf, load_dataset, load_eraser, load_image_folder, load_text_file
from .metrics import HIGHER_IS_BETTER
from .runner import TESTS, Results, evaluate

__all__ = [
    "Dataset", "HIGHER_IS_BETTER", "ImageItem", "Results", "TESTS", "TextItem", "evaluate", "from_hf",
    "load_dataset", "load_eraser", "load_image_folder", "load_text_file",
]
