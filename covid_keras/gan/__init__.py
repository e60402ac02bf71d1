"""The conditional GAN, one concept per module (docs/architecture.md):

    config       GanConfig and its choices (no TensorFlow)       presets   the runs 1, 2, 3, stable, guided, ...
    diffaugment  DiffAugment of discriminator inputs             networks  generator, discriminator, their layers
    guide        the class guide: builders and its training      model     the losses and ConditionalGAN(keras.Model)
    run_dir      a run folder's layout and records (no TF)       callbacks what a run writes while it trains
    training     train_gan, resume, loading a run's networks     sampling  drawing (and filtering) labelled samples
    class_separate  one GAN per class, combined into one generator
    projected    a discriminator of trained heads on frozen pretrained features
    translation  the image-editing GAN: a real X-ray of one class edited into the other

Importing this package imports nothing else, so `covid_keras.gan.config` stays free of TensorFlow.
"""
