"""contrastive: supervised contrastive (SupCon) and SimCLR image classifiers.

The library never imports `kfp`. Model code (`losses`, `augment`, `models`, `training`) uses
`keras.ops` only and imports without TensorFlow; `contrastive.data` is the one place that uses
TensorFlow (`tf.data`, TFRecords).
"""

__version__ = "0.1.0"
