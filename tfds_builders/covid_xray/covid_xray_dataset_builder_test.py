"""TFDS's own builder checks on dummy_data/ (a tiny Kaggle-layout tree with a top folder and masks)."""

import tensorflow_datasets as tfds

from tfds_builders.covid_xray import covid_xray_dataset_builder


class CovidXrayRadiographyTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = covid_xray_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["radiography"]
    # 5 images per class -> 3 / 1 / 1 per class.
    SPLITS = {"train": 6, "validation": 2, "test": 2}
    SKIP_CHECKSUMS = True  # nothing is downloaded: the data comes through --manual_dir

    def test_session(self, *args, **kwargs):
        return super().test_session(*args, **kwargs)

    # tf.test.TestCase.test_session is a helper (graph mode uses it), not a test: without this,
    # pytest collects it and reports a skip.
    test_session.__test__ = False


if __name__ == "__main__":
    tfds.testing.test_main()
