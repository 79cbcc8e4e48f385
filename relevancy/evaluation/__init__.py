"""Evaluation suite: the paper's perturbation, segmentation and rationale tests and ERASER's
faithfulness scores, for any method behind ``relevancy.attribute``; maps scored against evidence
known by construction (``ground_truth``); bootstrap intervals and paired comparisons (``statistics``)."""

from .data import Dataset, ImageItem, TextItem, from_hf, load_dataset, load_eraser, load_image_folder, load_text_file
from .ground_truth import evidence_scores, score_maps
from .metrics import HIGHER_IS_BETTER
from .runner import TESTS, Results, evaluate
from .statistics import mean_interval, paired_difference, table_intervals

__all__ = [
    "Dataset", "HIGHER_IS_BETTER", "ImageItem", "Results", "TESTS", "TextItem", "evaluate", "evidence_scores", "from_hf",
    "load_dataset", "load_eraser", "load_image_folder", "load_text_file", "mean_interval", "paired_difference", "score_maps",
    "table_intervals",
]
