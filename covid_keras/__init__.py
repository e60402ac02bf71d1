"""covid-keras: conditional-GAN augmentation and frozen-backbone COVID-19 classifiers for chest X-rays.

Modules, lowest first (each imports only those above it):
  labels, backbones, phantom, sources  - class names, backbone registry, synthetic and on-disk images
  data                                 - the TFDS builder's splits as tf.data pipelines
  gan, classifier                      - models
  plots, gan_training, generate        - GAN runs and their outputs
  evaluation, tuning, experiment       - classifier metrics, KerasTuner, the augmentation study
  export, serving                      - SavedModels for TensorFlow Serving and a client
"""

__version__ = "0.1.0"
