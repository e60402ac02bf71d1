"""Class names, in label order. One place, so the builder, models and exports agree.

Label 1 is COVID in the two-class setting, so a sigmoid output is P(COVID).
"""

BINARY_CLASSES = ("Normal", "COVID")
ALL_CLASSES = ("Normal", "COVID", "Viral Pneumonia", "Lung_Opacity")
POSITIVE_CLASS = "COVID"
