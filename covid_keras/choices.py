"""The named choices the package offers, and the study's defaults a command line shows, as plain Python.

The modules that implement a choice take its names from here (`data.CONFIGS is DATA_CONFIGS`,
`runtime.PRECISIONS is PRECISIONS`, ...), so there is one list; the commands read them to build
their `--help` before TensorFlow loads. Imports nothing. The GAN's choices live beside `GanConfig`
(`covid_keras.gan.config`), which is free of TensorFlow too.
"""

# The covid_xray TFDS builder's configs (tests/test_data.py holds them equal to its BUILDER_CONFIGS).
DATA_CONFIGS = ("radiography", "radiography_4class", "phantom", "phantom_small", "folder")
ALL_SPLITS = "train+validation+test"
# What a GAN's evidence report may score: validation for choices, test once per final configuration.
HELD_OUT_SPLITS = ("validation", "test")

# The study's three backbones (`backbones.BACKBONES`, in this order).
BACKBONE_NAMES = ("vgg16", "resnet50", "inception_v3")
# The smallest input side each backbone's cut layer accepts.
BACKBONE_MIN_SIZES = {"vgg16": 32, "resnet50": 32, "inception_v3": 75}
# KID's feature spaces (`evaluation.embeddings`).
KID_EXTRACTORS = ("inception_v3", "resnet50", "vgg16", "random_conv")

# Keras dtype policies (`runtime`) and distribution strategies (`distribute`).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "one", "mirrored", "multi-worker")

# Classifiers (`classifier`): the study's settings, the head's optimizers, which epoch is kept.
STUDY_IMAGE_SIZE = 150
STUDY_EPOCHS = 3
STUDY_BATCH_SIZE = 8
STUDY_OPTIMIZER = "adam"
CLASSIFIER_OPTIMIZERS = ("adam", "sgd", "rmsprop")
KEEP_EPOCH = ("last", "best_validation")
# What of the film a classifier sees (covid_keras.film): as it is, histogram-equalised, or only the
# lung fields of the equalised film.
FILM_MODES = ("raw", "equalised", "lungs")

# KerasTuner's search (`tuning`).
LEARNING_RATE_RANGE = (1e-5, 1e-2)
TUNERS = ("random", "bayesian")
OBJECTIVE_DIRECTIONS = {"val_auc": "max", "val_accuracy": "max", "val_loss": "min"}

# Exports (`export`): the versioned SavedModels' folder, and where TF Serving's docker mounts it.
DEFAULT_EXPORT_DIR = "saved_models"
DEFAULT_SERVING_ROOT = "/models"
