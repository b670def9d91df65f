"""PMSI SSR data path: RHS M05 files → first-week patient features (the paper's section 4).

``rhs`` parses and validates the fixed-width lines, ``synth`` writes synthetic ones with a known
noisy label model, ``compose`` builds the sparse feature matrix, ``cli`` the two commands.
"""
from __future__ import annotations

#: Table 1 of the paper: Clinical Major Categories in label order
CLASSES = (
    "Other Situations",
    "Proceedings of Medical Cardiovascular / Respiratory Care",
    "Circulatory system disorders",
    "Proceedings of Neuro-Muscular Medical Care",
    "Proceedings of Medical Care Mental Health",
    "Proceedings Sensory and Skin Medical Care",
    "Proceedings of Rheumatics / Orthopedic Medical Care",
    "Proceedings of Post-Traumatic Medical Care",
    "Proceedings of Medical Amputations",
    "Palliative Care",
    "Placement Expectation",
    "Rehabilitation",
    "Proceedings of Nutritional Medical Care",
    "No grouping",
)
#: Table 1: train + valid + test patients per class
TABLE1_TOTALS = (5271, 21684, 15342, 6310, 3448, 9679, 21247, 16594, 875, 2426, 359, 2643, 10799, 20)
#: age at entry, in completed years, grouped as the demographics descriptor reports it
AGE_BANDS = ("00-17", "18-39", "40-59", "60-69", "70-79", "80-89", "90+")
AGE_RANGES = ((0, 17), (18, 39), (40, 59), (60, 69), (70, 79), (80, 89), (90, 120))
