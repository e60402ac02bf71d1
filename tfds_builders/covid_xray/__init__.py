"""The `covid_xray` TFDS dataset; the builder is `covid_xray_dataset_builder.Builder`.

Nothing is imported here: `tfds build tfds_builders/covid_xray` imports the builder module by
path, and importing it a second time under another name would register the dataset twice.
"""
