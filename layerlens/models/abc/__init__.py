"""The tutorial's "abc" string classifier, layerlens's bundled example model:
the model, its data and encoding (`model`), and training, the training curve
and persistence (`training`), in one namespace."""

from .model import (
    NUM_CLASSES,
    RULE,
    SAMPLE_STRINGS,
    SEQ_LEN,
    VOCAB,
    AbcClassifier,
    Prediction,
    accuracy,
    build_model,
    encode,
    generate,
    label,
    predict,
)
from .training import MODEL_FILE, VOCAB_FILE, History, TrainResult, load, save, train

__all__ = [
    "MODEL_FILE",
    "NUM_CLASSES",
    "RULE",
    "SAMPLE_STRINGS",
    "SEQ_LEN",
    "VOCAB",
    "VOCAB_FILE",
    "AbcClassifier",
    "History",
    "Prediction",
    "TrainResult",
    "accuracy",
    "build_model",
    "encode",
    "generate",
    "label",
    "load",
    "predict",
    "save",
    "train",
]
