"""Frozen-backbone COVID classifiers: the study's cut backbones, a small head, the feature cache.

A classifier is a backbone cut where the study cut it (`backbones.BACKBONES`) followed by
the head Flatten -> Dense 1024 ReLU -> Dense 64 ReLU -> Dense 1 sigmoid. Its input is the
image already passed through the backbone's `preprocess_input`; its output is P(COVID).

With the backbone frozen its output never changes, so features are computed once per
dataset (`FeatureExtractor.features`, optionally cached in memory and on disk by a
`FeatureCache`) and only the head is trained on them. The assembled model
(`assemble_classifier`) shares its layers with the extractor and the head, so it predicts
exactly what head(features) predicts. Fine-tuning (`fine_tune_layers > 0`) then trains
the top of the backbone together with the head; where one tensor feeds that top, on cached
features of the layer below it, so the frozen layers still run once per split.

Typical use from Python::

    cache = FeatureCache("runs/features")
    trained = train_classifier(ClassifierConfig("vgg16", weights="/work/weights"),
                               {"train": train_ds, "validation": val_ds, "test": test_ds},
                               cache=cache)
    trained.metrics["test"]["accuracy"]
    save_classifier(trained, "runs/vgg16")
    model, metadata = load_classifier("runs/vgg16")

The package: `config` (ClassifierConfig, the presets, the weights' record), `features` (the cut
backbone, DegradeResolution, the feature cache), `model` (head, assembly, unfreezing),
`training` (train_classifier and its steps), `saving` (model.keras + classifier.json),
`operating_rule` (temperature and threshold fitted on validation), `gradcam` (explanations). Every
public name is importable from the package itself (`classifier.train_classifier`).
"""

from covid_keras.classifier.config import (  # noqa: F401
    FEATURE_BATCH_SIZE,
    HEAD_UNITS,
    KEEP_EPOCH,
    METADATA_FILE,
    METADATA_FORMAT_VERSION,
    MODEL_FILE,
    OPTIMIZERS,
    PREDICT_BATCH_SIZE,
    ROC_FILE,
    SPLITS,
    STUDY_BATCH_SIZE,
    STUDY_EPOCHS,
    STUDY_IMAGE_SIZE,
    STUDY_OPTIMIZER,
    WEIGHTS_TOOL,
    ClassifierConfig,
    WeightsInfo,
    check_image_size,
    file_sha256,
    make_optimizer,
    resolve_weights_file,
    weights_values_sha256,
)
from covid_keras.classifier.features import (  # noqa: F401
    DegradeResolution,
    FeatureCache,
    FeatureExtractor,
    FeatureSet,
    examples_fingerprint,
)
from covid_keras.classifier.gradcam import (  # noqa: F401
    ClassifierParts,
    GradCam,
    split_classifier,
    upsampled,
)
from covid_keras.classifier.model import (  # noqa: F401
    MirrorImage,
    assemble_classifier,
    build_head,
    compile_for_training,
    temperature_scaled,
    unfreeze_top_layers,
)
from covid_keras.classifier.operating_rule import (  # noqa: F401
    DEFAULT_TARGET_SENSITIVITY,
    OperatingRule,
)
from covid_keras.classifier.saving import (  # noqa: F401
    REQUIRED_METADATA,
    evaluate_saved_classifier,
    load_classifier,
    load_classifier_metadata,
    save_classifier,
    save_roc_plot,
)
from covid_keras.classifier.training import (  # noqa: F401
    KeepBestValidation,
    TrainedClassifier,
    check_both_classes,
    predict_probabilities,
    split_above,
    train_classifier,
    train_head,
)
