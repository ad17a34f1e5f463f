"""Training: contrastive pretraining, classifiers, the baseline, kNN evaluation.

Entry points return `(model, history_dict)` and take the `Config` plus data as `(x, y)`
NumPy pairs or datasets of `(x, y)` batches (see `fitting`). Everything here uses `keras.ops`
and NumPy only and imports without TensorFlow.

- `pretrain.py`: `PretrainModel`, `build_pretrain_model`, `pretrain`.
- `classifier.py`: `FrozenEncoder`, `build_classifier`, `build_baseline`,
  `train_classifier`, `train_baseline`.
- `knn.py`: `embed`, `embed_batches`, `predict_proba`, `nearest_neighbours`, `knn_predict`,
  `knn_accuracy`, `KnnMonitor`.
- `optim.py`: `build_optimizer`, `build_learning_rate`, `precision_policy`.
- `callbacks.py`: `DivergenceGuard`, `TrainingDivergedError`, `EpochBackup`.
- `fitting.py`: data arguments, compile and fit, checkpoint resume (shared by all three).
- `distribution.py`: data-parallel layout, process start-up, per-process data, LR scaling.
"""

from contrastive.training.callbacks import DivergenceGuard, EpochBackup, TrainingDivergedError
from contrastive.training.classifier import (
    FrozenEncoder,
    build_baseline,
    build_classifier,
    train_baseline,
    train_classifier,
)
from contrastive.training.knn import (
    KnnMonitor,
    embed,
    embed_batches,
    knn_accuracy,
    knn_predict,
    nearest_neighbours,
    predict_proba,
    sample_knn_accuracy,
)
from contrastive.training.optim import build_learning_rate, build_optimizer, precision_policy
from contrastive.training.pretrain import (
    PretrainModel,
    build_pretrain_model,
    contrastive_top1,
    pretrain,
    unique_unlabelled,
)

__all__ = [
    "DivergenceGuard",
    "EpochBackup",
    "FrozenEncoder",
    "KnnMonitor",
    "PretrainModel",
    "TrainingDivergedError",
    "build_baseline",
    "build_classifier",
    "build_learning_rate",
    "build_optimizer",
    "build_pretrain_model",
    "contrastive_top1",
    "embed",
    "embed_batches",
    "knn_accuracy",
    "knn_predict",
    "nearest_neighbours",
    "predict_proba",
    "precision_policy",
    "pretrain",
    "train_baseline",
    "train_classifier",
    "unique_unlabelled",
    "sample_knn_accuracy",
]
