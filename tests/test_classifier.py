"""Frozen-backbone classifiers: cut shapes, preprocessing, feature cache, weights, save/load.

Backbones use weights=None (no downloads in CI) and tiny images; the examples are
synthetic tf.data in the TFDS layout ({"image": uint8 [H, W, 1], "label", "file_name"}).
"""

import dataclasses
import hashlib
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from covid_keras import backbones, classifier, export
from covid_keras.classifier import ClassifierConfig, FeatureCache, FeatureExtractor

# The study's cut shapes at 150 px (reference-facts.md).
STUDY_SHAPES = {"vgg16": (4, 4, 512), "resnet50": (5, 5, 2048), "inception_v3": (7, 7, 768)}
SMALL = {"vgg16": (64, (2, 2, 512)), "resnet50": (64, (2, 2, 2048)), "inception_v3": (75, (3, 3, 768))}


def synthetic_examples(count: int, size: int = 40, seed: int = 0) -> tf.data.Dataset:
    """COVID (label 1) images are brighter, so a head can learn something in one epoch."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    base = np.where(labels[:, None, None, None] == 1, 150, 60)
    images = np.clip(base + rng.integers(0, 80, (count, size, size, 1)), 0, 255).astype(np.uint8)
    names = [f"synthetic_{seed}_{i}.png" for i in range(count)]
    return tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": labels.astype(np.int64), "file_name": tf.constant(names)}
    )


def preprocessed_batches(backbone: str, size: int, count: int = 8, batch: int = 4):
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 255, (count, size, size, 3)).astype(np.float32)
    images = backbones.get_backbone_spec(backbone).preprocess(rgb)
    labels = (np.arange(count) % 2).astype(np.float32)
    return [(images[i : i + batch], labels[i : i + batch]) for i in range(0, count, batch)]


@pytest.mark.parametrize("backbone", sorted(backbones.BACKBONES))
def test_each_backbone_builds_small_and_cuts_at_the_study_layer(backbone):
    size, small_shape = SMALL[backbone]
    extractor = FeatureExtractor(backbone, size, weights=None)
    assert extractor.model.layers[-1].name == backbones.BACKBONES[backbone].cut_layer
    assert extractor.feature_shape == small_shape
    [(images, _)] = preprocessed_batches(backbone, size, count=2, batch=2)
    features = np.asarray(extractor.model(images, training=False))
    assert features.shape == (2, *small_shape) and np.isfinite(features).all()
    assert extractor.weights_info.name == "none" and extractor.weights_info.sha256 is None
    assert not extractor.model.trainable_weights  # frozen by default
    # the study's shapes at its 150 px
    assert FeatureExtractor(backbone, 150, weights=None).feature_shape == STUDY_SHAPES[backbone]


def test_too_small_images_are_rejected():
    with pytest.raises(ValueError, match="minimum is 75"):
        FeatureExtractor("inception_v3", 64, weights=None)
    with pytest.raises(ValueError, match="unknown backbone"):
        ClassifierConfig("vgg19")


def test_preprocessing_differs_per_backbone():
    rgb = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    outputs = {name: np.asarray(spec.preprocess(rgb.copy())) for name, spec in backbones.BACKBONES.items()}
    # none is the study's plain rescale to [0, 1]
    for name, output in outputs.items():
        assert not np.allclose(output, rgb / 255.0), name
    # VGG16 and ResNet50 (Keras' weights) share the "caffe" mode: BGR, ImageNet mean subtracted
    assert np.allclose(outputs["vgg16"][..., 0], rgb[..., 2] - 103.939, atol=1e-3)
    np.testing.assert_allclose(outputs["resnet50"], outputs["vgg16"])
    # InceptionV3 scales to [-1, 1], RGB order
    np.testing.assert_allclose(outputs["inception_v3"], rgb / 127.5 - 1.0, atol=1e-5)
    assert not np.allclose(outputs["inception_v3"], outputs["vgg16"])


def test_head_on_cached_features_predicts_as_the_full_model():
    keras.utils.set_random_seed(0)
    extractor = FeatureExtractor("vgg16", 32, weights=None)
    batches = preprocessed_batches("vgg16", 32, count=8)
    features = extractor.extract(batches, verbose=0)
    head = classifier.build_head(extractor.feature_shape)
    config = ClassifierConfig("vgg16", weights=None, image_size=32, epochs=1, batch_size=4)
    classifier.train_head(head, config, features, verbose=0)
    model = classifier.assemble_classifier(extractor, head)
    images = np.concatenate([images for images, _ in batches])
    from_features = head.predict(features.features, verbose=0)
    from_images = model.predict(images, verbose=0)
    assert from_images.shape == (8, 1)
    np.testing.assert_allclose(from_images, from_features, rtol=1e-4, atol=1e-6)


def test_bfloat16_features_are_float32_close_to_float32_ones_and_cached_apart():
    keras.utils.set_random_seed(0)
    bf16 = FeatureExtractor("vgg16", 32, weights=None, precision="mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building
    f32 = bf16.in_float32()
    assert f32.precision == "float32" and f32.weights_info == bf16.weights_info
    assert f32.in_float32() is f32
    batches = preprocessed_batches("vgg16", 32, count=8)
    low, full = bf16.extract(batches, verbose=0).features, f32.extract(batches, verbose=0).features
    assert low.dtype == np.float32 and low.shape == full.shape
    assert np.linalg.norm(low - full) / np.linalg.norm(full) < 0.05  # bfloat16 keeps 8 bits of mantissa
    examples = synthetic_examples(4)
    assert bf16.cache_key(examples) != f32.cache_key(examples)
    with pytest.raises(ValueError, match="precision"):
        FeatureExtractor("vgg16", 32, weights=None, precision="bfloat16")
    with pytest.raises(ValueError, match="feature_precision"):
        ClassifierConfig("vgg16", weights=None, image_size=32, feature_precision="bf16")


def test_a_classifier_on_bfloat16_features_saves_a_float32_model_that_loads(tmp_path):
    config = small_config(feature_precision="mixed_bfloat16")
    trained = classifier.train_classifier(config, small_splits(), verbose=0, precision_reason="test: bf16")
    assert trained.head.compute_dtype == "float32"
    assert {layer.compute_dtype for layer in trained.model.get_layer("vgg16_block5_pool").layers} == {"float32"}
    out = classifier.save_classifier(trained, tmp_path / "clf")
    model, metadata = classifier.load_classifier(out)
    assert metadata["training"]["feature_precision"] == "mixed_bfloat16"
    assert metadata["precision"] == {"features": "mixed_bfloat16", "head": "float32", "saved_model": "float32",
                                     "reason": "test: bf16"}
    images = np.concatenate([x for x, _ in preprocessed_batches("vgg16", 32)])
    saved = model.predict(images, verbose=0)
    assert saved.dtype == np.float32
    np.testing.assert_allclose(saved, trained.model.predict(images, verbose=0), atol=1e-6)
    # The head saw bfloat16 features and the saved model gives it float32 ones: close, not equal.
    features = trained.extractor.extract(preprocessed_batches("vgg16", 32), verbose=0).features
    np.testing.assert_allclose(saved, trained.head.predict(features, verbose=0), atol=0.05)

    exported = export.export_classifier_dir(out, base_dir=tmp_path / "saved_models")
    signature = tf.saved_model.load(str(exported.path)).signatures[export.CLASSIFY_IMAGES]
    assert {spec.dtype for spec in signature.structured_input_signature[1].values()} == {tf.float32}
    rgb = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)), tf.float32)
    assert signature(images=rgb)["covid_probability"].dtype == tf.float32


def small_config(**overrides) -> ClassifierConfig:
    values = dict(backbone="vgg16", weights=None, image_size=32, epochs=1, batch_size=8, seed=3)
    values.update(overrides)
    return ClassifierConfig(**values)


def small_splits():
    return {
        "train": synthetic_examples(24, seed=0),
        "validation": synthetic_examples(8, seed=1),
        "test": synthetic_examples(8, seed=2),
    }


def test_training_uses_the_feature_cache_and_the_saved_classifier_round_trips(tmp_path):
    cache_dir = tmp_path / "features"
    first_cache = FeatureCache(cache_dir)
    trained = classifier.train_classifier(small_config(), small_splits(), cache=first_cache, verbose=0)
    assert (first_cache.misses, first_cache.hits) == (3, 0)
    assert len(list(cache_dir.glob("*.npz"))) == 3
    assert set(trained.metrics) == {"train", "validation", "test"}
    assert trained.metrics["test"]["n"] == 8 and 0 <= trained.metrics["test"]["accuracy"] <= 1
    assert set(trained.history) >= {"loss", "val_loss", "val_auc"}

    # same seed, data and (random) weights: every split comes from the disk cache
    second_cache = FeatureCache(cache_dir)
    again = classifier.train_classifier(small_config(), small_splits(), cache=second_cache, verbose=0)
    assert (second_cache.misses, second_cache.hits) == (0, 3)
    assert again.metrics["test"] == trained.metrics["test"]
    # other data misses the cache
    other_key = trained.extractor.cache_key(synthetic_examples(8, seed=9))
    assert other_key != trained.extractor.cache_key(synthetic_examples(8, seed=2))

    out = classifier.save_classifier(trained, tmp_path / "clf", data_description={"config": "synthetic"})
    assert {p.name for p in out.iterdir()} >= {"model.keras", "classifier.json", "roc.png"}
    model, metadata = classifier.load_classifier(out)
    assert metadata["backbone"] == "vgg16" and metadata["image_size"] == 32
    assert metadata["cut_layer"] == "block5_pool"
    assert metadata["class_names"] == ["Normal", "COVID"]
    assert metadata["weights"]["name"] == "none"
    assert metadata["training"]["resolved_learning_rate"] == 1e-3  # the study's VGG16 rate
    assert metadata["metrics"]["test"] == json.loads(json.dumps(trained.metrics["test"]))
    assert metadata["data"] == {"config": "synthetic"}

    images = np.concatenate([x for x, _ in preprocessed_batches("vgg16", 32)])
    np.testing.assert_allclose(model.predict(images, verbose=0), trained.model.predict(images, verbose=0), atol=1e-6)
    metrics = classifier.evaluate_saved_classifier(out, small_splits()["test"], verbose=0)
    assert metrics["confusion_matrix"] == trained.metrics["test"]["confusion_matrix"]
    assert metrics["auc"] == pytest.approx(trained.metrics["test"]["auc"], abs=1e-6)


def test_mirror_trains_on_mirror_images_and_averages_each_image_with_its_mirror(tmp_path, monkeypatch):
    train_sizes = []
    train_head = classifier.train_head

    def recording_train_head(head, config, train, validation=None, verbose="auto", **distribution):
        train_sizes.append(len(train.labels))
        return train_head(head, config, train, validation, verbose, **distribution)

    monkeypatch.setattr(classifier.training, "train_head", recording_train_head)
    cache = FeatureCache(tmp_path / "features")
    trained = classifier.train_classifier(small_config(mirror=True), small_splits(), cache=cache, verbose=0)
    assert train_sizes == [48]  # the 24 train images and their mirrors
    assert (cache.misses, cache.hits) == (6, 0)  # each split, as is and mirrored

    images = np.concatenate([x for x, _ in preprocessed_batches("vgg16", 32)])
    single = classifier.assemble_classifier(trained.extractor, trained.head)
    expected = (single.predict(images, verbose=0) + single.predict(images[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(trained.model.predict(images, verbose=0), expected, atol=1e-6)
    np.testing.assert_allclose(trained.model.predict(images[:, :, ::-1], verbose=0), expected, atol=1e-6)
    assert not np.allclose(expected, single.predict(images, verbose=0), atol=1e-6)

    out = classifier.save_classifier(trained, tmp_path / "clf")
    model, metadata = classifier.load_classifier(out)
    assert metadata["training"]["mirror"] is True
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-6)
    # The metrics from cached features are those of the saved model on images.
    metrics = classifier.evaluate_saved_classifier(out, small_splits()["test"], verbose=0)
    assert metrics["auc"] == pytest.approx(trained.metrics["test"]["auc"], abs=1e-6)

    # TensorFlow Serving gets the same mirror-averaged model, behind the rule fitted on validation.
    exported = export.export_classifier_dir(out, base_dir=tmp_path / "serving")
    predict_images = tf.saved_model.load(str(exported.path)).signatures["predict_images"]
    grey = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    served = predict_images(images=tf.constant(grey))["covid_probability"].numpy()
    preprocessed = backbones.get_backbone_spec("vgg16").preprocess(np.repeat(grey, 3, axis=-1))
    rule = classifier.OperatingRule.of_metadata(metadata)
    assert rule.calibration is not None
    np.testing.assert_allclose(served, rule.probabilities(model.predict(preprocessed, verbose=0).reshape(-1)),
                               atol=1e-5)


def test_mirror_with_fine_tuning_is_refused():
    with pytest.raises(ValueError, match="mirror needs a frozen backbone"):
        small_config(mirror=True, fine_tune_layers=2)


def test_fine_tuning_trains_the_top_of_the_backbone_only():
    config = small_config(fine_tune_layers=2, fine_tune_epochs=1)
    keras.utils.set_random_seed(config.seed)
    before = FeatureExtractor("vgg16", 32, weights=None).model
    cache = FeatureCache()
    trained = classifier.train_classifier(config, small_splits(), cache=cache, verbose=0)
    assert cache.misses == 3  # the backbone ran once per split, up to block5_conv2; the head's features came from there
    assert trained.unfrozen_layers == ["block5_conv3"]  # block5_pool has no weights
    after = trained.extractor.model
    assert not np.allclose(after.get_layer("block5_conv3").kernel, before.get_layer("block5_conv3").kernel)
    np.testing.assert_array_equal(after.get_layer("block1_conv1").kernel, before.get_layer("block1_conv1").kernel)
    assert "fine_tune_loss" in trained.history
    assert set(trained.metrics) == {"train", "validation", "test"}
    # Trained on cached block5_conv2 features; the saved model, from images, predicts the same.
    assert trained.fine_tuned_on == "cached block5_conv2 features"
    labels, probabilities = trained.predictions["test"]
    from_images = classifier.predict_probabilities(trained.model, small_splits()["test"], "vgg16", 32, verbose=0)
    np.testing.assert_array_equal(from_images[0], labels)
    np.testing.assert_allclose(from_images[1], probabilities, atol=1e-5)


def test_fine_tuning_reads_cached_features_only_where_one_tensor_feeds_the_top():
    vgg16 = FeatureExtractor("vgg16", 32, weights=None).model
    boundary, top = classifier.split_above(vgg16, 4)
    assert boundary == "block4_pool" and [layer.name for layer in top.layers[1:]] == [
        "block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]
    assert top.get_layer("block5_conv1") is vgg16.get_layer("block5_conv1")  # shared, not copied
    assert classifier.split_above(vgg16, len(vgg16.layers)) is None

    resnet50 = FeatureExtractor("resnet50", 32, weights=None).model
    stage5_last_block = len(resnet50.layers) - resnet50.layers.index(resnet50.get_layer("conv5_block3_1_conv"))
    assert classifier.split_above(resnet50, stage5_last_block)[0] == "conv5_block2_out"
    # One layer fewer cuts inside the block: its skip connection reads conv5_block2_out from below.
    assert classifier.split_above(resnet50, stage5_last_block - 1) is None


def test_fine_tuning_trains_on_images_where_the_top_cannot_be_split_off(monkeypatch):
    monkeypatch.setattr(classifier.training, "split_above", lambda backbone, count: None)  # as inside a residual block
    trained = classifier.train_classifier(small_config(fine_tune_layers=2, fine_tune_epochs=1), small_splits(), verbose=0)
    assert trained.fine_tuned_on == "images" and trained.unfrozen_layers == ["block5_conv3"]
    assert "fine_tune_loss" in trained.history
    assert set(trained.metrics) == {"train", "validation", "test"}


def test_best_validation_keeps_the_epoch_of_lowest_validation_loss_in_both_phases():
    rng = np.random.default_rng(0)
    features = {
        split: classifier.FeatureSet(rng.normal(size=(count, 2, 2, 8)).astype(np.float32), np.arange(count) % 2)
        for split, count in (("train", 32), ("validation", 16))
    }
    # Random labels and a high rate: the validation loss rises after its first epochs.
    config = small_config(epochs=6, learning_rate=1e-2, keep_epoch="best_validation")
    head = classifier.build_head((2, 2, 8))
    history = classifier.train_head(head, config, features["train"], features["validation"], verbose=0)
    assert history["kept_epoch"] == [int(np.argmin(history["val_loss"])) + 1] != [6]  # not the last epoch
    probabilities = head.predict(features["validation"].features, verbose=0).reshape(-1)
    kept = float(keras.losses.binary_crossentropy(features["validation"].labels.astype(np.float32), probabilities))
    assert kept == pytest.approx(min(history["val_loss"]), rel=1e-4)
    with pytest.raises(ValueError, match="needs a validation split"):
        classifier.train_head(classifier.build_head((2, 2, 8)), config, features["train"], None, verbose=0)

    config = small_config(fine_tune_layers=2, fine_tune_epochs=3, fine_tune_learning_rate=1e-2,
                          keep_epoch="best_validation")
    trained = classifier.train_classifier(config, small_splits(), verbose=0)
    labels, probabilities = trained.predictions["validation"]
    kept = float(keras.losses.binary_crossentropy(labels.astype(np.float32), probabilities))
    # Candidates: the model before fine-tuning (the head's best epoch), then each fine-tuning epoch.
    candidates = [min(trained.history["val_loss"])] + trained.history["fine_tune_val_loss"]
    assert trained.history["fine_tune_kept_epoch"] == [int(np.argmin(candidates))]
    assert kept == pytest.approx(min(candidates), rel=1e-4)


def test_best_validation_keeps_the_starting_weights_when_every_epoch_is_worse():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 4)).astype(np.float32), (np.arange(32) % 2).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    classifier.compile_for_training(model, "sgd", 50.0)  # every step overshoots
    start_loss = float(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    before = [w.copy() for w in model.get_weights()]
    keep = classifier.KeepBestValidation(start_loss)
    history = model.fit(x, y, validation_data=(x, y), epochs=3, callbacks=[keep], verbose=0)
    assert min(history.history["val_loss"]) > start_loss and keep.best_epoch == 0
    for kept, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(kept, original)


def test_unfreezing_keeps_batch_normalization_frozen():
    extractor = FeatureExtractor("resnet50", 32, weights=None)
    unfrozen = classifier.unfreeze_top_layers(extractor.model, 12)
    assert unfrozen and all("_bn" not in name for name in unfrozen)
    batch_norms = [layer for layer in extractor.model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms and not any(layer.trainable for layer in batch_norms)
    assert extractor.model.get_layer("conv5_block3_3_conv").trainable
    assert not extractor.model.get_layer("conv1_conv").trainable


def test_local_weights_file_is_loaded_at_another_size_and_recorded(tmp_path):
    keras.utils.set_random_seed(5)
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / backbones.BACKBONES["vgg16"].weights_file
    source.save_weights(path)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()

    extractor = FeatureExtractor("vgg16", 48, weights=str(path))
    info = extractor.weights_info
    assert (info.name, info.path, info.sha256) == ("file", str(path.resolve()), sha256)
    np.testing.assert_array_equal(
        extractor.model.get_layer("block5_conv3").kernel, source.get_layer("block5_conv3").kernel
    )
    from_directory = FeatureExtractor("vgg16", 32, weights=str(tmp_path))  # DIR/spec.weights_file
    assert from_directory.weights_info.sha256 == sha256
    assert from_directory.weights_info.values_sha256 == info.values_sha256

    with pytest.raises(FileNotFoundError, match="resnet50_notop.weights.h5"):
        FeatureExtractor("resnet50", 32, weights=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="backbone_weights.py"):
        FeatureExtractor("vgg16", 32, weights=str(tmp_path / "absent.weights.h5"))
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match="garbage.weights.h5"):
        FeatureExtractor("vgg16", 32, weights=str(garbage))


def test_imagenet_download_failure_says_how_to_use_local_weights(monkeypatch):
    def offline(**kwargs):
        if kwargs.get("weights") == "imagenet":
            raise OSError("URL fetch failure")
        return keras.applications.VGG16(**kwargs)

    spec = backbones.BACKBONES["vgg16"]
    monkeypatch.setitem(backbones.BACKBONES, "vgg16", dataclasses.replace(spec, constructor=offline))
    with pytest.raises(RuntimeError, match="backbone_weights.py") as error:
        FeatureExtractor("vgg16", 32, weights="imagenet")
    assert "URL fetch failure" in str(error.value)


def test_load_classifier_names_the_missing_or_broken_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        classifier.load_classifier(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="classifier.json"):
        classifier.load_classifier(tmp_path)
    (tmp_path / "classifier.json").write_text("{not json")
    with pytest.raises(ValueError, match="classifier.json is not valid JSON"):
        classifier.load_classifier(tmp_path)
    (tmp_path / "classifier.json").write_text(json.dumps({"backbone": "vgg16"}))
    with pytest.raises(ValueError, match="image_size"):
        classifier.load_classifier(tmp_path)
    metadata = {"backbone": "vgg16", "image_size": 32, "class_names": ["Normal", "COVID"], "weights": {}}
    (tmp_path / "classifier.json").write_text(json.dumps(metadata))
    with pytest.raises(FileNotFoundError, match="model.keras"):
        classifier.load_classifier(tmp_path)
    (tmp_path / "model.keras").write_bytes(b"broken")
    with pytest.raises(ValueError, match="model.keras"):
        classifier.load_classifier(tmp_path)
