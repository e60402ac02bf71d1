"""The study's question, asked properly: does a GAN make a better COVID classifier, against classic
augmentation, when real images are scarce?

For each number n of real train images per class (drawn from the train split with a recorded
seed; validation and test stay the full real splits):

- a GAN is trained on exactly those 2n images (its class guide too), for the same number of
  generator steps at every n (`GanConfig.epoch_images`), at the smallest n for several seeds;
- frozen-backbone classifiers (the project's head recipe, several seeds) are trained in arms that
  add the same number of rows where they add any:

      real           the 2n real images
      classic        + offline Keras-augmented copies of them (`augment.ClassicAugmenter`)
      gan            + generated images, r x n per class
      gan_filtered   + generated images the GAN's own class guide gives P >= min_guide_confidence
                     (a GAN without a class guide, e.g. the projected preset, has no such arm)
      classic_gan    + half classic copies, half generated images
      real_full_resolution   the real arm without the degradation below, to show what it costs

  and, at the smallest n, the ratio sweep: classic and gan at every ratio r.

Every image a classifier sees, real or generated, goes the same way: resized to the backbone's
input, brought down to the GAN's resolution and back up (`classifier.DegradeResolution`, inside
the saved model), so sharpness cannot tell real from generated.

A study folder holds everything and resumes: subsets, GAN runs (resumable themselves), samples,
classic copies, a feature cache, one saved classifier per (cell, seed), then results.json,
results.md and test_accuracy_vs_n.png. Rerunning reuses every finished piece.
"""

from covid_keras.augmentation_study.config import (  # noqa: F401
    ALL,
    ARM_TITLES,
    ARMS,
    FIGURE,
    GAN_ARMS,
    REPORTED,
    RESULTS_JSON,
    RESULTS_MD,
    STUDY_FILE,
    StudyConfig,
    quick_config,
    scarce_subset,
)
from covid_keras.augmentation_study.report import (  # noqa: F401
    results_markdown,
    save_figure,
    summarise,
)
from covid_keras.augmentation_study.runner import (  # noqa: F401
    AugmentationStudy,
    Pool,
    cell_name,
    claim_study_dir,
)
